"""The plugin manager: built-in plugins first, then ``tlzoo`` entry points.

Each plugin loads in isolation; a plugin that fails to import or register is recorded
(``tl plugins`` shows the error) and every other command keeps working.  "Fails"
includes ``sys.exit()``, ``SystemExit`` and ``KeyboardInterrupt`` raised by the plugin
itself (only a real Ctrl-C, delivered as ``lifecycle.Interrupted``, stops loading), and a
``TlzooError`` raised inside a registration hook (or at import, e.g. ``@step_wrapper`` given
an unknown step name), and a ``tlzoo_run_step`` implementation that is no wrapper (it
would replace the step: the plugin is refused).  Registration hooks run built-ins
first, so on a name clash the built-in wins and the clash is a warning of the plugin.
``TLZOO_PLUGINS`` (comma-separated names) limits which plugins load; ``TLZOO_PLUGINS=``
(empty) loads none but the engine's own step runner; a name there that is no plugin is
recorded (``tl plugins``) and the CLI warns about it.  Built-in plugins have fixed names
(``BUILTIN_PLUGINS``), independent of their module paths; names of earlier versions
still work through ``ALIASES``.  An installed plugin whose module imports a heavy library
(``HEAVY_MODULES``: torch, scikit-learn, ...) at its top gets a warning: ``tl --help`` and
``tl list`` import that module, and would wait for the library.
"""

from __future__ import annotations

import importlib
import inspect
import linecache
import os
import sys
import types
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from tlzoo.api import hookspecs
from tlzoo.api.errors import suggest
from tlzoo.infra.lifecycle import Interrupted, signals_raise_interrupted

# plugin name -> module, in registration order (earlier data sources win ties).  The names are
# what TLZOO_PLUGINS and `tl plugins` use; they are stable, whatever the module is called.  Every
# module here is light (no torch, timm, transformers, scikit-learn or gensim at its top), so
# listing commands build the Zoo in a fraction of a second: a plugin whose classes subclass
# nn.Module registers from a `*_hooks` module and imports its implementation on first use.
BUILTIN_PLUGINS: dict[str, str] = {
    "data_files": "tlzoo.plugins.data.files",
    "builtin_datasets": "tlzoo.plugins.data.builtin",
    "data_hub": "tlzoo.plugins.data.hub",
    "heads": "tlzoo.plugins.heads.fc",
    "sklearn_heads": "tlzoo.plugins.heads.sklearn_heads",
    "strategies": "tlzoo.plugins.strategies.standard",
    "bert": "tlzoo.plugins.text.bert_hooks",
    "static_vectors": "tlzoo.plugins.text.static_vectors_hooks",
    "gensim_pretrain": "tlzoo.plugins.text.gensim_pretrain",
    "mini_transformer": "tlzoo.plugins.text.mini_transformer_hooks",
    "elmo": "tlzoo.plugins.text.elmo_hooks",
    "ulmfit": "tlzoo.plugins.text.ulmfit_hooks",
    "timm_vision": "tlzoo.plugins.vision.timm_vision_hooks",
    "torchvision_models": "tlzoo.plugins.vision.torchvision_models_hooks",
    "lenet": "tlzoo.plugins.vision.lenet_hooks",
    "pull": "tlzoo.plugins.vision.pull",
    "data_export": "tlzoo.plugins.data.export",
    "fusion": "tlzoo.plugins.fusion.fusion_hooks",
}

# the built-ins that add `tl` commands (tlzoo_register_commands): light modules (click and the
# catalogue at import, the work inside the command), the only built-ins the CLI imports to list or
# run commands, so `tl --help` never imports torch
COMMAND_PLUGINS: tuple[str, ...] = ("pull", "data_export")

# libraries that take seconds to import: a plugin module that imports one at its top is named in a warning
HEAVY_MODULES: tuple[str, ...] = ("torch", "tensorflow", "jax", "transformers", "timm", "sklearn", "gensim")

# names of 0.1 that TLZOO_PLUGINS still accepts: the plugins that now hold what they held
ALIASES: dict[str, tuple[str, ...]] = {
    "data_sources": ("data_files",),  # CSV/JSONL texts, image folders
    "text_data": ("data_files", "data_hub"),  # .txt class folders, Hugging Face texts
    "vision_data": ("data_files", "data_hub", "builtin_datasets"),  # image CSVs, HF images, Fashion-MNIST
}


@dataclass
class PluginInfo:
    name: str
    version: str | None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    builtin: bool = False
    warnings: list[str] = field(default_factory=list)
    missing: bool = False  # named in TLZOO_PLUGINS, but no such plugin exists

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "hooks": self.hooks,
            "error": self.error,
            "builtin": self.builtin,
            "warnings": self.warnings,
            "missing": self.missing,
        }

    def record(self, message: str) -> None:
        """Note a failure: the first one is the error, later ones are kept as warnings."""
        if self.error is None:
            self.error = message
        elif message != self.error and message not in self.warnings:
            self.warnings.append(message)


def _detail(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"the plugin called sys.exit({exc.code!r})"
    if isinstance(exc, KeyboardInterrupt):
        return "raised by the plugin"
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def describe(exc: BaseException, where: str = "") -> str:
    """One line for what a plugin raised (``Type in where: message``), BaseExceptions included."""
    detail = _detail(exc)
    head = f"{type(exc).__name__} in {where}" if where else type(exc).__name__
    return f"{head}: {detail}" if detail else head


def _passed_through_a_yield(tb: types.TracebackType) -> bool:
    """Whether this traceback entry is a generator (a hook wrapper) that received the error at its ``yield``."""
    code = tb.tb_frame.f_code
    if not code.co_flags & inspect.CO_GENERATOR:
        return False
    line = linecache.getline(code.co_filename, tb.tb_lineno, tb.tb_frame.f_globals).strip()
    return line.startswith(("yield", "result = yield", "return (yield", "return(yield")) or "= yield" in line


class _StepRunner:
    """The innermost tlzoo_run_step implementation: call the runner's method (the only plain one)."""

    @hookspecs.hookimpl(trylast=True)
    def tlzoo_run_step(self, step: str, run: Any) -> Any:
        return run.perform(step)


def _plain_step_impl(pm: pluggy.PluginManager, plugin: Any) -> str | None:
    """Why ``plugin`` is refused: a tlzoo_run_step implementation that is no wrapper would replace the step."""
    for impl in pm.hook.tlzoo_run_step.get_hookimpls():
        if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
            return (
                f"tlzoo_run_step must be a wrapper (@hookimpl(wrapper=True) ending in `return (yield)`, or "
                f"@tlzoo.step_wrapper(...)); '{impl.function.__name__}' is a plain implementation, which "
                "would replace the step instead of wrapping it"
            )
    return None


def _named() -> set[str] | None:
    """The names in ``TLZOO_PLUGINS`` as written, or None when it is not set."""
    raw = os.environ.get("TLZOO_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _allowed() -> set[str] | None:
    """The plugins ``TLZOO_PLUGINS`` lets load (aliases expanded), or None for all."""
    named = _named()
    if named is None:
        return None
    return {plugin for name in named for plugin in ALIASES.get(name, (name,))}


allowed_plugins = _allowed  # public name: the CLI filters what it cached by the current TLZOO_PLUGINS


def _entry_points() -> list[metadata.EntryPoint]:
    try:
        return list(metadata.entry_points(group="tlzoo"))
    except Exception:  # a broken distribution's metadata must not break the tool
        return []


def unknown_allowed() -> dict[str, str]:
    """Names in ``TLZOO_PLUGINS`` that are neither built-in nor installed -> a one-line explanation."""
    allowed = _named()
    if not allowed:
        return {}
    known = [*BUILTIN_PLUGINS, *ALIASES] + [ep.name for ep in _entry_points()]
    return {
        name: f"TLZOO_PLUGINS names '{name}', which is no built-in or installed plugin.{suggest(name, known)}"
        for name in sorted(allowed - set(known))
    }


def _version() -> str:
    try:
        return metadata.version("tlzoo")
    except metadata.PackageNotFoundError:  # running from a checkout
        return "0+local"


class PluginManager:
    """Loads the built-in plugins, then the ``tlzoo`` entry points, each in isolation.

    ``builtins``: True for every built-in, False for none, or the names of those to load
    (the CLI loads only ``COMMAND_PLUGINS`` to add commands).
    """

    def __init__(
        self, load_entry_points: bool = True, extra: list[Any] | None = None, builtins: bool | Collection[str] = True
    ) -> None:
        self.pm = pluggy.PluginManager("tlzoo")
        self.pm.add_hookspecs(hookspecs)
        self.pm.register(_StepRunner(), name="tlzoo.step-runner")
        self.info: dict[str, PluginInfo] = {}
        allowed = _allowed()
        with signals_raise_interrupted():  # so a real Ctrl-C is told apart from a plugin's KeyboardInterrupt
            wanted = BUILTIN_PLUGINS if builtins is True else builtins or ()
            for name, module_name in BUILTIN_PLUGINS.items():
                if name not in wanted or (allowed is not None and name not in allowed):
                    continue
                self._load(name, lambda m=module_name: importlib.import_module(m), _version(), True)
            if load_entry_points:
                for ep in _entry_points():
                    if allowed is not None and ep.name not in allowed:
                        continue
                    if ep.name in BUILTIN_PLUGINS:  # an entry point may not replace a built-in plugin
                        if ep.name in self.info:
                            self.info[ep.name].warnings.append(
                                f"an installed plugin '{ep.value}' has the same name and was not loaded"
                            )
                        continue
                    version = ep.dist.version if ep.dist is not None else None
                    self._load(ep.name, ep.load, version, False)
            for plugin in extra or []:
                self.register(plugin)
        if builtins is True and load_entry_points:
            for name, why in unknown_allowed().items():
                self.info[name] = PluginInfo(name=name, version=None, error=why, missing=True)

    def _load(self, name: str, loader: Any, version: str | None, builtin: bool) -> None:
        info = PluginInfo(name=name, version=version, builtin=builtin)
        self.info[name] = info
        before = set(sys.modules) & set(HEAVY_MODULES)
        try:
            plugin = loader()
            pulled = sorted(m for m in HEAVY_MODULES if m in sys.modules and m not in before)
            if pulled and not builtin:  # tl --help and tl list import this module: it must stay light
                info.warnings.append(
                    f"importing it loads {', '.join(pulled)}, so `tl --help` and `tl list` wait for "
                    "that; import heavy modules inside the hooks"
                )
            self.pm.register(plugin, name=name)
        except Interrupted:  # the user pressed Ctrl-C (or sent SIGTERM): stop, do not blame the plugin
            raise
        except BaseException as exc:  # a broken plugin (even one calling sys.exit) must not break the tool
            info.error = describe(exc)
            return
        refused = _plain_step_impl(self.pm, plugin)
        if refused:
            self.pm.unregister(plugin)
            info.error = refused
            return
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register an object or module as a plugin (useful in tests and notebooks)."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        self._load(name, lambda: plugin, None, False)

    def call_register(self, hook: str, make_register: Callable[[str], Any]) -> None:
        """Call a registration hook plugin by plugin, built-ins first, recording failures per plugin.

        ``make_register(plugin_name)`` returns the value handed to that plugin (the hook's
        only argument), so whatever it registers is labelled with the plugin it came from.
        A failure, ``TlzooError`` and ``SystemExit`` included, is recorded against the
        plugin; the other plugins still register.
        """
        caller = getattr(self.pm.hook, hook)
        impls = caller.get_hookimpls()
        impls.sort(key=lambda impl: not (self.info.get(impl.plugin_name) or PluginInfo("", None)).builtin)
        with signals_raise_interrupted():
            for impl in impls:
                current = impl.plugin_name
                try:
                    value = make_register(current)
                    impl.function(**{arg: value for arg in impl.argnames})
                except Interrupted:
                    raise
                except BaseException as exc:
                    self.record(current, describe(exc, hook))

    def record(self, plugin: str, message: str, warning: bool = False) -> None:
        """Note a problem against a plugin, for ``tl plugins``."""
        info = self.info.setdefault(plugin, PluginInfo(name=plugin, version=None))
        if warning:
            if message not in info.warnings:
                info.warnings.append(message)
        else:
            info.record(message)

    def is_builtin(self, plugin: str) -> bool:
        info = self.info.get(plugin)
        return bool(info and info.builtin)

    def plugin_of_traceback(self, tb: types.TracebackType | None) -> str | None:
        """The plugin owning the innermost frame of ``tb`` that belongs to any plugin, or None."""
        modules: dict[str, str] = {}
        for name, plugin in self.pm.list_name_plugin():
            if name not in self.info or plugin is None:
                continue
            module = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
            modules[module] = name
            if module.endswith("_hooks") and self.is_builtin(name):  # a built-in's implementation module
                modules[module.removesuffix("_hooks")] = name
        found = None
        while tb is not None:
            module = tb.tb_frame.f_globals.get("__name__", "")
            if not _passed_through_a_yield(tb):  # a step wrapper handing the step's error on is a bystander
                for prefix, name in modules.items():
                    if module == prefix or module.startswith(prefix + "."):
                        found = name
            tb = tb.tb_next
        return found

    def plugins(self) -> list[PluginInfo]:
        return list(self.info.values())
