"""A module imported on its first attribute access: for plugin modules that the listing commands import.

``tl heads``, ``tl plugins``, ``tl data list`` and ``tl config`` import every registered plugin
module to read names, defaults and descriptions; a module that needs numpy only inside its
methods can name it at the top without paying for the import there::

    from typing import TYPE_CHECKING

    from tlzoo.lib.lazy import lazy_module

    if TYPE_CHECKING:
        import numpy as np
    else:
        np = lazy_module("numpy")

Type checkers see the real module; at run time the import happens when ``np.<name>`` is first
read, and later reads go to the real module's attributes directly.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class _LazyModule(types.ModuleType):
    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)  # later reads skip __getattr__
        return getattr(module, attribute)


def lazy_module(name: str) -> Any:
    """A stand-in for ``import name`` that imports the module on its first attribute access."""
    return _LazyModule(name)
