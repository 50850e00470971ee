"""Settings declared once: a dataclass field made with :func:`setting` carries its meaning, range
or choices and command-line option, so help, listings and checks derive from one declaration.

The run configuration (:mod:`tlzoo.engine.config`) declares every engine setting this way;
:func:`collect_settings` walks such dataclasses into ``{"train.lr": Setting, ...}``.  Torch-free.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tlzoo.api.errors import TlzooError, suggest


@dataclass(frozen=True)
class Setting:
    """The declaration of one engine setting (see :func:`setting`); :func:`settings` adds
    ``key``, ``type`` and ``default`` from the dataclass field it is attached to."""

    help: str  # one line: what the setting means (tl config, and the option's help)
    flag: str = ""  # the tl run option; "--no-X" for a bool the flag turns off
    short: str = ""  # its one-letter form, e.g. "-e"
    check: Callable[[Any], bool] | None = None  # the range: a value passes or the error says `must`
    must: str = ""  # what a value must be, completing "--lr (train.lr) must be ..."
    choices: tuple[str, ...] = ()  # the only values accepted, with did-you-mean
    unset: str = ""  # the default means "not set": what decides instead (config.toml writes a comment)
    shown: str = ""  # the default as --help shows it, where the value says little (an empty string)
    option_help: str = ""  # the option's help where the one-line meaning is not enough
    key: str = ""
    type: Any = None
    default: Any = None

    @property
    def negative(self) -> bool:
        """Whether the option is a ``--no-X`` flag that sets this bool to false."""
        return self.flag.startswith("--no-")

    @property
    def param(self) -> str:
        """The click parameter name of the option (``--val-fraction`` -> ``val_fraction``)."""
        return self.flag.lstrip("-").replace("-", "_")

    def check_value(self, value: Any) -> None:
        """A one-line TlzooError when ``value`` is outside the range or the choices."""
        if self.choices and value not in self.choices:
            hint = suggest(str(value), self.choices)
            raise TlzooError(f"Unknown {self.key} '{value}'.{hint} Use one of {', '.join(self.choices)}.")
        if self.check is None or self.check(value):
            return
        name = f"{self.flag} ({self.key})" if self.flag and not self.negative else self.key
        raise TlzooError(f"{name} must be {self.must}, got {value!r}.")

    def help_text(self) -> str:
        """The option's help: the meaning, then the default as ``[value]`` (from this declaration)."""
        text = self.option_help or self.help[:1].upper() + self.help[1:]
        if self.negative:
            return text + "."
        default = self.shown or self.unset or _shown(self.default)
        return f"{text} [{default}]." if default else text + "."


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None, **declared: Any) -> Any:
    """A dataclass field declaring an engine setting: ``default`` (or ``factory`` for a dict),
    ``help``, and the :class:`Setting` fields (``flag``, ``short``, ``check`` with ``must``,
    ``choices``, ``unset``, ``shown``, ``option_help``)."""
    meta = {"setting": Setting(help, **declared)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def collect_settings(cls: type, prefix: str = "") -> dict[str, Setting]:
    """The settings of dataclass ``cls`` by dotted key (nested dataclasses give ``section.key``),
    each with its ``key``, ``type`` (``dict`` for ``dict[str, Any]``) and ``default`` filled in."""
    found: dict[str, Setting] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted, hint = prefix + f.name, hints[f.name]
        if dataclasses.is_dataclass(hint):
            found.update(collect_settings(hint, dotted + "."))  # type: ignore[arg-type]
            continue
        factory: Any = f.default_factory
        default = factory() if f.default is dataclasses.MISSING else f.default
        declared = f.metadata.get("setting") or Setting("")
        found[dotted] = dataclasses.replace(declared, key=dotted, type=typing.get_origin(hint) or hint, default=default)
    return found


def _shown(value: Any) -> str:
    """A default as help and ``tl config`` show it: empty for an empty string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value == "" else str(value)
