"""Small functions for scripts and notebooks that need no torch."""

from __future__ import annotations

from tlzoo.engine.registry import CatalogueEntry, filter_catalogue, full_catalogue


def list_models(pattern: str = "*", modality: str | None = None) -> list[CatalogueEntry]:
    """Catalogued models (tlzoo's and the installed plugins') whose name, plugin or registering
    plugin matches a wildcard, e.g. ``list_models("*bert*")``; imports no torch."""
    return filter_catalogue(full_catalogue(), modality, pattern)
