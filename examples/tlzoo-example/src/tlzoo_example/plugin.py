"""The hooks tlzoo calls: the module the ``tlzoo`` entry point names (``example = tlzoo_example.plugin``).

``tl list`` and ``tl --help`` import this module, so it imports nothing heavy at its top: only
tlzoo's hook marker (which loads no torch).  torch, numpy and scikit-learn are imported inside
the hooks, by the modules they register, when a command needs a backbone or a head.
"""

from __future__ import annotations

from typing import Any

from tlzoo import hookimpl

# What `tl list` shows for this plugin (the keys of tlzoo's registry.toml); `tl run --plugin NAME`
# and `--model NAME` take these names.  "plugin" is the backbone factory that builds the model.
CATALOGUE: list[dict[str, Any]] = [
    {
        "name": "tfidf-svd",
        "plugin": "tfidf",
        "modality": "text",
        "default": True,
        "num_features": 128,
        "source": "scikit-learn TfidfVectorizer + TruncatedSVD",
        "licence": "apache-2.0",
        "description": "TF-IDF of word 1-2-grams reduced to 128 dimensions by SVD, fitted on the run's training texts",
    },
    {
        "name": "pixels-32",
        "plugin": "pixels",
        "modality": "vision",
        "default": True,
        "input_size": 32,
        "num_features": 1024,
        "licence": "apache-2.0",
        "description": "raw pixels: the image resized to 32x32 grey and flattened (nothing learnt)",
    },
    {
        "name": "pixels-16",
        "plugin": "pixels",
        "modality": "vision",
        "input_size": 16,
        "num_features": 256,
        "licence": "apache-2.0",
        "description": "raw pixels at 16x16 grey: a floor any transfer should beat",
    },
]


@hookimpl
def tlzoo_register_catalogue(register: Any) -> None:
    for entry in CATALOGUE:
        register(entry)


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    from .pixels import pixels_factory
    from .tfidf import tfidf_factory

    register(tfidf_factory())
    register(pixels_factory())


@hookimpl
def tlzoo_register_heads(register: Any) -> None:
    from .ridge import RidgeHead

    register(RidgeHead)
