"""Registering a built-in without importing it: what the light ``*_hooks`` modules use.

Building the Zoo (``tl heads``, ``tl strategies``, ``tl plugins``, ``tl data list``) imports
every built-in plugin module and calls its registration hooks.  Modules whose classes subclass
``nn.Module`` import torch, so each such plugin is registered by a light ``<module>_hooks.py``
beside it: names, defaults and descriptions there, the classes imported only when a backbone is
built or a pretrainer runs (:func:`lazy`, :class:`LazyPretrainer`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tlzoo.api.interfaces import Pretrainer


def load(target: str) -> Any:
    """The object named by ``"package.module:attribute"``, importing the module now."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def lazy(target: str) -> Callable[..., Any]:
    """A callable that imports ``"package.module:attribute"`` when first called and calls it
    (a backbone factory's ``create``: the backbone's module, and torch, load on the first build)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return load(target)(*args, **kwargs)

    call.__name__ = call.__qualname__ = target.rpartition(":")[2]
    call.__doc__ = f"Builds {target} (imported on first use)."
    return call


class LazyPretrainer(Pretrainer):
    """A pretrainer registered by name, its class (``"module:Class"``) imported on first use:
    ``defaults()``, ``description`` and ``pretrain`` come from that class's instance."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self._target = target
        self._real: Pretrainer | None = None

    def real(self) -> Pretrainer:
        """The pretrainer itself (its module imported on the first call)."""
        if self._real is None:
            self._real = load(self._target)()
        return self._real

    @property
    def description(self) -> str:  # type: ignore[override]  # Pretrainer's class attribute, read from the real one

        return self.real().description

    def defaults(self) -> dict[str, Any]:
        return self.real().defaults()

    def pretrain(
        self, corpus: list[str], out: str, options: dict[str, Any], log: Callable[[str], None]
    ) -> dict[str, Any]:
        return self.real().pretrain(corpus, out, options, log)

    def __getattr__(self, name: str) -> Any:  # anything else the pretrainer offers (options, architecture, ...)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real(), name)
