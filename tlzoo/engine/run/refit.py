"""Part of step 9, train: models on every example that is not test.

* A fitted head that chooses its options by cross-validation needs no validation split: it is
  fitted on train + validation (:func:`fit_rows`).
* ``--refit-full``: once the phases have chosen (the kept phase and epoch), the head (feature
  extraction) or the whole plan (fine-tuning, the same epochs) is trained again from the start on
  train + validation, and that is the run's model (``fit.refit_full``), as AutoGluon's
  ``refit_full`` does.  The test split is never seen: the test figures score the refit model.

Also the feature rows both train on (``FeatureRows``).  Each function takes the run's state
(:class:`tlzoo.engine.run.state.RunState`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tlzoo.api.interfaces import FittedHead
from tlzoo.engine.run.state import RunState

NOT_TEST = ("train", "val")


def rows(run: RunState, splits: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Features and class indices of ``splits`` stacked (the splits' cached features)."""
    parts = [s for s in splits if len(run.features[s])]
    x = np.concatenate([np.asarray(run.features[s]) for s in parts]) if len(parts) > 1 else run.features[parts[0]]
    y = np.concatenate([run.targets[s].argmax(1) for s in parts])
    return x, y


def fit_rows(run: RunState) -> tuple[str, ...]:
    """The splits a fitted head learns from: train + validation when it cross-validates (it needs no
    validation split) or under ``--refit-full``; else train (validation scores it)."""
    head = run.head
    if not len(run.features.get("val", ())):
        return ("train",)
    if getattr(head, "cross_validates", False) or refits_on_all(run):
        return NOT_TEST
    return ("train",)


def record(run: RunState, splits: tuple[str, ...], why: str, **more: Any) -> None:
    """``run.trained_on``: what the saved model learnt from (metrics.json, model.json, the model card)."""
    n = {s: len(getattr(run.splits, s)) for s in splits}
    run.trained_on = {"splits": list(splits), "rows": sum(n.values()), "rows_per_split": n, "why": why, **more}


def fitted_refit_note(run: RunState, splits: tuple[str, ...]) -> str:
    """Why a fitted head learnt from ``splits`` (the log line and ``trained_on.why``)."""
    if splits == ("train",):
        return "the training split (validation scores it)"
    assert isinstance(run.head, FittedHead)
    if getattr(run.head, "cross_validates", False):
        return "train + validation: it chooses its options by cross-validation, so it needs no validation split"
    return "--refit-full: train + validation" if run.config.train.refit_full else NO_TEST_NOTE


def refits_on_all(run: RunState) -> bool:
    """Whether the saved model learns from every example outside the test split: ``--refit-full``, or
    ``--test-fraction 0`` (with ``--cv K``: the folds score it; the model is fitted on all the data)."""
    return bool(run.config.train.refit_full or run.config.data.test_fraction == 0)


NO_TEST_NOTE = "all the data (--test-fraction 0: cross-validation scores it, no test split)"


def row_loader(run: RunState, x: np.ndarray, y: np.ndarray) -> Any:
    """Shuffled batches (seeded by the run's training seed) of features ``x`` with one-hot targets of ``y``."""
    g = torch.Generator()
    g.manual_seed(run.train_seed)
    one_hot = np.eye(len(run.encoder.classes), dtype=np.float32)[y]
    return torch.utils.data.DataLoader(
        FeatureRows(x, one_hot), batch_size=run.config.train.batch_size, shuffle=True, generator=g, collate_fn=_as_batch
    )


class FeatureRows(torch.utils.data.Dataset):
    """Rows of (possibly memory-mapped, read-only) features with their targets, gathered a batch at a
    time (``__getitems__``): a shuffled epoch copies one batch of rows, never the whole array."""

    def __init__(self, features: np.ndarray, targets: np.ndarray) -> None:
        self.features, self.targets = features, targets

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(self.features[i])), torch.from_numpy(np.array(self.targets[i]))

    def __getitems__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.asarray(index, dtype=np.int64)
        return torch.from_numpy(np.take(self.features, rows, axis=0)), torch.from_numpy(self.targets[rows])


def _as_batch(batch: Any) -> Any:
    """The collate of :class:`FeatureRows` batches: already stacked by ``__getitems__`` (a list of
    (x, y) pairs, from a sampler that asks one index at a time, is stacked here)."""
    if isinstance(batch, tuple):
        return batch
    xs, ys = zip(*batch)
    return torch.stack(xs), torch.stack(ys)
