"""Splitting, subsetting and label encoding: seeded, stratified, numpy only."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .errors import TlzooError
from .interfaces import Dataset


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset


def check_labels(ds: Dataset) -> None:
    if len(ds) == 0:
        raise TlzooError(f"The dataset '{ds.name}' has no labelled examples; check the path and the columns.")
    counts = Counter(ds.labels)
    if len(counts) < 2:
        only = next(iter(counts))
        raise TlzooError(
            f"The dataset '{ds.name}' has one class only ('{only}'); a classifier needs at least two. "
            "Check --label-column."
        )


def stratified_limit(ds: Dataset, limit: int, seed: int) -> Dataset:
    """A stratified random subset of ``limit`` examples (class shares kept)."""
    if limit <= 0 or limit >= len(ds):
        return ds
    labels = np.array(ds.labels)
    classes, counts = np.unique(labels, return_counts=True)
    if limit < len(classes):
        raise TlzooError(f"--limit {limit} is smaller than the number of classes ({len(classes)}); raise it.")
    share = counts / counts.sum() * limit
    take = np.maximum(1, np.floor(share)).astype(int)
    # hand out the remainder by largest fractional share
    for i in np.argsort(-(share - np.floor(share))):
        if take.sum() >= limit:
            break
        if take[i] < counts[i]:
            take[i] += 1
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for cls, k in zip(classes, take):
        idx = np.flatnonzero(labels == cls)
        keep.extend(rng.choice(idx, size=min(k, len(idx)), replace=False).tolist())
    return ds.subset(sorted(keep))


def stratified_split(ds: Dataset, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise TlzooError(
            f"Split fractions val={val_fraction}, test={test_fraction} are invalid; "
            "each must be in [0, 1) with test > 0 and their sum below 1."
        )
    labels = np.array(ds.labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n = len(idx)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        if n >= 3:  # every class shows up in every split when it can
            n_test = max(1, n_test)
            n_val = max(1 if val_fraction > 0 else 0, n_val)
        n_test = min(n_test, n - 1)
        n_val = min(n_val, n - 1 - n_test)
        parts["test"].extend(idx[:n_test].tolist())
        parts["val"].extend(idx[n_test:n_test + n_val].tolist())
        parts["train"].extend(idx[n_test + n_val:].tolist())
    if not parts["test"]:
        raise TlzooError(f"Only {len(ds)} examples: too few to hold out a test set; add data or raise --test-fraction.")
    out = {k: ds.subset(sorted(v)) for k, v in parts.items()}
    return Splits(**out)


@dataclass
class LabelEncoder:
    classes: list[str]

    @classmethod
    def fit(cls, labels: list[str]) -> "LabelEncoder":
        return cls(sorted(set(labels), key=_natural_key))

    def encode(self, labels: list[str]) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[label] for label in labels], dtype=np.int64)

    def one_hot(self, labels: list[str]) -> np.ndarray:
        y = self.encode(labels)
        out = np.zeros((len(y), len(self.classes)), dtype=np.float32)
        out[np.arange(len(y)), y] = 1.0
        return out


def _natural_key(s: str) -> tuple:
    """'2' < '10' for numeric class names; text classes sort alphabetically."""
    return (0, int(s), "") if s.lstrip("-").isdigit() else (1, 0, s)
