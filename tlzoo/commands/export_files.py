"""What ``tl export`` copies and how it writes: a weights folder copied without leaving it, the finished
folder moved into place, and the disk problems of writing it said in one line naming ``--to``.

A ``--weights`` folder may hold links: ``copy_source`` copies regular files inside the folder only,
follows a link only to a regular file inside it (or inside the Hugging Face cache's ``blobs/`` of a
snapshot folder, its normal layout) and refuses any other link, a device or a pipe, in one line.  So a
link to a private key cannot land in an export, nor one to ``/dev/zero`` fill the disk.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

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
