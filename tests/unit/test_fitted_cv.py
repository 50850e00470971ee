"""The fitted (scikit-learn) heads tune their main hyper-parameters by cross-validation.

Held out, on weak and noisy features with an imbalanced majority class (40 %), no tuned head
may fall below the majority-class baseline; "auto" must choose different values where the
data needs them; a value the user sets is used as given.  Synthetic features: the heads see
nothing but a matrix, so no backbone is needed, and each fit takes well under a second."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tlzoo.api.errors import TlzooError
from tlzoo.engine.config import RunConfig
from tlzoo.facade import Engine
from tlzoo.plugins.heads.sklearn_heads import HEADS, GaussianNBHead, KNNHead, SVMHead, TreeHead, cv_folds


def weak_task(n: int, seed: int, d: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """3 classes (40 / 30 / 30 %); two of ``d`` features carry a little signal, the rest is noise."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.4, 0.3, 0.3])
    x = rng.normal(size=(n, d))
    x[:, 0] += 0.7 * ((y == 1).astype(float) - (y == 2))
    x[:, 1] += 0.7 * (y == 2)
    return x.astype(np.float32), y


# smaller forests and feature maps than the defaults keep the test fast; what is tuned stays "auto"
SMALLER = {"rf": {"n_estimators": 20}, "svm": {"n_components": 256}}
CASES: list[tuple[str, dict[str, Any]]] = [(cls.name, SMALLER.get(cls.name, {})) for cls in HEADS]
CASES.append(("svm", {"kernel": "rbf", **SMALLER["svm"]}))


@pytest.mark.parametrize("name,params", CASES, ids=[n + ("-rbf" if "kernel" in p else "") for n, p in CASES])
def test_no_tuned_head_falls_below_the_majority_class_held_out(name: str, params: dict[str, Any]) -> None:
    cls = next(c for c in HEADS if c.name == name)
    for seed in (0, 1):
        x, y = weak_task(300, seed)
        x_test, y_test = weak_task(2000, 100 + seed)
        majority = float((y_test == np.bincount(y).argmax()).mean())
        head = cls(**params)
        head.fit(x, y, 3)
        acc = float((head.predict_proba(x_test).argmax(1) == y_test).mean())
        assert acc >= majority, f"{name} {params}: held-out accuracy {acc:.3f} < majority baseline {majority:.3f}"
        assert head.tuned.get("cv_folds", 0) >= 3, head.tuned  # it was tuned, not left at a default


def test_the_untuned_defaults_of_before_did_fall_below_the_baseline() -> None:
    """The test above bites: with more noise features, k-NN with tlzoo 0.1's fixed k = 5 loses to
    the majority class; the tuned one does not."""
    x, y = weak_task(300, 0, d=64)
    x_test, y_test = weak_task(2000, 100, d=64)
    majority = float((y_test == 0).mean())
    for head, below in ((KNNHead(n_neighbors=5, weights="distance"), True), (KNNHead(), False)):
        head.fit(x, y, 3)
        acc = float((head.predict_proba(x_test).argmax(1) == y_test).mean())
        assert (acc < majority) == below, (head.params, acc, majority)


def _xor(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The class is the XOR of two feature signs: no single split helps, depth 2 solves it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)


def _noisy_line(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One threshold on feature 0 decides the class, with 30 % of the labels flipped."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    flip = rng.random(n) < 0.3
    return x, np.where(flip, 1 - y, y)


def test_auto_chooses_what_the_data_needs() -> None:
    xor, line = _xor(400, 0), _noisy_line(400, 0)
    deep, shallow = TreeHead(), TreeHead()
    deep.fit(*xor, 2)
    shallow.fit(*line, 2)
    assert deep.tuned["max_depth"] >= 2 and shallow.tuned["max_depth"] == 1, (deep.tuned, shallow.tuned)
    # k-NN: clean XOR quadrants want few neighbours, label noise wants many
    few, many = KNNHead(metric="euclidean"), KNNHead(metric="euclidean")
    few.fit(*xor, 2)
    many.fit(*line, 2)
    assert few.tuned["n_neighbors"] < many.tuned["n_neighbors"], (few.tuned, many.tuned)
    # the SVM: a wide, nearly noiseless linear task wants a weak penalty (large C), label noise a strong one
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 20)).astype(np.float32)
    clean = (x @ rng.normal(size=20) > 0).astype(np.int64)
    sharp, soft = SVMHead(), SVMHead()
    sharp.fit(x, clean, 2)
    soft.fit(*line, 2)
    assert sharp.tuned["C"] > soft.tuned["C"], (sharp.tuned, soft.tuned)


def test_a_value_the_user_sets_is_used_as_given() -> None:
    x, y = _noisy_line(300, 1)
    tree = TreeHead(max_depth=1)
    tree.fit(x, y, 2)
    assert "max_depth" not in tree.tuned and "min_samples_leaf" in tree.tuned  # only the "auto" one searched
    assert int((tree.forest.left >= 0).sum()) == 1  # one split: depth 1, as asked
    fixed = TreeHead(max_depth=3, min_samples_leaf=2)
    fixed.fit(x, y, 2)
    assert fixed.tuned == {}
    knn = KNNHead(n_neighbors=7, weights="uniform")
    knn.fit(x, y, 2)
    assert knn.tuned == {} and knn.model.n_neighbors == 7 and knn.model.weights == "uniform"
    svm = SVMHead(C=0.5, kernel="rbf")
    svm.fit(x, y, 2)
    assert "C" not in svm.tuned and "gamma" in svm.tuned


def test_on_features_without_signal_the_heads_predict_the_majority_class() -> None:
    """The grids start with the class prior (a single leaf, a vote of half the rows, variances a
    million times the largest), and a setting must beat it by more than one standard error of
    the folds: pure noise leaves the prior standing."""
    rng = np.random.default_rng(5)
    y = rng.choice(3, size=300, p=[0.4, 0.3, 0.3])
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x_test = rng.normal(size=(500, 16)).astype(np.float32)
    for head in (TreeHead(), KNNHead(), GaussianNBHead()):
        head.fit(x, y, 3)
        assert "class prior" in head.tuned.get("note", ""), (head.name, head.tuned)
        assert (head.predict_proba(x_test).argmax(1) == 0).mean() > 0.95, head.name


def test_a_saved_knn_head_keeps_its_chosen_k() -> None:
    x, y = _noisy_line(200, 2)
    head = KNNHead()
    head.fit(x, y, 2)
    again = KNNHead()  # params "auto": the state, not the params, says which k was used
    again.load_state(head.state())
    assert again.model.n_neighbors == head.model.n_neighbors
    np.testing.assert_allclose(again.predict_proba(x[:50]), head.predict_proba(x[:50]))


def test_folds_follow_the_smallest_class() -> None:
    assert cv_folds(np.array([0] * 50 + [1] * 3)) == 3
    assert cv_folds(np.array([0] * 50 + [1] * 50)) == 5
    assert cv_folds(np.array([0] * 300 + [1] * 300)) == 3  # above 500 rows: 3 folds bound the cost
    assert cv_folds(np.array([0] * 10 + [1])) == 0  # one example: no cross-validation
    head = TreeHead()
    head.fit(np.random.default_rng(0).normal(size=(11, 3)).astype(np.float32), np.array([0] * 10 + [1]), 2)
    assert head.tuned["cv_folds"] == 0 and head.tuned["max_depth"] == 12  # the old default stands in


def test_auto_is_checked_like_any_value() -> None:
    with pytest.raises(TlzooError, match="max_depth"):
        TreeHead(max_depth="deep")
    with pytest.raises(TlzooError, match="auto"):
        KNNHead(weights="autoo")


def test_a_run_logs_and_saves_what_was_chosen(word_bert_dir: Path, topics_csv: Path, tmp_path: Path) -> None:
    cfg = RunConfig()
    cfg.model.plugin, cfg.model.weights, cfg.model.max_length = "bert", str(word_bert_dir), 16
    cfg.data.path, cfg.head.name = str(topics_csv), "tree"
    cfg.train.device, cfg.progress, cfg.out = "cpu", False, str(tmp_path / "tree")
    lines: list[str] = []
    result = Engine(log=lines.append).run(cfg)
    tuned = result.metrics["head_tuning"]
    assert {"max_depth", "min_samples_leaf", "cv_folds", "cv_accuracy"} <= set(tuned)
    assert any(f"max_depth={tuned['max_depth']}" in m and "cross-validation" in m for m in lines), lines
    saved = json.loads((result.run_dir / "model.json").read_text())["head"]
    assert saved["tuned"] == tuned and saved["params"]["max_depth"] == "auto"
    on_disk = json.loads((result.run_dir / "metrics.json").read_text())
    assert on_disk["head_tuning"] == tuned
