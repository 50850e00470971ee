"""The hooks tlzoo calls: the module the ``tlzoo`` entry point names (``example = tlzoo_example.plugin``).

``tl list``, ``tl heads``, ``tl plugins`` and ``tl --help`` import this module and call its
registration hooks, so neither imports anything heavy: the factories are described here (name,
models, options) and their ``create`` imports the backbone's module, and torch with it, only
when a run builds a backbone.  The ridge head's module imports numpy alone; scikit-learn loads
inside ``fit``.
"""

from __future__ import annotations

from typing import Any

from tlzoo import BackboneFactory, BackboneRequest, hookimpl

# The backbones' options with their defaults (`--set model.options.KEY=VALUE`); the factories
# check a request's options against them (unknown keys get a did-you-mean).
TFIDF_DEFAULTS: dict[str, Any] = {
    "dim": 128,
    "ngram_max": 2,
    "min_df": 1,
    "max_features": 20000,
    "sublinear_tf": True,
    "seed": 0,
}
PIXELS_SIZES = {"pixels-32": 32, "pixels-16": 16}
PIXELS_DEFAULTS: dict[str, Any] = {"grey": True}
SERIES_DEFAULTS: dict[str, Any] = {"length": 64, "channels": 8, "seed": 0}

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
    {
        "name": "series-conv",
        "plugin": "series",
        "modality": "sequence",  # a kind tlzoo has never heard of: the catalogue takes the factory's own name
        "default": True,
        "num_features": 21,  # 5 statistics + 2 per channel (8)
        "licence": "apache-2.0",
        "description": "a cell of numbers: summary statistics and a small seeded 1-D convolution (fused runs)",
    },
]


@hookimpl
def tlzoo_register_catalogue(register: Any) -> None:
    for entry in CATALOGUE:
        register(entry)


def _create_tfidf(request: BackboneRequest) -> Any:
    from .tfidf import TfidfSvdBackbone  # torch, numpy, scikit-learn: only when a run builds it

    return TfidfSvdBackbone(request)


def _create_pixels(request: BackboneRequest) -> Any:
    from .pixels import RawPixelsBackbone

    return RawPixelsBackbone(request)


def _create_series(request: BackboneRequest) -> Any:
    from .series import SeriesBackbone

    return SeriesBackbone(request)


def tfidf_factory() -> BackboneFactory:
    return BackboneFactory(
        name="tfidf",
        modality="text",
        create=_create_tfidf,
        default_model="tfidf-svd",
        models=("tfidf-svd",),
        options=TFIDF_DEFAULTS,
        description="TF-IDF + truncated SVD fitted on the training texts (tlzoo-example)",
    )


def pixels_factory() -> BackboneFactory:
    return BackboneFactory(
        name="pixels",
        modality="vision",
        create=_create_pixels,
        default_model="pixels-32",
        models=tuple(PIXELS_SIZES),
        options=PIXELS_DEFAULTS,
        description="raw pixels, resized and flattened: a baseline with nothing learnt (tlzoo-example)",
    )


def series_factory() -> BackboneFactory:
    """A modality tlzoo has never heard of ("sequence"), catalogued under that name like any other;
    `--plugin COLUMN=series` in a fused run is all it takes."""
    return BackboneFactory(
        name="series",
        modality="sequence",
        create=_create_series,
        default_model="series-conv",
        models=("series-conv",),
        options=SERIES_DEFAULTS,
        description="a sequence of numbers in a cell: summary statistics and a small 1-D convolution (tlzoo-example)",
    )


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    register(tfidf_factory())
    register(pixels_factory())
    register(series_factory())


@hookimpl
def tlzoo_register_heads(register: Any) -> None:
    from .ridge import RidgeHead

    register(RidgeHead)
