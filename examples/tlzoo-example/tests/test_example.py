"""The example plugin against tlzoo's contract kit, as a third-party package tests itself.

Run from this folder after ``pip install -e .``: ``pytest``.  Every backbone and the head
get one test per rule of the kit (``tlzoo.testing.parametrize_with_checks``); the guard
fails when the plugin registers something no case checks.

The kit fits the ``tfidf`` backbone (a ``tlzoo.FittableBackbone``) on a tiny training split
before checking it, and checks the fit protocol itself; the tests below check it by hand too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tlzoo_example.ridge import RidgeHead
from tlzoo_example.series import SeriesBackbone, parse_series
from tlzoo_example.tfidf import TfidfSvdBackbone, tfidf_factory

from tlzoo import BackboneRequest, Dataset, Zoo
from tlzoo.testing import BackboneCase, parametrize_with_checks, tiny_texts, uncovered

TEXTS = tiny_texts(8)
SERIES = ["1 2 3 4 5", "5, 4, 3", "0.5;-0.5;0.25", "", "7", "2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 9"]

CASES = [
    # the kit fits a FittableBackbone on a tiny training split before its checks, and checks the fit
    # protocol (save_assets, then a fresh build restored from request.assets gives the same features)
    BackboneCase("tfidf", BackboneRequest("tfidf-svd", options={"dim": 6})),
    BackboneCase("pixels", BackboneRequest("pixels-16")),
    BackboneCase("pixels", BackboneRequest("pixels-32", options={"grey": False}, image_size=8), id="pixels-rgb-8"),
    # a modality tlzoo has never heard of: the kit cannot invent inputs for it, so the case gives some
    BackboneCase("series", BackboneRequest("series-conv", options={"channels": 4}), examples=SERIES),
    # the same backbone inside a fused one, beside an image column: the kit makes the records itself
    # ("sequence" fields get cells of numbers), from the fused backbone's field_modalities
    BackboneCase(
        "fusion",
        BackboneRequest("concat", pretrained=False, options={"inputs": {"image": "pixels-16", "readings": "series"}}),
        id="fusion-pixels-series",
    ),
    RidgeHead,
]


@parametrize_with_checks(CASES)
def test_contract(case: Any, check: Callable[[Any], None]) -> None:
    check(case)


def test_everything_the_plugin_registers_has_a_case() -> None:
    assert not any(uncovered(CASES, plugin="example").values()), uncovered(CASES, plugin="example")


def test_the_plugin_catalogues_its_models() -> None:
    zoo = Zoo()
    for name, plugin in (("tfidf-svd", "tfidf"), ("pixels-32", "pixels"), ("pixels-16", "pixels")):
        entry = zoo.entry(name)
        assert entry is not None and entry.plugin == plugin and entry.registered_by == "example"
        assert zoo.resolve_backbone(name) == (zoo.backbones.get(plugin), name)


# --------------------------------------------------------------------------- the fit protocol, by hand
def test_tfidf_features_survive_save_and_load_exactly(tmp_path: Path) -> None:
    request = BackboneRequest("tfidf-svd", options={"dim": 4})
    fitted = tfidf_factory().create(request)
    fitted.fit(Dataset(TEXTS, ["a", "b"] * 4, "text"))
    fitted.save_assets(str(tmp_path))
    restored = tfidf_factory().create(BackboneRequest("tfidf-svd", options={"dim": 4}, assets=str(tmp_path)))
    assert isinstance(restored, TfidfSvdBackbone) and restored.fitted
    batch = [fitted.transform(t, train=False) for t in TEXTS]
    a, b = fitted(fitted.collate(batch)), restored(restored.collate(batch))
    assert a.shape == (8, 4) and bool((a == b).all())
    assert fitted.fingerprint() == restored.fingerprint()


def test_tfidf_fit_is_deterministic_and_the_fingerprint_follows_the_data() -> None:
    def fit(texts: list[str], seed: int = 0) -> Any:
        backbone = tfidf_factory().create(BackboneRequest("tfidf-svd", options={"dim": 4, "seed": seed}))
        backbone.fit(Dataset(texts, ["x"] * len(texts), "text"))
        return backbone

    assert fit(TEXTS).fingerprint() == fit(TEXTS).fingerprint()
    assert fit(TEXTS).fingerprint() != fit(TEXTS[:6]).fingerprint()  # other texts, other state: other cache key
    unfitted = tfidf_factory().create(BackboneRequest("tfidf-svd"))
    assert unfitted.fingerprint() != fit(TEXTS).fingerprint()


def test_missing_fitted_state_and_unknown_options_are_one_line_errors(tmp_path: Path) -> None:
    from tlzoo import TlzooError

    with pytest.raises(TlzooError, match="fitted state of backbone 'tfidf-svd'.*does not load"):
        tfidf_factory().create(BackboneRequest("tfidf-svd", assets=str(tmp_path)))
    with pytest.raises(TlzooError, match="Unknown option model.options.dims for tfidf. Did you mean 'dim'"):
        tfidf_factory().create(BackboneRequest("tfidf-svd", options={"dims": 3}))
    with pytest.raises(TlzooError, match="model.options.dim of tfidf expects int"):
        tfidf_factory().create(BackboneRequest("tfidf-svd", options={"dim": "many"}))


def test_ridge_head_is_a_softmax_over_its_linear_layer() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    head = RidgeHead()
    head.fit(x, y, 3)  # class 2 never seen: probability ~0
    proba = head.predict_proba(x)
    weight, bias = head.to_linear()
    z = x @ weight.T + bias
    assert np.allclose(
        proba,
        np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True),
        atol=1e-6,
    )
    assert (proba.argmax(1) == y).mean() > 0.9 and proba[:, 2].max() < 1e-6


# --------------------------------------------------------------------------- the series backbone
def test_series_cells_parse_and_give_their_statistics() -> None:
    from tlzoo import TlzooError

    assert parse_series("1, 2;3  4").tolist() == [1.0, 2.0, 3.0, 4.0] and parse_series("").size == 0
    assert parse_series([0.5, 1]).tolist() == [0.5, 1.0] and parse_series(None).size == 0
    with pytest.raises(TlzooError, match="'x' in '1 x 3' is not a number"):
        parse_series("1 x 3")
    backbone = SeriesBackbone(BackboneRequest("series-conv", options={"channels": 2}))
    rising, falling, empty = (backbone.transform(c, train=False) for c in ("1 2 3 4", "6 4 2", ""))
    out = backbone(backbone.collate([rising, falling, empty])).detach()
    assert out.shape == (3, 5 + 2 * 2)
    assert out[0, :5].tolist() == pytest.approx([2.5, 1.118034, 1.0, 4.0, 1.0], abs=1e-5)  # mean sd min max slope
    assert out[1, 4].item() == pytest.approx(-2.0) and out[2].abs().sum().item() == 0.0
