"""Every ``--set`` key with its default and meaning: what ``tl config`` prints.

The engine's keys come from their declarations in the :class:`~tlzoo.engine.config.RunConfig`
dataclasses (:func:`~tlzoo.engine.config.settings`: default, meaning and option, declared once).
The plugins' keys come from what the plugins declare, so a third-party
plugin's keys appear too: a backbone factory's ``options`` (``model.options.KEY``, meanings
from its ``option_help``) and a head's ``defaults()`` (``head.KEY``).  Torch-free: only
the plugins' light registration modules are imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.engine.config import RunConfig, settings

# one line per engine key, from its declaration (kept under this name for 0.2 code)
MEANINGS: dict[str, str] = {key: decl.help for key, decl in settings().items()}


@dataclass
class Key:
    """One configuration key: its name, default, meaning, and who declares it."""

    key: str
    default: Any
    meaning: str
    option: str = ""  # the tl run option that sets it, if any
    source: str = "engine"  # "engine", or the plugins / heads that declare it

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def engine_keys() -> list[Key]:
    """The RunConfig keys, in the order of the dataclasses (sections' own dicts as one line each):
    each with its declared default, meaning (and, for a key whose default means "not set", what
    decides then) and option."""
    return [
        Key(
            key,
            decl.default,
            (decl.help or "(no description)")
            + (f"; left out: {decl.unset}" if decl.unset and decl.unset not in decl.help else ""),
            decl.flag,
        )
        for key, decl in settings().items()
    ]


def plugin_keys(zoo: Any, plugin: str = "") -> list[Key]:
    """``model.options.KEY`` of every backbone factory (or of ``plugin``'s) and ``head.KEY`` of every head.

    Factories that declare the same key with the same default and meaning share one line."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for name, factory in zoo.backbones.items():
        if plugin and plugin not in (name, factory.plugin):
            continue
        for key, default in factory.options.items():
            meaning = factory.option_help.get(key, "") or "(the plugin documents it)"
            grouped.setdefault((f"model.options.{key}", repr(default), meaning), []).append(name)
    keys = [
        Key(key, _literal(default), meaning, "", ", ".join(names)) for (key, default, meaning), names in grouped.items()
    ]
    keys.sort(key=lambda k: (k.key, k.source))
    if not plugin:
        for name, cls in zoo.heads.items():
            keys.extend(head_keys(name, cls))
    return keys


def head_keys(name: str, cls: Any) -> list[Key]:
    """``head.KEY`` of one head: default, what it takes (its rule, else the default's type) and its help."""
    helps, rules = getattr(cls, "option_help", {}) or {}, getattr(cls, "RULES", {}) or {}
    keys = []
    for key, default in cls.defaults().items():
        rule = rules.get(key)
        takes = getattr(rule, "allowed", "") or type(default).__name__
        meaning = f"{helps.get(key) or f'an option of the {name} head'}; takes {takes}"
        keys.append(Key(f"head.{key}", default, meaning, "", f"head {name}"))
    return keys


def _literal(text: str) -> Any:
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def format_keys(keys: list[Key]) -> list[str]:
    """Aligned lines: key, default (as --set takes it), the option, meaning, and for plugins who declares it."""
    rows = []
    for k in keys:
        default = _show(k.default)
        where = "" if k.source == "engine" else f"  [{k.source}]"
        rows.append((k.key, default, k.option, k.meaning + where))
    if not rows:
        return []
    widths = [min(max(len(r[i]) for r in rows), cap) for i, cap in ((0, 34), (1, 20), (2, 16))]
    return [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '""' if value == "" else value
    if isinstance(value, dict):
        return "{}" if not value else ", ".join(f"{k}={_show(v)}" for k, v in value.items())
    return repr(value)


def apply_plugin_arguments(
    cfg: RunConfig, values: list[str] | tuple[str, ...], tabular: str = "", weights: str = "", fusion: str = ""
) -> None:
    """``tl run --plugin`` into ``cfg``: one plugin, or ``COLUMN=PLUGIN`` pairs (a fused run); ``tabular``:
    ``--tabular-columns A,B``; ``weights``: ``--weights PATH``, or ``COLUMN=PATH[,...]`` in a fused run;
    ``fusion``: ``--fusion concat|late|mlp`` (``model.options.fusion`` of the fused backbone)."""
    pairs = [v for v in values if "=" in v]
    columns = [c.strip() for c in tabular.split(",") if c.strip()]
    if fusion:
        if not pairs and not columns and cfg.model.plugin != "fusion":
            raise TlzooError(
                f"--fusion applies to a fused run; give the inputs as --plugin COLUMN=PLUGIN (e.g. --plugin "
                f"image=efficientnet_lite0 --plugin title=bert --fusion {fusion})."
            )
        cfg.set("model.options.fusion", fusion)
    if not pairs and not columns:
        if len(values) > 1:
            raise TlzooError(
                f"--plugin given {len(values)} times ({', '.join(values)}); one backbone, or COLUMN=PLUGIN "
                "for each input column of a fused run."
            )
        if values:
            cfg.set("model.plugin", values[0])
        if weights:
            cfg.set("model.weights", weights)
        return
    if len(pairs) != len(values):
        plain = next(v for v in values if "=" not in v)
        raise TlzooError(
            f"--plugin {plain}: in a fused run every --plugin is COLUMN=PLUGIN (e.g. --plugin title={plain})."
        )
    inputs: dict[str, str] = {}
    for pair in pairs:
        column, _, plugin = pair.partition("=")
        if not column.strip() or not plugin.strip():
            raise TlzooError(f"--plugin '{pair}' must be COLUMN=PLUGIN, e.g. --plugin image=efficientnet_lite0.")
        if column.strip() in inputs:
            raise TlzooError(f"--plugin names column '{column.strip()}' twice; one backbone per column.")
        inputs[column.strip()] = plugin.strip()
    cfg.use_inputs(inputs, columns)
    if weights:
        cfg.set("model.options.weights", _column_paths(weights, inputs))


def _column_paths(given: str, inputs: dict[str, str]) -> dict[str, str]:
    """``--weights COLUMN=PATH[,COLUMN=PATH]`` of a fused run: absolute local paths per input column."""
    pairs = [p.partition("=") for p in given.split(",")]
    if any(not sep or not col.strip() or not path.strip() for col, sep, path in pairs):
        raise TlzooError(f"--weights '{given}': in a fused run name the column, --weights COLUMN=PATH[,COLUMN=PATH].")
    unknown = sorted({col.strip() for col, _, _ in pairs} - set(inputs))
    if unknown:
        raise TlzooError(f"--weights names column '{unknown[0]}', which is no --plugin input: {', '.join(inputs)}.")
    return {col.strip(): str(Path(path.strip()).resolve()) for col, _, path in pairs}
