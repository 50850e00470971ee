"""Splitting, subsetting, label encoding and metrics: the numpy parts the runner builds on."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Dataset
from tlzoo.engine.data import LabelEncoder, check_labels, stratified_limit, stratified_split
from tlzoo.evaluation.metrics import classification_report


def _ds(counts: dict[str, int]) -> Dataset:
    labels = [c for c, n in counts.items() for _ in range(n)]
    return Dataset([f"text {i}" for i in range(len(labels))], labels, modality="text")


def test_split_is_stratified_disjoint_and_seeded() -> None:
    ds = _ds({"a": 100, "b": 40, "c": 6})
    s = stratified_split(ds, 0.15, 0.15, seed=0)
    ids = [set(part.ids) for part in (s.train, s.val, s.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == len(ds)
    for part in (s.train, s.val, s.test):
        assert set(part.labels) == {"a", "b", "c"}, "every class shows up in every split"
    assert Counter(s.test.labels)["a"] == 15 and Counter(s.test.labels)["b"] == 6
    again = stratified_split(ds, 0.15, 0.15, seed=0)
    assert again.test.ids == s.test.ids
    other = stratified_split(ds, 0.15, 0.15, seed=1)
    assert other.test.ids != s.test.ids


@pytest.mark.parametrize("val,test", [(0.5, 0.5), (-0.1, 0.2), (0.2, 1.0), (0.0, -0.1)])
def test_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(TlzooError, match="Split fractions"):
        stratified_split(_ds({"a": 10, "b": 10}), val, test, seed=0)


def test_limit_keeps_class_shares() -> None:
    ds = _ds({"a": 700, "b": 250, "c": 50})
    sub = stratified_limit(ds, 100, seed=0)
    assert len(sub) == 100
    assert Counter(sub.labels) == {"a": 70, "b": 25, "c": 5}
    assert stratified_limit(ds, 100, seed=0).ids == sub.ids
    assert stratified_limit(ds, 0, seed=0) is ds
    with pytest.raises(TlzooError, match="smaller than the number of classes"):
        stratified_limit(ds, 2, seed=0)


def test_check_labels() -> None:
    check_labels(_ds({"a": 1, "b": 1}))
    with pytest.raises(TlzooError, match="one class only"):
        check_labels(_ds({"a": 5}))
    with pytest.raises(TlzooError, match="no labelled examples"):
        check_labels(_ds({}))


def test_label_encoder_orders_numbers_naturally() -> None:
    enc = LabelEncoder.fit(["10", "2", "1", "2"])
    assert enc.classes == ["1", "2", "10"]
    assert enc.encode(["10", "1"]).tolist() == [2, 0]
    assert LabelEncoder.fit(["rotten", "fresh", "plot"]).classes == ["fresh", "plot", "rotten"]
    oh = enc.one_hot(["2", "10"])
    assert oh.tolist() == [[0, 1, 0], [0, 0, 1]] and oh.dtype == np.float32


def test_classification_report_on_known_values() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    r = classification_report(y_true, y_pred, ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["per_class"]["a"] == {
        "precision": 1.0,
        "recall": pytest.approx(0.6667, abs=1e-4),
        "f1": pytest.approx(0.8, abs=1e-4),
        "support": 3,
    }
    assert r["per_class"]["b"]["precision"] == 0.5 and r["per_class"]["b"]["recall"] == 0.5
    f1s = [0.8, 0.5, 2 * 0.5 * 1 / 1.5]
    assert r["macro_f1"] == pytest.approx(np.mean(f1s), abs=1e-4)


def test_report_with_a_class_never_predicted() -> None:
    r = classification_report(np.array([0, 1, 2]), np.array([0, 0, 0]), ["a", "b", "c"])
    assert r["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert np.isfinite(r["macro_f1"])


def test_classes_of_one_example_each_get_advice_that_can_help() -> None:
    """Issue 17: 300 classes of one example each were told to raise --test-fraction, which cannot help."""
    import pytest

    from tlzoo.api.errors import TlzooError
    from tlzoo.api.interfaces import Dataset
    from tlzoo.engine.data import stratified_split

    ds = Dataset([f"text {i}" for i in range(300)], [f"class {i}" for i in range(300)], "text")
    with pytest.raises(TlzooError, match="single example.*at least 2") as caught:
        stratified_split(ds, 0.15, 0.15, seed=0)
    assert "--test-fraction" not in str(caught.value)


def test_labels_that_differ_only_by_spaces_case_or_unicode_form_are_warned_about() -> None:
    from tlzoo.engine.data import look_alike_labels

    notes = look_alike_labels(["cat", "cat ", "dog", "caf\u00e9", "cafe\u0301", "bird"])
    assert len(notes) == 2
    assert "'cat' and 'cat '" in notes[1] or "'cat' and 'cat '" in notes[0]
    assert look_alike_labels(["cat", "dog", "cats"]) == []


@pytest.mark.parametrize("val,test", [(0.1, 0.0), (0.0, 0.2)])
def test_a_zero_fraction_leaves_that_split_empty(val: float, test: float) -> None:
    """--test-fraction 0 (with --cv K) and --val-fraction 0 split nothing off for that part."""
    s = stratified_split(_ds({"a": 10, "b": 10}), val, test, seed=0)
    assert (len(s.val) == 0) == (val == 0) and (len(s.test) == 0) == (test == 0)
    assert len(s.train) + len(s.val) + len(s.test) == 20
