"""Looking after the feature cache: ``tl cache ls`` and ``tl cache clear [--older-than AGE]``.

Entries live under ``$TLZOO_HOME/features``; an entry's manifest modification time is
its last use (``FeatureCache.load`` touches it), which is what ``--older-than`` reads.
Folders without a manifest (``<key>.tmp-<pid>`` from an interrupted extraction) are
listed as partial and always removed by ``clear``, unless their writer is still alive;
``remove_orphans`` (run by ``tl cache ls`` and by every run) removes those whose process
is gone.  torch-free: ``tl cache`` needs no model library.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.infra.lifecycle import pid_alive, tlzoo_home

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass
class CacheEntry:
    key: str
    path: Path
    complete: bool
    bytes: int
    last_used: float
    created: float
    model: str = ""
    plugin: str = ""
    dataset: str = ""
    split: str = ""
    rows: int = 0
    width: int = 0
    weights: str = ""  # the backbone's weights_source ("random init (--no-pretrained)", a file, a package ...)

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def cache_root() -> Path:
    return tlzoo_home() / "features"  # FeatureCache's root, without importing torch


def remove_orphans(root: Path | None = None) -> list[Path]:
    """Remove ``<key>.tmp-<pid>`` folders whose writer process is gone; return them.

    A folder of a live process is being written right now and is left alone.
    """
    root = root or cache_root()
    removed: list[Path] = []
    try:
        folders = [f for f in root.iterdir() if ".tmp-" in f.name and f.is_dir()]
    except OSError:  # no cache yet, or unreadable: nothing to tidy
        return removed
    for folder in folders:
        pid = folder.name.rsplit(".tmp-", 1)[1]
        if pid.isdigit() and pid_alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


def parse_age(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` (or a bare number of days) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not m:
        raise TlzooError(f"Cannot read the age '{text}'; use a number with a unit, e.g. 30m, 12h, 7d or 2w.")
    return float(m.group(1)) * _UNITS[m.group(2) or "d"]


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def cache_entries(root: Path | None = None) -> list[CacheEntry]:
    """Every entry in the feature cache, most recently used first."""
    root = root or cache_root()
    if not root.is_dir():
        return []
    out = []
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        manifest = folder / "manifest.json"
        stat = (manifest if manifest.is_file() else folder).stat()
        entry = CacheEntry(
            key=folder.name,
            path=folder,
            complete=False,
            bytes=_size(folder),
            last_used=stat.st_mtime,
            created=stat.st_mtime,
        )
        if manifest.is_file() and ".tmp-" not in folder.name:
            try:
                meta = json.loads(manifest.read_text())
                entry.complete = True
                entry.created = float(meta.get("created", stat.st_mtime))
                entry.model, entry.plugin = str(meta.get("model", "")), str(meta.get("plugin", ""))
                entry.dataset, entry.split = str(meta.get("dataset_name", "")), str(meta.get("split", ""))
                entry.rows, entry.width = int(meta.get("rows", 0)), int(meta.get("width", 0))
                entry.weights = str(meta.get("weights_source", ""))
            except (ValueError, OSError):
                entry.complete = False
        out.append(entry)
    return sorted(out, key=lambda e: -e.last_used)


def _writer_alive(entry: CacheEntry) -> bool:
    """A ``<key>.tmp-<pid>`` folder whose process still runs is being written right now."""
    m = re.search(r"\.tmp-(\d+)$", entry.key)
    return m is not None and pid_alive(int(m.group(1)))


def clear_cache(older_than: str | float | None = None, root: Path | None = None) -> list[CacheEntry]:
    """Remove entries (all, or those unused for longer than ``older_than``); return them.

    Partial entries are removed whatever their age, unless their writer is still running.
    """
    limit = parse_age(older_than) if isinstance(older_than, str) else older_than
    now = time.time()
    removed = []
    for e in cache_entries(root):
        if _writer_alive(e):
            continue
        if e.complete and limit is not None and now - e.last_used < limit:
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        removed.append(e)
    return removed


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def human_age(seconds: float) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def weights_label(source: str) -> str:
    """The weights column of ``tl cache ls``: random init said plainly, else where they came from."""
    if not source:
        return "?"  # an entry written before tlzoo recorded it
    if source.lower().startswith("random"):
        return "random init"
    return source if len(source) <= 40 else "..." + source[-37:]


def dataset_label(name: str) -> str:
    """A built-in dataset by its name, a dataset read from disk by its path (home as ~)."""
    if not name.startswith("/"):
        return name or "-"
    home = str(Path.home())
    return "~" + name[len(home) :] if home != "/" and name.startswith(home + "/") else name


def cache_table(entries: list[CacheEntry], now: float) -> list[str]:
    """``tl cache ls`` lines: a header, then one aligned row per entry (widths from the contents)."""
    header = (
        "key",
        "model",
        "weights",
        "dataset (name, or path on disk)",
        "split",
        "rows x width",
        "size",
        "last used",
    )
    rows = []
    for e in entries:
        age = f"{human_age(now - e.last_used)} ago"
        if e.complete:
            cells = (
                e.key,
                f"{e.plugin}/{e.model}",
                weights_label(e.weights),
                dataset_label(e.dataset),
                e.split or "-",
                f"{e.rows} x {e.width}",
                human_bytes(e.bytes),
                age,
            )
        else:
            cells = (e.key, "(partial: an interrupted extraction)", "", "", "", "", human_bytes(e.bytes), age)
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {5, 6}  # numbers line up on the right
    return [
        "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        for r in [header, *rows]
    ]
