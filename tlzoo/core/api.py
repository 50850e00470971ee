"""Small functions for scripts and notebooks that need no torch."""
from __future__ import annotations

from .registry import CatalogueEntry, filter_catalogue, load_catalogue


def list_models(pattern: str = "*", modality: str | None = None) -> list[CatalogueEntry]:
    """Catalogued models whose name or plugin matches a wildcard, e.g. ``list_models("*bert*")``."""
    return filter_catalogue(load_catalogue(), modality, pattern)
