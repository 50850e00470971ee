"""The text side of the run configuration (:mod:`tlzoo.engine.config`): did-you-mean for unknown
keys, values parsed from ``--set`` strings and TOML written back.  Plumbing over the declarations of
:mod:`tlzoo.api.settings`; it knows no setting by name."""

from __future__ import annotations

import difflib
import json
from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import typed_like
from tlzoo.api.settings import Setting


def unknown_key(dotted: str, every: dict[str, Setting]) -> TlzooError:
    """The error for a key that is not a setting: a section, a key under a plain value, or a typo."""
    inside = [k for k in every if k.startswith(dotted + ".")]
    if inside or every.get(dotted, Setting("")).type is dict:
        example = inside[0] if inside else f"{dotted}.KEY"
        return TlzooError(f"Config key '{dotted}' is a section; set one of its keys, e.g. '{example}'.")
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        if ".".join(parts[:i]) in every:
            return TlzooError(f"Config key '{'.'.join(parts[: i + 1])}' is not a section.")
    # within a known section, compare the last part only: "train." alone makes every train key look close
    section, leaf = dotted.rpartition(".")[::2]
    keys = [k for k, s in every.items() if s.type is not dict]
    siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == section}
    if siblings:
        close = [siblings[c] for c in difflib.get_close_matches(leaf, list(siblings), n=3, cutoff=0.6)]
    else:
        close = difflib.get_close_matches(dotted, keys, n=3, cutoff=0.6)
    if not close:  # the right name in the wrong section: 'lr' -> 'train.lr'
        leaves = {k.rpartition(".")[2]: k for k in keys}
        close = [leaves[c] for c in difflib.get_close_matches(leaf, list(leaves), n=3, cutoff=0.8)]
    known = list(dict.fromkeys(k.split(".")[0] for k in every)) if not section else list(siblings.values())
    quoted = " or ".join(f"'{c}'" for c in close)
    hint = f" Did you mean {quoted}?" if close else " Known: " + ", ".join(known) + "."
    return TlzooError(f"Unknown config key '{dotted}'.{hint}")


def coerce(key: str, value: Any, ftype: type) -> Any:
    """``value`` as a ``ftype``, parsed from text where needed: the rules plugin options follow too
    (:func:`tlzoo.api.interfaces.typed_like`, loose)."""
    ok, coerced = typed_like(ftype(), value, loose=True)
    if not ok:
        raise TlzooError(f"Config key '{key}' expects {ftype.__name__}, got {value!r}.")
    return coerced


def parse_loose(value: Any) -> Any:
    """Parse a --set head.* string as JSON when it looks like a number/bool/list."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table, keys quoted (a column name may hold any character)
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    if v is None:
        return '""'
    return json.dumps(str(v))
