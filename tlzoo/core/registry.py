"""Named collections with wildcard listing and "did you mean", and the model catalogue.

``Catalogue`` reads ``tlzoo/registry.toml`` with tomllib only, so ``tl list`` never
imports torch.  ``Zoo`` gathers everything the loaded plugins registered.
"""
from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Generic, TypeVar

from .errors import TlzooError, unknown

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

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())


# --------------------------------------------------------------------------- catalogue
CATALOGUE_FIELDS = ("name", "plugin", "modality", "source", "weights", "licence",
                    "input_size", "num_features", "default", "description")


@dataclass
class CatalogueEntry:
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

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in CATALOGUE_FIELDS}


def load_catalogue(text: str | None = None) -> list[CatalogueEntry]:
    """Parse registry.toml (``[[model]]`` tables) into entries, checking keys."""
    if text is None:
        text = resources.files("tlzoo").joinpath("registry.toml").read_text("utf-8")
    data = tomllib.loads(text)
    entries = []
    for raw in data.get("model", []):
        bad = set(raw) - set(CATALOGUE_FIELDS)
        if bad:
            raise ValueError(f"registry.toml: unknown key(s) {sorted(bad)} in model {raw.get('name')}")
        entries.append(CatalogueEntry(**raw))
    return entries


def filter_catalogue(entries: list[CatalogueEntry], modality: str | None = None,
                     pattern: str = "*") -> list[CatalogueEntry]:
    return [e for e in entries
            if (modality is None or e.modality == modality) and
            (fnmatch.fnmatch(e.name, pattern) or fnmatch.fnmatch(e.plugin, pattern))]
