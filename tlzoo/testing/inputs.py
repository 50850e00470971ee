"""Tiny inputs for the checks: short texts, a corpus, small images, awkward examples, separable features.

Used by every check in :mod:`tlzoo.testing` and handy in a plugin's own tests.  A backbone that
declares ``fields`` (a fused backbone: one input per column) is checked with records of those
fields (:func:`tiny_records`, :func:`awkward_records`), each field's value of its own modality.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

_SENTENCES = (
    "a charming and funny film with a great cast",
    "the plot is dull and the characters are boring",
    "one of the best movies of the year",
    "too long , too slow and never clever",
    "a young woman makes a new life in the old world",
    "bad",
    "an ugly , stupid comedy that is not funny at all , and the worst performance of his life",
    "beautiful",
)


def tiny_texts(n: int = 4) -> list[str]:
    """``n`` short English sentences of different lengths (so padding is exercised)."""
    return [_SENTENCES[i % len(_SENTENCES)] for i in range(n)]


def tiny_corpus(n: int = 48) -> list[str]:
    """``n`` unlabelled sentences for pretraining checks: few words, often repeated, so even a
    one-epoch language model or word2vec sees every word more than once."""
    return [_SENTENCES[i % len(_SENTENCES)] for i in range(n)]


def tiny_images(n: int = 4, size: int = 40, seed: int = 0) -> list[Any]:
    """``n`` random RGB PIL images of ``size`` x ``size`` (odd sizes exercise resizing)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 3 * i, 3), dtype=np.uint8)) for i in range(n)]


def tiny_examples(modality: str, n: int = 4) -> list[Any]:
    """Raw examples a backbone of ``modality`` ("text" or "vision") accepts."""
    if modality == "text":
        return tiny_texts(n)
    if modality == "vision":
        return tiny_images(n)
    raise ValueError(f"no tiny examples for modality {modality!r}")


def tiny_records(fields: Mapping[str, str], n: int = 4) -> list[dict[str, Any]]:
    """``n`` records of named fields for a multi-field backbone (a fused run's records): ``fields`` maps
    each field to its modality.  "vision": a small image; "text": a sentence; "tabular": a number
    (even-numbered tabular fields) or a category (odd ones); any other modality: a CSV cell of
    space-separated numbers ("0.5 1.25 -2"), what a third-party backbone of a new kind reads."""
    images, texts = tiny_images(n), tiny_texts(n)
    records: list[dict[str, Any]] = [{} for _ in range(n)]
    tabular = 0
    for field, modality in fields.items():
        for i, record in enumerate(records):
            if modality == "vision":
                record[field] = images[i]
            elif modality == "text":
                record[field] = texts[i]
            elif modality == "tabular":
                record[field] = f"{1.5 * i - 2:.2f}" if tabular % 2 == 0 else "abc"[i % 3]
            else:
                record[field] = " ".join(f"{(i + 1) * 0.5 * (-1) ** k:.2f}" for k in range(2 + i % 3))
        tabular += modality == "tabular"
    return records


def awkward_records(fields: Mapping[str, str]) -> list[dict[str, Any]]:
    """Records real tables hold: each field's awkward values (:func:`awkward_examples`; tabular fields:
    empty, blank or unparseable cells; fields of other kinds: empty and blank cells), ``None`` values,
    and an empty record."""
    cells: dict[str, list[Any]] = {"tabular": ["", "  ", "n/a", None]}
    columns = {
        f: awkward_examples(m) if m in ("text", "vision") else cells.get(m, ["", "  ", None])  # other kinds: empty
        for f, m in fields.items()
    }
    rows = max((len(v) for v in columns.values()), default=0)
    records = [{f: v[i % len(v)] for f, v in columns.items()} for i in range(rows)]
    return [*records, {f: None for f in fields}, {}]


def record_fields(backbone: Any) -> dict[str, str]:
    """A multi-field backbone's fields and their modalities: its ``field_modalities`` mapping, else its
    ``fields`` (each read as text); ``{}`` for a backbone of one modality."""
    declared = getattr(backbone, "field_modalities", None)
    if isinstance(declared, Mapping) and declared:
        return {str(k): str(v) for k, v in declared.items()}
    fields = getattr(backbone, "fields", None)
    if isinstance(fields, tuple | list) and fields:
        return {str(f): "text" for f in fields}
    return {}


def examples_for(backbone: Any, n: int = 4) -> list[Any]:
    """What the kit checks ``backbone`` with by default: :func:`tiny_records` for a backbone that declares
    ``fields``, else :func:`tiny_examples` of its modality."""
    fields = record_fields(backbone)
    return tiny_records(fields, n) if fields else tiny_examples(backbone.modality, n)


def separable_features(
    n: int = 60, num_features: int = 8, num_classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Float32 features with well-separated class means, and int64 labels 0..num_classes-1."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    centres = rng.normal(0, 4.0, (num_classes, num_features))
    x = centres[y] + rng.normal(0, 0.5, (n, num_features))
    return x.astype(np.float32), y.astype(np.int64)


def awkward_examples(modality: str) -> list[Any]:
    """Inputs real data holds: empty and over-long texts, odd characters; grey, RGBA, 1-pixel and
    numpy images (the built-in digits dataset yields 8x8 uint8 arrays)."""
    if modality == "text":
        return ["", "   ", "word " * 600, "émoji 🎬 café — naïve", "?!"]
    if modality != "vision":
        raise ValueError(f"no awkward examples for modality {modality!r}")
    from PIL import Image

    return [
        Image.new("L", (20, 20), 128),
        Image.new("RGBA", (50, 30), (10, 200, 30, 100)),
        Image.new("RGB", (1, 1)),
        np.arange(64, dtype=np.uint8).reshape(8, 8),
    ]
