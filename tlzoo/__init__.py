"""tlzoo: a transfer-learning model zoo with a plugin system.

The public API is re-exported here and imported lazily, so ``import tlzoo`` (and
``tl --help``) stay fast; torch loads on first use of a name that needs it.

    from tlzoo import Engine, RunConfig
    cfg = RunConfig()
    cfg.model.plugin = "bert"
    cfg.data.path = "reviews.csv"
    result = Engine().run(cfg)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from tlzoo.core.hookspecs import hookimpl as hookimpl  # re-exported: `from tlzoo import hookimpl`

__version__ = "0.3.0.dev0"  # the one version: pyproject.toml, tl plugins and the CHANGELOG read it

_LAZY = {
    "Engine": "tlzoo.core.runner",
    "Run": "tlzoo.core.runner",
    "RunResult": "tlzoo.core.runner",
    "STEPS": "tlzoo.core.steps",
    "step_wrapper": "tlzoo.core.steps",
    "RunConfig": "tlzoo.core.config",
    "DataConfig": "tlzoo.core.config",
    "ModelConfig": "tlzoo.core.config",
    "HeadConfig": "tlzoo.core.config",
    "TrainConfig": "tlzoo.core.config",
    "Backbone": "tlzoo.core.interfaces",
    "BackboneFactory": "tlzoo.core.interfaces",
    "BackboneRequest": "tlzoo.core.interfaces",
    "FittableBackbone": "tlzoo.core.interfaces",
    "check_options": "tlzoo.core.interfaces",
    "Head": "tlzoo.core.interfaces",
    "TorchHead": "tlzoo.core.interfaces",
    "FittedHead": "tlzoo.core.interfaces",
    "Strategy": "tlzoo.core.interfaces",
    "StrategyContext": "tlzoo.core.interfaces",
    "LanguageModelBackbone": "tlzoo.core.interfaces",
    "Phase": "tlzoo.core.interfaces",
    "Plan": "tlzoo.core.interfaces",
    "Dataset": "tlzoo.core.interfaces",
    "Pretrainer": "tlzoo.core.interfaces",
    "DataSource": "tlzoo.core.interfaces",
    "DataOptions": "tlzoo.core.interfaces",
    "Predictor": "tlzoo.core.predict",
    "PluginManager": "tlzoo.core.plugins",
    "Zoo": "tlzoo.core.zoo",
    "TlzooError": "tlzoo.core.errors",
    "list_models": "tlzoo.core.api",
    "compare": "tlzoo.core.compare",
    "CompareResult": "tlzoo.core.compare",
    "logme": "tlzoo.core.compare",
    "cache_entries": "tlzoo.core.cache_admin",
    "clear_cache": "tlzoo.core.cache_admin",
    "pretrain": "tlzoo.core.pretraining",
    "read_corpus": "tlzoo.core.corpus",
}

__all__ = sorted([*_LAZY, "hookimpl", "steps", "__version__"])


def __getattr__(name: str) -> Any:
    if name == "steps":  # the step-name constants: tlzoo.steps.TRAIN
        return import_module("tlzoo.steps")
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tlzoo' has no attribute '{name}'")
