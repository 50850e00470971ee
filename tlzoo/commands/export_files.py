"""What ``tl export`` copies and how it writes: a weights folder copied without leaving it, the finished
folder moved into place, and the disk problems of writing it said in one line naming ``--to``.

A ``--weights`` folder may hold links: ``copy_source`` copies regular files inside the folder only,
follows a link only to a regular file inside it (or inside the Hugging Face cache's ``blobs/`` of a
snapshot folder, its normal layout) and refuses any other link, a device or a pipe, in one line.  So a
link to a private key cannot land in an export, nor one to ``/dev/zero`` fill the disk.

Which package each plugin of a model comes from (:func:`plugin_origins`, :func:`require_plugins`): an
export of a run made with a third-party backbone or head loads only where that plugin is installed.
``export.json`` lists, for the backbone (each input's, in a fused run) and the head, the registered
name, the plugin that registered it, and the distribution that provides that plugin with its version
(``tlzoo`` for the built-ins; for an installed plugin the distribution of its ``tlzoo`` entry point,
found with :mod:`importlib.metadata`; none for one registered in code).  Loading an export where such
a name is not registered says which package to install.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError

# the weight files of a checkpoint folder (transformers, timm): not needed where model.safetensors holds the backbone
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".safetensors.index.json")


def copy_source(src: Path, assets: Path, which: str = "all") -> str:
    """Copy a local weights file (with its preprocessing sidecar ``.json``) or folder into ``assets/source``.

    Only regular files inside the folder are copied (hidden ones such as .git left out); a link is
    followed only to a regular file inside the folder, or inside the Hugging Face cache's ``blobs/`` of
    a snapshot folder; any other link, or a device or pipe, is refused in one line.  ``which``: ``all``,
    ``other`` (every file but the weight files) or ``weights`` (only those).
    """
    target = assets / "source" / src.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        for rel in _folder_files(src):
            if which == "all" or (which == "weights") == rel.name.endswith(WEIGHT_SUFFIXES):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / rel, target / rel)  # a new file's mode, not the source's
    elif which != "other":
        _regular_file(src, None, src)  # the file given to --weights itself may be a link, to a regular file
        shutil.copyfile(src, target)
        side = src.with_suffix(".json")
        if side != src and side.is_file():
            _regular_file(side, src.parent, src)
            shutil.copyfile(side, target.with_suffix(".json"))
    return str(target.relative_to(assets.parent))


def _folder_files(src: Path) -> list[Path]:
    """The files of the weights folder ``src`` to copy, relative to it (see :func:`copy_source`)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(src):  # links are not followed, only checked
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        for name in dirnames:
            if (here / name).is_symlink():
                _regular_file(here / name, src, src)  # a linked folder: refused
        for name in sorted(filenames):
            if not name.startswith("."):
                _regular_file(here / name, src, src)
                files.append((here / name).relative_to(src))
    return files


def _regular_file(path: Path, inside: Path | None, given: Path) -> None:
    """Refuse ``path`` unless it is a regular file, or a link to one inside ``inside`` (or its hub cache
    blobs; None: anywhere)."""
    real = path.resolve()
    allowed = [inside.resolve()] if inside is not None else [Path(real.anchor)]
    if allowed[0].parent.name == "snapshots":  # huggingface_hub's cache: snapshots/<rev>/x -> ../../blobs/<hash>
        allowed.append(allowed[0].parent.parent / "blobs")
    inside_ok = not path.is_symlink() or any(real.is_relative_to(a) for a in allowed)
    if not inside_ok or not real.is_file():
        what = "a link leading out of it" if not inside_ok else "not a regular file"
        raise TlzooError(
            f"--weights '{given}' holds '{path.name}', {what} (to '{real}'); tl export copies only regular files "
            "inside the weights folder: replace it by a copy of the file it stands for, or remove it."
        )


def move_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished folder to ``dest``; an empty mount point (which cannot be removed) gets its
    contents instead, moved from the temporary folder inside it."""
    if tmp.parent == dest:  # a mount point: _prepare made the temporary folder inside it
        for entry in tmp.iterdir():
            os.replace(entry, dest / entry.name)
        return
    if dest.exists():
        dest.rmdir()  # _prepare allowed only an empty folder
    tmp.rename(dest)


# what a failed write says, in the text of errors that carry no errno (shutil.Error lists, safetensors' Rust errors)
_DISK_PROBLEMS = (
    (("No space left", "os error 28", "StorageFull", "Disk quota"), "the disk is full; free space or choose"),
    (("Read-only file system", "os error 30", "ReadOnlyFilesystem"), "the file system is read-only; choose"),
    (("Permission denied", "os error 13", "PermissionDenied"), "permission denied; check its permissions or choose"),
)


def write_error(exc: BaseException, dest: Path) -> TlzooError | None:
    """A full disk, a read-only file system or a permission problem while writing the export, as one line
    naming ``--to`` (None for any other error)."""
    if isinstance(exc, TlzooError):
        return None
    code = getattr(exc, "errno", None)
    text = str(exc) if code is None else ""
    errnos = ((errno.ENOSPC, errno.EDQUOT), (errno.EROFS,), (errno.EACCES, errno.EPERM))
    for (words, fix), codes in zip(_DISK_PROBLEMS, errnos):
        if code in codes or any(w in text for w in words):
            return TlzooError(f"Cannot write the export '{dest}': {fix} another --to.")
    return None


# --------------------------------------------------------------------------- plugin origins
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
