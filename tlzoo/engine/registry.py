"""Named collections with wildcard listing and "did you mean", and the model catalogue.

The catalogue is tlzoo's own ``registry.toml`` (read with tomllib) plus the entries plugins
register through ``tlzoo_register_catalogue``; ``tl list`` loads only the installed entry
points for those (no built-in module), so it never imports torch.  ``Zoo`` gathers
everything the loaded plugins registered.
"""

from __future__ import annotations

import builtins
import fnmatch
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Generic, TypeVar

from tlzoo.api.errors import TlzooError, unknown

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> item mapping; ``get`` raises a helpful error for unknown names."""

    def __init__(self, kind: str, see: str = "tl list") -> None:
        self.kind = kind
        self.see = see
        self._items: dict[str, T] = {}
        self.owner: dict[str, str] = {}

    def add(self, name: str, item: T, plugin: str = "") -> None:
        if name in self._items:
            raise TlzooError(
                f"{self.kind} '{name}' is registered twice (by '{self.owner[name]}' and '{plugin}'); "
                "disable one with TLZOO_PLUGINS."
            )
        self._items[name] = item
        self.owner[name] = plugin

    def get(self, name: str) -> T:
        if name not in self._items:
            raise unknown(self.kind, name, self._items, self.see)
        return self._items[name]

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> builtins.list[tuple[str, T]]:  # `list` here is the method above
        return sorted(self._items.items())


# --------------------------------------------------------------------------- catalogue
CATALOGUE_FIELDS = (
    "name",
    "plugin",
    "modality",
    "source",
    "weights",
    "licence",
    "input_size",
    "num_features",
    "default",
    "description",
    "pooling",
    "text_prefix",
)
REQUIRED_FIELDS = ("name", "plugin", "modality")
CATALOGUE_MODALITIES = ("vision", "text", "multimodal")  # interfaces.MODALITIES, without importing torch
BUILTIN = "built-in"  # registered_by of the entries in tlzoo's own registry.toml


@dataclass
class CatalogueEntry:
    """A model ``tl list`` shows: ``name`` is what ``--plugin`` / ``--model`` take, ``plugin`` the
    backbone factory that builds it, ``registered_by`` the plugin that catalogued it (``built-in``
    for tlzoo's registry.toml, else the name ``tl plugins`` shows)."""

    name: str
    plugin: str
    modality: str
    source: str = ""
    weights: list[str] = field(default_factory=list)
    licence: str = ""
    input_size: int | None = None
    num_features: int | None = None
    default: bool = False
    description: str = ""
    pooling: str = ""  # text: the pooling the model was trained with ('' = the plugin's default)
    text_prefix: str = ""  # text: what the model expects before every text (e5: "query: ")
    registered_by: str = BUILTIN

    def as_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in CATALOGUE_FIELDS}, "registered_by": self.registered_by}


def catalogue_entry(raw: Any, registered_by: str = BUILTIN, where: str = "registry.toml") -> CatalogueEntry:
    """One entry from a ``[[model]]`` table or a dict a plugin registers, checking keys and types."""
    from tlzoo.api.errors import suggest

    if not isinstance(raw, dict):
        raise TlzooError(f"{where}: a catalogue entry is a dict of {', '.join(CATALOGUE_FIELDS)}; got {raw!r:.60}.")
    name = raw.get("name")
    label = f"model '{name}'" if isinstance(name, str) and name else "a model"
    bad = sorted(set(raw) - set(CATALOGUE_FIELDS))
    if bad:
        raise TlzooError(
            f"{where}: unknown key '{bad[0]}' in {label}.{suggest(bad[0], CATALOGUE_FIELDS)} "
            f"Keys: {', '.join(CATALOGUE_FIELDS)}."
        )
    missing = [k for k in REQUIRED_FIELDS if not isinstance(raw.get(k), str) or not raw.get(k)]
    if missing:
        raise TlzooError(f"{where}: {label} needs '{missing[0]}' (a non-empty string).")
    modality = raw["modality"]
    if modality not in CATALOGUE_MODALITIES:  # a plugin's own kind ("sequence") is welcome; a typo of ours is not
        hint = suggest(modality, CATALOGUE_MODALITIES)
        if hint or not re.fullmatch(r"[a-z][a-z0-9_-]{1,31}", modality):
            raise TlzooError(
                f"{where}: {label} has modality '{modality}'.{hint} Use vision, text, multimodal, or a new kind's "
                "lower-case name (the modality its backbone factory declares)."
            )
    types: dict[str, tuple[type, ...]] = {
        "source": (str,),
        "weights": (list,),
        "licence": (str,),
        "input_size": (int, type(None)),
        "num_features": (int, type(None)),
        "default": (bool,),
        "description": (str,),
        "pooling": (str,),
        "text_prefix": (str,),
    }
    for key, accepted in types.items():
        if key in raw and not isinstance(raw[key], accepted):
            raise TlzooError(f"{where}: '{key}' of {label} is a {type(raw[key]).__name__}.")
    if not all(isinstance(w, str) for w in raw.get("weights", [])):
        raise TlzooError(f"{where}: 'weights' of {label} is a list of strings (kind:location).")
    return CatalogueEntry(**{**raw, "weights": list(raw.get("weights", []))}, registered_by=registered_by)


def load_catalogue(text: str | None = None) -> list[CatalogueEntry]:
    """Parse registry.toml (``[[model]]`` tables) into entries, checking keys: tlzoo's own catalogue."""
    if text is None:
        text = resources.files("tlzoo").joinpath("registry.toml").read_text("utf-8")
    data = tomllib.loads(text)
    entries = []
    for raw in data.get("model", []):
        bad = set(raw) - set(CATALOGUE_FIELDS)
        if bad:
            raise ValueError(f"registry.toml: unknown key(s) {sorted(bad)} in model {raw.get('name')}")
        entries.append(catalogue_entry(raw))
    return entries


def add_plugin_entries(entries: list[CatalogueEntry], plugins: Any) -> list[CatalogueEntry]:
    """``entries`` plus what every loaded plugin registers through ``tlzoo_register_catalogue``.

    ``plugins`` is a ``PluginManager``.  Each entry is labelled with its plugin; a bad entry
    is an error of that plugin (``tl plugins``), a name already catalogued is kept by its first
    owner and a warning of the later plugin."""
    out = list(entries)
    owner = {e.name: e.registered_by for e in out}

    def make_register(plugin: str) -> Any:
        def register(raw: Any) -> None:
            entry = catalogue_entry(raw, registered_by=plugin, where=f"catalogue entry of plugin '{plugin}'")
            if entry.name in owner:
                plugins.record(
                    plugin,
                    f"catalogue entry '{entry.name}' is already registered by "
                    f"'{owner[entry.name]}'; this one is ignored",
                    warning=True,
                )
                return
            owner[entry.name] = plugin
            out.append(entry)

        return register

    plugins.call_register("tlzoo_register_catalogue", make_register)
    return out


def full_catalogue(plugins: Any = None) -> list[CatalogueEntry]:
    """registry.toml and the entries of the installed plugins (``plugins``: a PluginManager; by
    default one that loads the installed entry points only: no built-in module, no torch)."""
    if plugins is None:
        from tlzoo.engine.plugins import PluginManager

        plugins = PluginManager(builtins=False)
    return add_plugin_entries(load_catalogue(), plugins)


def filter_catalogue(
    entries: list[CatalogueEntry], modality: str | None = None, pattern: str = "*"
) -> list[CatalogueEntry]:
    """Entries of ``modality`` whose name, backbone plugin or registering plugin matches ``pattern``."""
    return [
        e
        for e in entries
        if (modality is None or e.modality == modality)
        and any(fnmatch.fnmatch(v, pattern) for v in (e.name, e.plugin, e.registered_by))
    ]


def list_models(pattern: str = "*", modality: str | None = None) -> list[CatalogueEntry]:
    """Catalogued models (tlzoo's and the installed plugins') whose name, plugin or registering
    plugin matches a wildcard, e.g. ``list_models("*bert*")``; imports no torch."""
    return filter_catalogue(full_catalogue(), modality, pattern)
