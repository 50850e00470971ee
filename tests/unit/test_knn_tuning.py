"""The knn head's per-fold search (one neighbour query per fold answers every k) chooses what
GridSearchCV's fit-per-setting search chooses, with the same fold scores; macro-F1 without
scikit-learn's input checks is the same float as ``f1_score``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tlzoo.plugins.heads import tuning
from tlzoo.plugins.heads.neighbours import KNNHead


def _blobs(seed: int, n: int = 240, d: int = 12, classes: int = 3, shift: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, d)).astype(np.float32) + shift * np.eye(classes, d, dtype=np.float32)[y]
    return x, y.astype(np.int64)


@pytest.mark.parametrize(
    "seed,options",
    [
        (0, {}),
        (1, {"metric": "euclidean"}),
        (2, {"metric": "manhattan", "weights": "distance"}),
        (3, {"n_neighbors": 5}),
    ],
)
def test_per_fold_search_matches_gridsearchcv(seed: int, options: dict) -> None:
    x, y = _blobs(seed)
    x[5] = x[6]  # a duplicate row: a zero distance, which distance weighting counts alone
    fast, slow = KNNHead(**options), KNNHead(**options)
    slow._fold_predict = None  # type: ignore[assignment,method-assign]  # GridSearchCV, a fit per setting
    fast.fit(x, y, 3)
    slow.fit(x, y, 3)
    assert (fast.k, fast.weights) == (slow.k, slow.weights)
    assert fast.tuned == slow.tuned and fast.tuned["cv_repeats"] >= 2
    test, _ = _blobs(seed + 100, n=60)
    assert np.array_equal(fast.predict_proba(test), slow.predict_proba(test))


def test_fold_predictions_are_sklearns_for_each_setting() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _blobs(7, n=150, classes=4, shift=0.5)
    head = KNNHead()
    points = [{"n_neighbors": k, "weights": w} for k in (45, 9, 1) for w in ("uniform", "distance")]
    got = head._fold_predict(points, x[:100], y[:100], x[100:])
    for p, pred in zip(points, got):
        ref = KNeighborsClassifier(p["n_neighbors"], weights=p["weights"], metric="cosine", algorithm="brute")
        assert np.array_equal(pred, ref.fit(x[:100], y[:100]).predict(x[100:])), p


def test_macro_f1_is_sklearns_float() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        n, c = int(rng.integers(1, 80)), int(rng.integers(1, 7))
        y = rng.integers(0, c, n)
        pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, c + 1, n))
        assert tuning.macro_f1(y, pred) == f1_score(y, pred, average="macro", zero_division=0)
    assert tuning.macro_f1(np.array(["a", "b"]), np.array(["a", "a"])) == f1_score(
        ["a", "b"], ["a", "a"], average="macro", zero_division=0
    )
