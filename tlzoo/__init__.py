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

from tlzoo.api.hookspecs import hookimpl as hookimpl  # re-exported: `from tlzoo import hookimpl`

__version__ = "0.3.0.dev0"  # the one version: pyproject.toml, tl plugins and the CHANGELOG read it

_LAZY = {
    "Engine": "tlzoo.facade",
    "Run": "tlzoo.engine.runner",
    "RunResult": "tlzoo.engine.runner",
    "STEPS": "tlzoo.api.steps",
    "step_wrapper": "tlzoo.api.steps",
    "RunConfig": "tlzoo.engine.config",
    "DataConfig": "tlzoo.engine.config",
    "ModelConfig": "tlzoo.engine.config",
    "HeadConfig": "tlzoo.engine.config",
    "TrainConfig": "tlzoo.engine.config",
    "Backbone": "tlzoo.api.interfaces",
    "BackboneFactory": "tlzoo.api.interfaces",
    "BackboneRequest": "tlzoo.api.interfaces",
    "FittableBackbone": "tlzoo.api.interfaces",
    "check_options": "tlzoo.api.interfaces",
    "merge_options": "tlzoo.api.interfaces",
    "Head": "tlzoo.api.interfaces",
    "TorchHead": "tlzoo.api.interfaces",
    "FittedHead": "tlzoo.api.interfaces",
    "Strategy": "tlzoo.api.interfaces",
    "StrategyContext": "tlzoo.api.interfaces",
    "LanguageModelBackbone": "tlzoo.api.interfaces",
    "Phase": "tlzoo.api.interfaces",
    "Plan": "tlzoo.api.interfaces",
    "Dataset": "tlzoo.api.interfaces",
    "Pretrainer": "tlzoo.api.interfaces",
    "DataSource": "tlzoo.api.interfaces",
    "DataOptions": "tlzoo.api.interfaces",
    "Predictor": "tlzoo.commands.predict",
    "PluginManager": "tlzoo.engine.plugins",
    "Zoo": "tlzoo.engine.zoo",
    "TlzooError": "tlzoo.api.errors",
    "list_models": "tlzoo.engine.registry",
    "compare": "tlzoo.commands.compare",
    "CompareResult": "tlzoo.commands.compare",
    "logme": "tlzoo.commands.compare",
    "cache_entries": "tlzoo.engine.cache",
    "clear_cache": "tlzoo.engine.cache",
    "pretrain": "tlzoo.commands.pretraining",
    "read_corpus": "tlzoo.engine.corpus",
    "embed": "tlzoo.commands.embed",
    "Embeddings": "tlzoo.commands.embed",
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
