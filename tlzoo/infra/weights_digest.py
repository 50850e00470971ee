"""A digest of weight files, remembered per (path, size, mtime) so a file is hashed once.

The feature cache keys features by the files a backbone's weights come from (with the
backbone's spec), which lets a run whose every split is cached skip building the backbone
(``BackboneFactory.weights_files``).  Hashing 90 MB of weights on every run would cost about
as much as the build it saves, so each file's SHA-256 is kept in ``$TLZOO_HOME/digests.json``
beside its size and modification time, and computed again only when either changes; this
process also remembers them, so a second digest of the same files reads nothing at all.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tlzoo.infra.lifecycle import tlzoo_home

_STORE = "digests.json"
_SEEN: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> SHA-256, in this process


def _files(paths: list[str]) -> list[Path]:
    """Every file under ``paths`` (a folder counts as all the files inside it), sorted, each once."""
    found: dict[str, Path] = {}
    for raw in paths:
        p = Path(raw).expanduser().resolve()
        if p.is_dir():
            for sub in sorted(q for q in p.rglob("*") if q.is_file()):
                found.setdefault(str(sub), sub)
        elif p.is_file():
            found.setdefault(str(p), p)
        else:
            raise FileNotFoundError(str(p))
    return [found[k] for k in sorted(found)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _load(store: Path) -> dict[str, list[object]]:
    try:
        data = json.loads(store.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(store: Path, data: dict[str, list[object]]) -> None:
    """Write atomically (several processes may digest at once); a cache that cannot be written is skipped."""
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f"{store.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=0, sort_keys=True), "utf-8")
        tmp.replace(store)
    except OSError:
        pass


def digest(paths: list[str], home: Path | None = None) -> str:
    """One SHA-256 over the contents of ``paths`` (files, or folders: every file inside), naming each
    file by its position in the sorted list; raises FileNotFoundError for a path that is not there."""
    store = (home or tlzoo_home()) / _STORE
    known: dict[str, list[object]] | None = None  # the store, read only when this process has not seen a file
    changed = False
    total = hashlib.sha256()
    for path in _files(paths):
        st = path.stat()
        mark = [st.st_size, st.st_mtime_ns]
        seen = (str(path), st.st_size, st.st_mtime_ns)
        sha = _SEEN.get(seen)
        if sha is None:
            known = _load(store) if known is None else known
            entry = known.get(str(path))
            if isinstance(entry, list) and len(entry) == 3 and entry[:2] == mark:
                sha = str(entry[2])
            else:
                sha = _sha256(path)
                known[str(path)] = [*mark, sha]
                changed = True
            _SEEN[seen] = sha
        total.update(f"{path.name}:{st.st_size}:{sha}\n".encode())
    if changed and known is not None:
        _save(store, known)
    return total.hexdigest()[:32]
