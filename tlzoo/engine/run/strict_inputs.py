"""Part of step 2, load dataset: ``--strict-inputs`` (``data.strict_inputs``), every image read before training.

By default one bad file must not end a run of thousands (issue 16 §3): a fused run gives an image
it cannot read (a missing, corrupt or truncated file) a zero vector and a missing-input flag, and
counts it in the log; a single-input image run leaves out, with a counted warning, each example
whose file is missing or is not an image Pillow recognises (:func:`skip_unreadable_images`, a
header read per file; a file whose header reads but whose pixels are truncated still stops the run
when it is decoded, naming the file).  With ``--strict-inputs`` each image file the dataset names is
opened, verified and decoded at step 2, and the first that fails stops the run in one line naming
the file, the record and the option, before any feature is extracted.
"""

from __future__ import annotations

import os
from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Dataset
from tlzoo.engine.data import image_file_problem, image_pixel_cap, image_pixels, is_image_path


def refuse_unreadable_images(ds: Dataset) -> None:
    """One line naming the first image of ``ds`` that cannot be read (and how many more), or nothing."""
    bad: list[tuple[str, str, str]] = []  # (path, where, why)
    for example, ident in zip(ds.examples, ds.ids):
        for path, where in _image_paths(example, ident, ds.modality):
            why = image_file_problem(path, "decode")
            pixels, cap = (image_pixels(path), image_pixel_cap()) if not why else (0, 0)
            if pixels > cap:
                why = f"{pixels:,} pixels, over the {cap:,}-pixel cap (TLZOO_MAX_IMAGE_PIXELS raises it)"
            if why:
                bad.append((path, where, why))
    if not bad:
        return
    path, where, why = bad[0]
    more = f" (and {len(bad) - 1} more unreadable image{'s' * (len(bad) > 2)})" if len(bad) > 1 else ""
    instead = ", or leave --strict-inputs out to give it a counted placeholder" if ds.modality == "multimodal" else ""
    raise TlzooError(
        f"Cannot read image '{path}' ({where}): {why}{more}; --strict-inputs stops on an unreadable image: "
        f"fix or remove the file{instead}."
    )


def skip_unreadable_images(ds: Dataset) -> tuple[Dataset, str]:
    """``ds`` without the examples of a single-input image run whose file is missing or not an image
    (a header read each), and a note that counts them and names the first ("" and ``ds`` when all read)."""
    if ds.modality != "vision":
        return ds, ""
    keep, bad = [], []
    for i, example in enumerate(ds.examples):
        why = image_file_problem(os.fspath(example)) if isinstance(example, (str, os.PathLike)) else ""
        if why:
            bad.append(f"'{os.fspath(example)}' ({why})")
        else:
            keep.append(i)
    if not bad:
        return ds, ""
    note = (
        f"left out {len(bad)} unreadable image{'s' * (len(bad) != 1)} of {len(ds)}, the first {bad[0]}; "
        "--strict-inputs stops on one instead"
    )
    return ds.subset(keep), note


def _image_paths(example: Any, ident: str, modality: str) -> list[tuple[str, str]]:
    """The image files an example names, each with where it was found (record and column)."""
    if isinstance(example, dict):  # a fused run's record: the fields that name an image file
        return [
            (value, f"record {ident}, column {column}")
            for column, value in example.items()
            if isinstance(value, str) and value.strip() and is_image_path(value)
        ]
    if modality == "vision" and isinstance(example, (str, os.PathLike)):
        return [(os.fspath(example), f"example {ident}")]
    return []  # a text, or an image already in memory
