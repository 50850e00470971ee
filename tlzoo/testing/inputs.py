"""Tiny inputs for the checks: short texts, a corpus, small images, awkward examples, separable features.

Used by every check in :mod:`tlzoo.testing` and handy in a plugin's own tests.
"""

from __future__ import annotations

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
    from PIL import Image

    return [
        Image.new("L", (20, 20), 128),
        Image.new("RGBA", (50, 30), (10, 200, 30, 100)),
        Image.new("RGB", (1, 1)),
        np.arange(64, dtype=np.uint8).reshape(8, 8),
    ]
