"""Everything the loaded plugins registered, plus the catalogue, in one place.

``Zoo`` is what the runner and the CLI ask for "the backbone called X", "the head
called Y": it answers or raises a one-line error with the closest known names.
"""
from __future__ import annotations

from typing import Any

from .errors import TlzooError, suggest
from .interfaces import BackboneFactory, DataSource, Head, Pretrainer, Strategy
from .plugins import PluginManager
from .registry import CatalogueEntry, Registry, load_catalogue


class Zoo:
    def __init__(self, plugins: PluginManager | None = None) -> None:
        self.plugins = plugins or PluginManager()
        self.backbones: Registry[BackboneFactory] = Registry("plugin", "tl list")
        self.heads: Registry[type[Head]] = Registry("head", "tl heads")
        self.strategies: Registry[Strategy] = Registry("strategy", "tl strategies")
        self.data_sources: list[DataSource] = []
        self.pretrainers: Registry[Pretrainer] = Registry("pretrainer", "tl pretrain --help")
        self.catalogue: list[CatalogueEntry] = load_catalogue()

        def backbone(plugin: str) -> Any:
            def register(factory: BackboneFactory) -> None:
                factory.plugin = plugin
                self.backbones.add(factory.name, factory, plugin)
            return register

        def head(plugin: str) -> Any:
            return lambda cls: self.heads.add(cls.name, cls, plugin)

        def strategy(plugin: str) -> Any:
            return lambda s: self.strategies.add(s.name, s, plugin)

        def source(plugin: str) -> Any:
            return self.data_sources.append

        def pretrainer(plugin: str) -> Any:
            return lambda p: self.pretrainers.add(p.name, p, plugin)

        pm = self.plugins
        pm.call_register("tlzoo_register_backbones", backbone)
        pm.call_register("tlzoo_register_heads", head)
        pm.call_register("tlzoo_register_strategies", strategy)
        pm.call_register("tlzoo_register_data_sources", source)
        pm.call_register("tlzoo_register_pretrainers", pretrainer)

    # ------------------------------------------------------------ look-ups
    def entry(self, name: str) -> CatalogueEntry | None:
        return next((e for e in self.catalogue if e.name == name), None)

    def resolve_backbone(self, plugin: str, model: str = "") -> tuple[BackboneFactory, str]:
        """``--plugin`` may name a plugin (``bert``) or a catalogued model (``resnet50``)."""
        if not plugin:
            raise TlzooError("No backbone chosen; pass --plugin NAME (see `tl list`).")
        if plugin in self.backbones:
            factory = self.backbones.get(plugin)
        else:
            entry = self.entry(plugin)
            if entry is None:
                known = list(self.backbones) + [e.name for e in self.catalogue]
                raise TlzooError(f"Unknown plugin or model '{plugin}'.{suggest(plugin, known)} See `tl list`.")
            if entry.plugin not in self.backbones:
                err = self.plugins.info.get(entry.plugin)
                why = f" It failed to load: {err.error}" if err and err.error else " It is not loaded (check TLZOO_PLUGINS)."
                raise TlzooError(f"Model '{plugin}' needs the '{entry.plugin}' plugin.{why}")
            factory = self.backbones.get(entry.plugin)
            if model and model != plugin:
                raise TlzooError(f"--plugin {plugin} already names a model; drop --model {model} or use --plugin {entry.plugin}.")
            model = plugin
        model = model or factory.default_model
        if model not in factory.models and not factory.accepts_any_model:
            raise TlzooError(
                f"Unknown model '{model}' for plugin '{factory.name}'.{suggest(model, factory.models)} "
                f"See `tl list`."
            )
        return factory, model

    def data_source_for(self, location: str, modality: str) -> DataSource:
        candidates = [s for s in self.data_sources if s.can_load(location)]
        fitting = [s for s in candidates if s.modality in ("", modality)]
        if fitting:
            return fitting[0]
        if candidates:
            raise TlzooError(
                f"Data '{location}' looks like {candidates[0].modality} data but the backbone is {modality}; "
                f"choose a {modality} plugin (see `tl list --modality {candidates[0].modality}`)."
            )
        import os

        if not os.path.exists(location):
            names = [s.name for s in self.data_sources if s.can_load(s.name)]
            raise TlzooError(f"Data path '{location}' does not exist.{suggest(location, names)} "
                             "Pass an existing file or folder, or a built-in dataset (see `tl data list`).")
        raise TlzooError(
            f"Don't know how to read '{location}'; pass a CSV/JSONL file, a folder with one sub-folder "
            "of images or .txt files per class, hf:NAME, or a built-in dataset (see `tl data list`)."
        )
