"""Is a file really safetensors?  Checked from its header before a library opens it.

A pickle renamed ``model.safetensors`` makes transformers raise ``SafetensorError: header too
large`` from deep inside ``from_pretrained``: an unexpected error (exit 1) for what is bad input.
A safetensors file starts with 8 bytes (little-endian header length) and that many bytes of UTF-8
JSON object; :func:`check_safetensors_file` reads only those and says in one line what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

from tlzoo.api.errors import TlzooError

MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the header


def check_safetensors_file(path: Path, what: str) -> None:
    """A one-line :class:`TlzooError` unless ``path`` starts with a readable safetensors header.

    ``what`` names where the file came from, e.g. ``--weights 'folder'``.
    """
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            head = f.read(min(size, MAX_HEADER)) if size <= MAX_HEADER else b""
        total = path.stat().st_size
    except OSError as exc:
        raise TlzooError(f"{what}: cannot read '{path.name}' ({exc.strerror}); check the file.") from None
    why = None
    if total < 8 or size > total - 8 or size > MAX_HEADER:
        why = "its header length does not fit the file"
    else:
        try:
            why = None if isinstance(json.loads(head.decode("utf-8")), dict) else "its header is not a JSON object"
        except (UnicodeDecodeError, ValueError, RecursionError):
            why = "its header is not JSON"
    if why:
        raise TlzooError(
            f"{what}: '{path.name}' is not a safetensors file ({why}; a pickle renamed?); tlzoo reads "
            "safetensors only: pass a folder saved with save_pretrained()."
        )
