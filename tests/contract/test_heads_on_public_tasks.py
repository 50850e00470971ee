"""Each fitted head on public tables, over three split seeds: at or above the majority class on
average, macro-F1 above the majority class's, and never degenerate where scikit-learn's default
estimator is not (issue 17 §3).

Data: scikit-learn's bundled wine table (178 rows, 3 classes, 13 columns on very different
scales), its columns as features, split as a run splits (70 / 15 / 15, stratified); smaller
forests keep it near 15 s.  The full table, over the built-in text and image tasks, wine and
breast-cancer, is ``bench/bench_fitted_heads.py`` (BENCHMARKS.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tlzoo.api.interfaces import Dataset
from tlzoo.engine.data import stratified_split
from tlzoo.plugins.heads.sklearn_heads import HEADS

SEEDS = (0, 1, 2)


def _wine() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_wine

    bunch = load_wine()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def _split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    ds = Dataset([str(i) for i in range(len(y))], [str(v) for v in y], modality="text")
    parts = stratified_split(ds, 0.15, 0.15, seed)
    return np.array([int(i) for i in parts.train.examples]), np.array([int(i) for i in parts.test.examples])


def _default(name: str) -> Any:
    """scikit-learn's estimator at its defaults, standardised where the tlzoo head standardises."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    return {
        "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "svm": lambda: make_pipeline(StandardScaler(), LinearSVC()),
        "knn": KNeighborsClassifier,
        "nb": GaussianNB,
        "tree": lambda: DecisionTreeClassifier(random_state=0),
        "rf": lambda: RandomForestClassifier(n_estimators=20, random_state=0),
    }[name]()


def _collapsed(pred: np.ndarray, majority: float) -> bool:
    """(Nearly) one class: the most predicted class takes 90 % of the way from the majority share to 1."""
    return bool(np.bincount(pred).max() / len(pred) >= majority + 0.9 * (1 - majority))


def test_every_fitted_head_beats_the_majority_class_and_never_collapses() -> None:
    from sklearn.metrics import f1_score

    table = "wine"
    x, y = _wine()
    smaller = {"rf": {"n_estimators": 20}}  # below the search's 50 trees: the search's forest is the final one
    got: dict[str, list[tuple[float, float, bool, bool]]] = {cls.name: [] for cls in HEADS}
    baseline: list[tuple[float, float]] = []
    for seed in SEEDS:
        train, test = _split(y, seed)
        counts = np.bincount(y[train])
        share, majority = counts.max() / len(train), np.full(len(test), counts.argmax())
        baseline.append(((majority == y[test]).mean(), f1_score(y[test], majority, average="macro")))
        for cls in HEADS:
            head = cls(**smaller.get(cls.name, {}))
            head.fit(x[train], y[train], int(y.max()) + 1)
            pred = head.predict_proba(x[test]).argmax(1)
            assert "cv_macro_f1" in head.tuned and "cv_accuracy" in head.tuned, (cls.name, head.tuned)
            ref = _default(cls.name).fit(x[train], y[train]).predict(x[test])
            f1 = f1_score(y[test], pred, average="macro")
            got[cls.name].append(((pred == y[test]).mean(), f1, _collapsed(pred, share), _collapsed(ref, share)))
    maj_acc, maj_f1 = np.mean(baseline, axis=0)
    for name, runs in got.items():
        acc, f1 = np.mean([r[0] for r in runs]), np.mean([r[1] for r in runs])
        assert acc >= maj_acc, f"{table} {name}: mean test accuracy {acc:.3f} < majority class {maj_acc:.3f}"
        assert f1 > maj_f1 + 0.1, f"{table} {name}: mean macro-F1 {f1:.3f}, majority class {maj_f1:.3f}"
        for seed, (_, _, mine, theirs) in zip(SEEDS, runs):
            assert not mine or theirs, f"{table} {name} seed {seed}: collapsed to one class, the default did not"
