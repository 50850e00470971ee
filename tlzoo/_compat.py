"""Compatibility with tlzoo 0.2's module paths, in one place; removed in tlzoo 0.4.

0.2 kept the contract, the engine and the commands in one flat ``tlzoo.core`` package.  0.3
splits it (``tlzoo.api``, ``tlzoo.engine``, ``tlzoo.commands``, ``tlzoo.infra``,
``tlzoo.evaluation``).  A plugin written against 0.2 that imports ``tlzoo.core.interfaces``
still works: the old name is the new module itself (one object, so ``isinstance`` and
registries agree), with a ``DeprecationWarning`` naming the new path.

The step names of 0.1 (``tlzoo.steps.DEPRECATED``) are the other shim; they live with the
step names in ``tlzoo.api.steps`` and, as 0.2 promised, stay until tlzoo 2.0.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

REMOVED_IN = "0.4"

# tlzoo.core.<old> -> its module in 0.3
MOVED: dict[str, str] = {
    "errors": "tlzoo.api.errors",
    "interfaces": "tlzoo.api.interfaces",
    "backbone": "tlzoo.api.backbone",
    "hookspecs": "tlzoo.api.hookspecs",
    "steps": "tlzoo.api.steps",
    "network": "tlzoo.infra.network",
    "lifecycle": "tlzoo.infra.lifecycle",
    "memory": "tlzoo.infra.memory",
    "weights_digest": "tlzoo.infra.weights_digest",
    "run_folder": "tlzoo.infra.run_folder",
    "metrics": "tlzoo.evaluation.metrics",
    "uncertainty": "tlzoo.evaluation.uncertainty",
    "plots": "tlzoo.evaluation.plots",
    "augment_preview": "tlzoo.evaluation.augment_preview",
    "config": "tlzoo.engine.config",
    "config_keys": "tlzoo.engine.config_keys",
    "runner": "tlzoo.engine.runner",
    "training": "tlzoo.engine.training",
    "features": "tlzoo.engine.features",
    "cache_admin": "tlzoo.engine.cache",
    "data": "tlzoo.engine.data",
    "loaders": "tlzoo.engine.loaders",
    "checkpoint": "tlzoo.engine.checkpoint",
    "artifacts": "tlzoo.engine.artifacts",
    "distributed": "tlzoo.engine.distributed",
    "corpus": "tlzoo.engine.corpus",
    "plugins": "tlzoo.engine.plugins",
    "registry": "tlzoo.engine.registry",
    "zoo": "tlzoo.engine.zoo",
    "api": "tlzoo.engine.registry",
    "predict": "tlzoo.commands.predict",
    "export": "tlzoo.commands.export",
    "report": "tlzoo.commands.report",
    "compare": "tlzoo.commands.compare",
    "lr_find": "tlzoo.commands.lr_find",
    "seeds": "tlzoo.commands.seeds",
    "pretraining": "tlzoo.commands.pretraining",
    "errors_analysis": "tlzoo.commands.errors_analysis",
}
OLD_PACKAGE = "tlzoo.core"


def moved_module(old: str) -> ModuleType:
    """The 0.3 module behind ``tlzoo.core.<old>``, with a warning that names it."""
    new = MOVED[old]
    warnings.warn(
        f"{OLD_PACKAGE}.{old} moved to {new} in tlzoo 0.3; the old path stops working in tlzoo {REMOVED_IN}",
        DeprecationWarning,
        stacklevel=3,
    )
    return importlib.import_module(new)


class _Alias(importlib.abc.Loader):
    """Loads ``tlzoo.core.<old>`` as the very module object of its new path."""

    def __init__(self, old: str) -> None:
        self.old = old

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return moved_module(self.old)

    def exec_module(self, module: ModuleType) -> None:
        sys.modules[f"{OLD_PACKAGE}.{self.old}"] = module  # already executed under its new name


class MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, old = fullname.rpartition(".")
        if prefix != OLD_PACKAGE or old not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(old))


def install() -> None:
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())
