"""Which package each plugin of a model comes from: recorded in export.json, asked for when it is missing.

An export of a run made with a third-party backbone or head loads only where that plugin is
installed.  ``export.json`` lists, for the backbone (each input's, in a fused run) and the head,
the registered name, the plugin that registered it, and the distribution that provides that
plugin with its version (``tlzoo`` for the built-ins; for an installed plugin the distribution
of its ``tlzoo`` entry point, found with :mod:`importlib.metadata`; none for one registered in
code).  Loading an export where such a name is not registered says which package to install.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError

ENTRY_POINT_GROUP = "tlzoo"


def _distribution(plugin: str, zoo: Any) -> tuple[str | None, str | None]:
    """(distribution, version) providing ``plugin``: tlzoo for a built-in, the entry point's for an installed one."""
    info = zoo.plugins.info.get(plugin)
    if info is not None and info.builtin:
        return "tlzoo", _version("tlzoo")
    try:
        points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # noqa: BLE001  (a broken distribution's metadata must not break an export)
        points = []
    for ep in points:
        if ep.name == plugin and ep.dist is not None:
            return ep.dist.name, ep.dist.version
    return None, None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def plugin_origins(description: dict[str, Any], zoo: Any) -> list[dict[str, Any]]:
    """One row per registered thing a model.json needs: role, name, plugin, distribution, version."""
    b = description.get("backbone", {})
    wanted = [("backbone", str(b.get("plugin", "")), zoo.backbones)]
    inputs = (b.get("request", {}).get("options") or {}).get("inputs") or {}
    if isinstance(inputs, dict):  # a fused run: each input's backbone too
        wanted += [(f"backbone of input {col}", str(p), zoo.backbones) for col, p in inputs.items()]
    if description.get("head", {}).get("kind") != "linear":
        wanted.append(("head", str(description.get("head", {}).get("name", "")), zoo.heads))
    rows = []
    for role, name, registry in wanted:
        if not name:
            continue
        plugin = registry.owner.get(name, "")
        dist, version = _distribution(plugin, zoo) if plugin else (None, None)
        rows.append({"role": role, "name": name, "plugin": plugin, "distribution": dist, "version": version})
    return rows


def require_plugins(folder: Path, zoo: Any) -> None:
    """One line naming the package to install when an export needs a backbone or head not registered here."""
    try:
        rows = json.loads((folder / "export.json").read_text(encoding="utf-8")).get("plugins") or []
    except (OSError, ValueError, AttributeError):
        return  # a run folder (no export.json), or one the export check reports on its own
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        registry = zoo.heads if row.get("role") == "head" else zoo.backbones
        name = str(row.get("name", ""))
        if not name or name in registry or (row.get("role") != "head" and zoo.entry(name) is not None):
            continue
        dist, plugin = row.get("distribution"), row.get("plugin") or name
        if dist == "tlzoo":
            how = "a built-in plugin of tlzoo that is not loaded here: check TLZOO_PLUGINS"
        elif dist:
            how = f"from the package '{dist}' (pip install {dist})"
        else:
            how = "registered in code when it was exported (no package provides it): register it again"
        raise TlzooError(f"'{folder}' needs the plugin '{plugin}' for its {row.get('role')} '{name}', {how}.")
