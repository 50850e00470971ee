"""bootstrap_ci's steps: the label checks, the stratified percentile bootstrap and the Wilson fallback."""

from __future__ import annotations

import numpy as np
import pytest

from tlzoo.evaluation.uncertainty import bootstrap_ci, wilson


@pytest.mark.parametrize(
    ("y_true", "y_pred", "n_boot", "message"),
    [
        ([0, 1], [0], 10, "differ in length (2 vs 1)"),
        ([0, 1], [0, 1], 0, "n_boot must be at least 1, got 0"),
        ([0, 2], [0, 1], 10, "class indices must lie in 0..1"),
        ([0, 1], [-1, 1], 10, "class indices must lie in 0..1"),
    ],
)
def test_bad_labels_are_refused_by_name(y_true: list[int], y_pred: list[int], n_boot: int, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bootstrap_ci(np.array(y_true), np.array(y_pred), 2, n_boot=n_boot)


def test_an_empty_test_set_gives_zero_intervals_without_checking_class_range() -> None:
    empty = np.array([], dtype=np.int64)
    assert bootstrap_ci(empty, empty, 3) == {"accuracy": [0.0, 0.0], "macro_f1": [0.0, 0.0]}


def test_all_right_falls_back_to_wilson_for_accuracy_and_as_wide_for_macro_f1() -> None:
    y = np.array([0] * 5 + [1] * 5 + [2] * 5)
    ci = bootstrap_ci(y, y, 3, n_boot=50)
    lo, hi = wilson(15, 15)
    assert ci["accuracy"] == [lo, hi] and hi == 1.0 and lo < 1.0
    assert ci["macro_f1"] == [round(1.0 - (1.0 - lo), 4), 1.0]  # F1 1.0 widened by accuracy's distance to lo


def test_singleton_classes_join_every_resample_unchanged() -> None:
    # class 2 has one (wrong) example: it resamples to itself, so no resample can reach accuracy 1.0
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0])
    ci = bootstrap_ci(y_true, y_pred, 3, n_boot=400, seed=5)
    assert ci["accuracy"][1] <= round(8 / 9, 4) < 1.0
    assert ci["accuracy"][0] < 6 / 9 < ci["accuracy"][1]  # the point value lies inside
    assert bootstrap_ci(y_true, y_pred, 3, n_boot=400, seed=5) == ci
    assert bootstrap_ci(y_true, y_pred, 3, n_boot=400, seed=6) != ci
