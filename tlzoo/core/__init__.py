"""tlzoo 0.2's flat engine package, kept as aliases until tlzoo 0.4 (see ``tlzoo._compat``).

``import tlzoo.core.interfaces`` gives ``tlzoo.api.interfaces`` itself, with a DeprecationWarning.
"""

from __future__ import annotations

from typing import Any

from tlzoo import _compat

_compat.install()


def __getattr__(name: str) -> Any:
    if name in _compat.MOVED:
        return _compat.moved_module(name)
    raise AttributeError(f"module 'tlzoo.core' has no attribute '{name}'")
