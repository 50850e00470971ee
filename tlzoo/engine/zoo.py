"""Everything the loaded plugins registered, plus the catalogue, in one place.

``Zoo`` is what the runner and the CLI ask for "the backbone called X", "the head
called Y": it answers or raises a one-line error with the closest known names.

A plugin cannot break it: a name registered twice keeps the first (built-ins register
first) and the clash is a warning of the later plugin; a data source whose
``can_load`` raises is skipped and the error recorded against its plugin.
"""

from __future__ import annotations

import functools
from typing import Any

from tlzoo.api.errors import TlzooError, suggest
from tlzoo.api.interfaces import BackboneFactory, DataSource, Head, Pretrainer, Strategy, TorchHead, head_class
from tlzoo.engine.plugins import PluginManager, describe
from tlzoo.engine.registry import CatalogueEntry, Registry, add_plugin_entries, load_catalogue


class Zoo:
    def __init__(self, plugins: PluginManager | None = None) -> None:
        self.plugins = plugins or PluginManager()
        self.backbones: Registry[BackboneFactory] = Registry("plugin", "tl list")
        self.heads: Registry[type[Head]] = Registry("head", "tl heads")
        self.strategies: Registry[Strategy] = Registry("strategy", "tl strategies")
        self.data_sources: list[DataSource] = []
        self.pretrainers: Registry[Pretrainer] = Registry("pretrainer", "tl pretrain --help")
        self.catalogue: list[CatalogueEntry] = load_catalogue()
        self.source_plugin: dict[int, str] = {}  # id(data source) -> the plugin that registered it

        def backbone(plugin: str) -> Any:
            def register(factory: BackboneFactory) -> None:
                if self._clash(self.backbones, factory.name, plugin):
                    return
                factory.plugin = plugin
                self.backbones.add(factory.name, factory, plugin)

            return register

        def head(plugin: str) -> Any:
            def register(cls: type[Head]) -> None:
                adapted = head_class(cls)  # a 0.1 Head with a `trainable` flag -> TorchHead or FittedHead
                if adapted is not cls:
                    kind = "TorchHead" if issubclass(adapted, TorchHead) else "FittedHead"
                    self.plugins.record(
                        plugin,
                        f"head '{cls.name}' subclasses Head with a `trainable` flag, which "
                        f"is deprecated; subclass tlzoo.{kind}",
                        warning=True,
                    )
                self._add(self.heads, cls.name, adapted, plugin)

            return register

        def strategy(plugin: str) -> Any:
            return lambda s: self._add(self.strategies, s.name, s, plugin)

        def source(plugin: str) -> Any:
            return lambda s: self.data_sources.append(self._guard_source(s, plugin))

        def pretrainer(plugin: str) -> Any:
            return lambda p: self._add(self.pretrainers, p.name, p, plugin)

        pm = self.plugins
        pm.call_register("tlzoo_register_backbones", backbone)
        pm.call_register("tlzoo_register_heads", head)
        pm.call_register("tlzoo_register_strategies", strategy)
        pm.call_register("tlzoo_register_data_sources", source)
        pm.call_register("tlzoo_register_pretrainers", pretrainer)
        self.catalogue = add_plugin_entries(self.catalogue, pm)  # registry.toml, then the plugins' entries

    # ------------------------------------------------------------ registration guards
    def _clash(self, registry: Registry[Any], name: str, plugin: str) -> bool:
        """Whether ``name`` is taken; if so the first owner keeps it and ``plugin`` gets a warning."""
        if name not in registry:
            return False
        owner = registry.owner.get(name, "")
        kind = "built-in plugin" if self.plugins.is_builtin(owner) else "plugin"
        self.plugins.record(
            plugin,
            f"{registry.kind} '{name}' is already registered by {kind} '{owner}'; this one is ignored",
            warning=True,
        )
        return True

    def _add(self, registry: Registry[Any], name: str, item: Any, plugin: str) -> None:
        if not self._clash(registry, name, plugin):
            registry.add(name, item, plugin)

    def _guard_source(self, source: DataSource, plugin: str) -> DataSource:
        """Make ``source.can_load`` answer False (and record the error) instead of raising."""
        self.source_plugin[id(source)] = plugin
        can_load = source.can_load
        if getattr(can_load, "_tlzoo_guarded", False):
            return source

        @functools.wraps(can_load)
        def guarded(location: str) -> bool:
            try:
                return bool(can_load(location))
            except Exception as exc:
                self.plugins.record(
                    plugin,
                    f"data source '{getattr(source, 'name', '?')}': can_load raised "
                    f"{describe(exc)}; the source is skipped",
                )
                return False

        guarded._tlzoo_guarded = True  # type: ignore[attr-defined]  # a mark on the function object
        try:
            source.can_load = guarded  # type: ignore[method-assign]  # the instance's own, on purpose
        except (AttributeError, TypeError):  # a source with __slots__: keep it unguarded
            pass
        return source

    def check_data_sources(self) -> None:
        """Ask every data source about its own name, so ``tl plugins`` shows a ``can_load`` that raises."""
        for s in self.data_sources:
            s.can_load(s.name)

    # ------------------------------------------------------------ look-ups
    def entry(self, name: str) -> CatalogueEntry | None:
        return next((e for e in self.catalogue if e.name == name), None)

    def resolve_backbone(self, plugin: str, model: str = "") -> tuple[BackboneFactory, str]:
        """``--plugin`` may name a plugin (``bert``) or a catalogued model (``resnet50``); ``--model`` alone
        names a catalogued model (tlzoo's or a plugin's)."""
        if not plugin and model:
            entry = self.entry(model)
            if entry is None:
                known = [e.name for e in self.catalogue]
                raise TlzooError(
                    f"Unknown model '{model}'.{suggest(model, known)} Pass --plugin NAME too, or a "
                    "catalogued model (see `tl list`)."
                )
            plugin = entry.plugin
        if not plugin:
            raise TlzooError("No backbone chosen; pass --plugin NAME (see `tl list`).")
        if plugin in self.backbones:
            factory = self.backbones.get(plugin)
        else:
            entry = self.entry(plugin)
            failed = self._failed(plugin)
            if entry is None and failed:
                raise TlzooError(f"plugin '{plugin}' failed to load: {failed}; see `tl plugins`.")
            if entry is None:
                known = list(self.backbones) + [e.name for e in self.catalogue]
                raise TlzooError(f"Unknown plugin or model '{plugin}'.{suggest(plugin, known)} See `tl list`.")
            if entry.plugin not in self.backbones:
                failed = self._failed(entry.plugin)
                if failed:
                    raise TlzooError(
                        f"Model '{plugin}' needs the '{entry.plugin}' plugin, which failed to load: "
                        f"{failed}; see `tl plugins`."
                    )
                raise TlzooError(
                    f"Model '{plugin}' needs the '{entry.plugin}' plugin. It is not loaded (check TLZOO_PLUGINS)."
                )
            factory = self.backbones.get(entry.plugin)
            if model and model != plugin:
                raise TlzooError(
                    f"--plugin {plugin} already names a model; drop --model {model} or use --plugin {entry.plugin}."
                )
            model = plugin
        model = model or factory.default_model
        if model not in factory.models and not factory.accepts_any_model:
            column, eq, name = model.partition("=")
            if eq and column and name:  # --model COLUMN=MODEL, as --weights COLUMN=PATH is written
                raise TlzooError(
                    f"--model takes one model, and '{model}' names a column's; a column's model goes in "
                    f"--plugin: --plugin {model} (see `tl list`)."
                )
            raise TlzooError(
                f"Unknown model '{model}' for plugin '{factory.name}'.{suggest(model, factory.models)} See `tl list`."
            )
        return factory, model

    def _failed(self, plugin: str) -> str | None:
        """The recorded error of a plugin that exists but failed, else None."""
        info = self.plugins.info.get(plugin)
        return info.error if info is not None and info.error and not info.missing else None

    def data_source_for(self, location: str, modality: str) -> DataSource:
        candidates = [s for s in self.data_sources if s.can_load(location)]
        fitting = [s for s in candidates if s.modality in ("", modality)]
        if fitting:
            return fitting[0]
        if candidates:
            raise TlzooError(
                f"Data '{location}' looks like {candidates[0].modality} data but the backbone is {modality}; "
                f"choose a {candidates[0].modality} plugin (see `tl list --modality {candidates[0].modality}`), "
                f"or pass {'images' if modality == 'vision' else 'texts'} for this one."
            )
        import os

        if not os.path.exists(location):
            names = [s.name for s in self.data_sources if s.can_load(s.name)]
            raise TlzooError(
                f"Data path '{location}' does not exist.{suggest(location, names)} "
                "Pass an existing file or folder, or a built-in dataset (see `tl data list`)."
            )
        raise TlzooError(
            f"Don't know how to read '{location}'; pass a CSV/JSONL file, a folder with one sub-folder "
            "of images or .txt files per class, hf:NAME, or a built-in dataset (see `tl data list`)."
        )
