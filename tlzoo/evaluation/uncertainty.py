"""How far a test figure can be trusted: percentile-bootstrap intervals for accuracy and macro-F1.

A 90-example test set can move accuracy by several points between seeds; one number
hides that.  Resampling the test predictions with replacement and reading the 2.5th and
97.5th percentiles of the metric gives a 95 % interval that widens as the test set
shrinks.  The resampling is stratified by true class, as the test split itself is: every
resample keeps the test set's class counts.  A plain bootstrap of a 20-example, 10-class
test set leaves some class out of most resamples, and macro-F1 (which scores a class with
no examples as F1 0) would then drop for no reason in the data.  The resampling is
``scipy.stats.bootstrap`` (percentile method, one sample per class, ``paired=False``); the
statistic is vectorised: one confusion matrix per resample from a single ``bincount``, and
macro-F1 computed exactly as :func:`tlzoo.evaluation.metrics.classification_report` does.
Before 0.3 tlzoo drew the resamples itself; scipy draws the same indices from the same seed
(same batches, class by class), so on the 62 runs measured (8 to 2,400 test examples, 2 to 10
classes) every interval was identical to the last digit, fallbacks included.

Where every resample scores the same the percentile interval has zero width: stratified by
class, a test set with every example right (or each class's examples all given one label)
resamples to the same confusion matrix every time.  That says nothing about the data; 45 of
45 right is consistent with a true accuracy of 92 %.  There accuracy gets the Wilson score
interval (exact enough at any n, never zero-width, never outside [0, 1]), and macro-F1, which
has no such closed form, gets an interval as wide as that Wilson interval on either side of its
point value (clipped to [0, 1]): a stand-in that says "this is not known to better than the
accuracy is", not an estimate of its own.  Intervals the bootstrap can estimate are left as
they are.
"""

from __future__ import annotations

import warnings

import numpy as np

LEVEL = 0.95
Z = 1.959963984540054  # the standard normal quantile of 1 - (1 - LEVEL) / 2
METHOD = (
    "95% percentile bootstrap over the test examples, stratified by true class, 1000 resamples; where every "
    "resample scores the same, a Wilson score interval for accuracy and one as wide for macro-F1"
)


def wilson(correct: int, n: int, z: float = Z) -> list[float]:
    """The Wilson score interval of a proportion ``correct / n`` (``[0.0, 0.0]`` for n = 0), rounded to 4 places."""
    if n <= 0:
        return [0.0, 0.0]
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)))
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def batched_scores(cms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro-F1 of each confusion matrix in ``cms`` (shape ``[B, C, C]``, rows = true)."""
    cms = np.asarray(cms, dtype=float)
    tp = np.diagonal(cms, axis1=1, axis2=2)
    predicted = cms.sum(1)
    actual = cms.sum(2)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    total = cms.sum((1, 2))
    accuracy = np.divide(tp.sum(1), total, out=np.zeros_like(total), where=total > 0)
    return accuracy, f1.mean(1)


def bootstrap_ci(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, n_boot: int = 1000, seed: int = 0
) -> dict[str, list[float]]:
    """95 % intervals: ``{"accuracy": [lo, hi], "macro_f1": [lo, hi]}``, rounded to 4 places.

    ``y_true`` and ``y_pred`` are class indices in ``range(n_classes)``.  The same seed
    gives the same interval; an empty test set gives ``[0.0, 0.0]`` (the point estimate
    :func:`classification_report` reports for it).  Percentile bootstrap, except where it is
    degenerate (zero width): then accuracy gets the Wilson score interval and macro-F1 one as
    wide on either side of its point value (see the module docstring).
    """
    y_true, y_pred = _checked_labels(y_true, y_pred, n_classes, n_boot)
    n, c = len(y_true), int(n_classes)
    if n == 0:
        return {"accuracy": [0.0, 0.0], "macro_f1": [0.0, 0.0]}
    cell = y_true * c + y_pred  # the confusion-matrix cell of each example
    point = _scores(cell[None, :], c)
    out = {"accuracy": [point[0][0]] * 2, "macro_f1": [point[1][0]] * 2}  # one resample's worth: degenerate
    groups = [cell[y_true == k] for k in range(c)]
    varied = tuple(g for g in groups if len(g) > 1)
    if varied:  # a class with one example resamples to itself (and scipy needs two): it joins every resample as is
        fixed = np.concatenate([g for g in groups if len(g) == 1] or [np.empty(0, np.int64)])
        out = _stratified_percentiles(varied, fixed, c, n_boot, seed)
    out = {k: [round(v[0], 4), round(v[1], 4)] for k, v in out.items()}
    return _widen_degenerate(out, int((y_true == y_pred).sum()), n, float(point[1][0]))


def _checked_labels(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, n_boot: int
) -> tuple[np.ndarray, np.ndarray]:
    """Both label arrays as flat int64, or a ValueError naming what is wrong with them."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length ({len(y_true)} vs {len(y_pred)})")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    c = int(n_classes)
    if len(y_true) and (y_true.min() < 0 or y_pred.min() < 0 or max(y_true.max(), y_pred.max()) >= c):
        raise ValueError(f"class indices must lie in 0..{c - 1}")
    return y_true, y_pred


def _stratified_percentiles(
    varied: tuple[np.ndarray, ...], fixed: np.ndarray, c: int, n_boot: int, seed: int
) -> dict[str, list[float]]:
    """scipy's percentile bootstrap, each class resampled from its own cells; ``fixed`` joins every resample."""
    n = len(fixed) + sum(len(g) for g in varied)
    chunk = max(1, min(n_boot, 4_000_000 // max(1, n)))  # bounds memory on large test sets

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        picks = np.concatenate([np.broadcast_to(fixed, (*samples[0].shape[:-1], len(fixed))), *samples], axis=-1)
        flat = picks.reshape(-1, picks.shape[-1])
        return np.stack(_scores(flat, c)).reshape(2, *picks.shape[:-1])

    from scipy import stats  # here, not at the top: `tl report` and `tl errors` rarely need it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's DegenerateDataWarning: the Wilson fallback handles it
        res = stats.bootstrap(
            varied,
            statistic,
            n_resamples=n_boot,
            batch=chunk,
            vectorized=True,
            paired=False,  # each class resampled from its own examples: stratified
            confidence_level=LEVEL,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    lo, hi = res.confidence_interval
    return {"accuracy": [float(lo[0]), float(hi[0])], "macro_f1": [float(lo[1]), float(hi[1])]}


def _widen_degenerate(out: dict[str, list[float]], correct: int, n: int, f1: float) -> dict[str, list[float]]:
    """Zero-width intervals replaced: Wilson for accuracy, one as wide around macro-F1's point value."""
    w_lo, w_hi = wilson(correct, n)
    if out["accuracy"][0] == out["accuracy"][1]:
        out["accuracy"] = [w_lo, w_hi]
    if out["macro_f1"][0] == out["macro_f1"][1]:
        a = correct / n
        out["macro_f1"] = [round(max(0.0, f1 - (a - w_lo)), 4), round(min(1.0, f1 + (w_hi - a)), 4)]
    return out


def _scores(cells: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro-F1 of each row of confusion-matrix cell indices (shape ``[B, n]``), by one bincount."""
    b = cells.shape[0]
    flat = (np.arange(b)[:, None] * (c * c) + cells).ravel()
    return batched_scores(np.bincount(flat, minlength=b * c * c).reshape(b, c, c))
