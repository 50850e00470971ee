"""The plugin manager: built-in plugins first, then ``tlzoo`` entry points.

Each plugin loads in isolation; a plugin that fails to import or register is recorded
(``tl plugins`` shows the error) and every other command keeps working.
``TLZOO_PLUGINS`` (comma-separated names) limits which plugins load; ``TLZOO_PLUGINS=``
(empty) loads none but the engine's own step runner.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs

BUILTIN_PLUGINS: tuple[str, ...] = (
    "tlzoo.plugins.data_sources",
    "tlzoo.plugins.builtin_datasets",
    "tlzoo.plugins.heads",
    "tlzoo.plugins.sklearn_heads",
    "tlzoo.plugins.strategies",
    "tlzoo.plugins.bert",
    "tlzoo.plugins.static_vectors",
    "tlzoo.plugins.gensim_pretrain",
    "tlzoo.plugins.mini_transformer",
    "tlzoo.plugins.text_data",
    "tlzoo.plugins.elmo",
    "tlzoo.plugins.ulmfit",
    "tlzoo.plugins.timm_vision",
    "tlzoo.plugins.torchvision_models",
    "tlzoo.plugins.lenet",
    "tlzoo.plugins.vision_data",
)


@dataclass
class PluginInfo:
    name: str
    version: str | None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    builtin: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "hooks": self.hooks,
                "error": self.error, "builtin": self.builtin}


class _StepRunner:
    """The innermost tlzoo_run_step implementation: call the runner's method."""

    @hookspecs.hookimpl(trylast=True)
    def tlzoo_run_step(self, step: str, run: Any) -> Any:
        return getattr(run, step)()


def _allowed() -> set[str] | None:
    raw = os.environ.get("TLZOO_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _short(module_name: str) -> str:
    return module_name.rsplit(".", 1)[-1]


def _version() -> str:
    try:
        return metadata.version("tlzoo")
    except metadata.PackageNotFoundError:  # running from a checkout
        return "0+local"


class PluginManager:
    def __init__(self, load_entry_points: bool = True, extra: list[Any] | None = None,
                 builtins: bool = True) -> None:
        self.pm = pluggy.PluginManager("tlzoo")
        self.pm.add_hookspecs(hookspecs)
        self.pm.register(_StepRunner(), name="tlzoo.step-runner")
        self.info: dict[str, PluginInfo] = {}
        allowed = _allowed()
        for module_name in BUILTIN_PLUGINS if builtins else ():
            name = _short(module_name)
            if allowed is not None and name not in allowed:
                continue
            self._load(name, lambda m=module_name: importlib.import_module(m), _version(), True)
        if load_entry_points:
            for ep in metadata.entry_points(group="tlzoo"):
                if allowed is not None and ep.name not in allowed:
                    continue
                version = ep.dist.version if ep.dist is not None else None
                self._load(ep.name, ep.load, version, False)
        for plugin in extra or []:
            self.register(plugin)

    def _load(self, name: str, loader: Any, version: str | None, builtin: bool) -> None:
        info = PluginInfo(name=name, version=version, builtin=builtin)
        self.info[name] = info
        try:
            plugin = loader()
            self.pm.register(plugin, name=name)
        except Exception as exc:  # a broken plugin must not break the tool
            info.error = f"{type(exc).__name__}: {exc}"
            return
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register an object or module as a plugin (useful in tests and notebooks)."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        self._load(name, lambda: plugin, None, False)

    def call_register(self, hook: str, make_register: Any) -> None:
        """Call a registration hook plugin by plugin, recording failures per plugin.

        ``make_register(plugin_name)`` returns the callback handed to that plugin, so
        whatever it registers is labelled with the plugin it came from.
        """
        caller = getattr(self.pm.hook, hook)
        for impl in caller.get_hookimpls():
            current = impl.plugin_name
            try:
                impl.function(make_register(current))
            except Exception as exc:
                from .errors import TlzooError

                if isinstance(exc, TlzooError):
                    raise
                info = self.info.get(current)
                if info is not None and info.error is None:
                    info.error = f"{type(exc).__name__} in {hook}: {exc}"

    def plugins(self) -> list[PluginInfo]:
        return list(self.info.values())
