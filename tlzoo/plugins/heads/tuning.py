"""How the fitted heads choose their "auto" options: scikit-learn's ``GridSearchCV`` with a
``refit`` callable that holds tlzoo's selection rule.

The search scores every setting on repeated stratified folds (``RepeatedStratifiedKFold``):
accuracy, macro-F1 and the share of the most-predicted class, from one prediction per fold.
The rule (:func:`judge`):

1. A setting is *degenerate* when its cross-validated predictions collapse to (nearly) one
   class (the most-predicted class takes 90 % of the way from the majority share to 1), or
   its macro-F1 sits at the majority-class level (nearer the macro-F1 of always answering
   the majority class than that of guessing at random) -- while some other setting is
   *informative*: macro-F1 more than two standard errors above random guessing (1 / number
   of classes) and mean accuracy above the majority share.  Random guessing is the yardstick
   rather than the majority class, because guessing already beats the majority class on
   macro-F1 (0.33 against 0.19 with three classes, 40 % in the largest).
2. Among the settings that are not degenerate (all of them when none is informative: with
   features that carry no usable signal the class prior comes first and stands), the first
   in grid order -- the most regularised -- whose mean accuracy is within one standard
   error of the best mean, and whose mean macro-F1 is within one standard error of that
   setting's, is chosen (Breiman's rule: more complexity must pay beyond the noise of the
   folds; the macro-F1 condition keeps a simpler setting from winning by dropping a class,
   as a depth-1 tree on three classes does).  The standard error is the folds' spread over
   the square root of the number of folds per repeat: repeats steady the mean, they are not
   new data.

Why: with one shuffle of 3 folds on 786 rows, the "simplest within one standard error" rule
alone chose naive Bayes with ``var_smoothing=1e6`` (the class prior: test accuracy 0.405 =
the majority class, macro-F1 0.19) where scikit-learn's default gave 0.452 / 0.454, and a
depth-2 tree the same way.

``logreg`` picks the best cross-validated log loss instead of accuracy (its probabilities are
the point), on 3 folds as before, among the settings that are not degenerate.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from tlzoo.lib.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

SEARCH_ROWS = 3000  # the search sees at most this many rows (stratified sample); the final fit sees all
COLLAPSE = 0.9  # of the way from the majority share to 1: predictions (nearly) one class


def cv_folds(y: np.ndarray, most: int = 5) -> int:
    """Stratified folds for ``y``: ``most`` (3 above 500 rows), at most the smallest class's count; < 2: none."""
    if len(y) == 0:
        return 0
    counts = np.bincount(y)
    counts = counts[counts > 0]
    if len(counts) < 2:
        return 0
    folds = int(min(most if len(y) <= 500 else min(most, 3), counts.min()))
    return folds if folds >= 2 else 0


def search_rows(y: np.ndarray, rows: int = SEARCH_ROWS) -> np.ndarray:
    """Indices of at most ``rows`` rows, every class in proportion (at least 5 of each where it has them), seed 0."""
    if len(y) <= rows:
        return np.arange(len(y))
    rng = np.random.default_rng(0)
    keep = []
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        n = max(min(5, len(idx)), round(rows * len(idx) / len(y)))
        keep.append(rng.choice(idx, size=n, replace=False))
    return np.sort(np.concatenate(keep))


def grid_points(grid: Mapping[str, Sequence[Any]], prior: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every combination of ``grid`` in order (the first option varies slowest); ``prior`` first when given."""
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    if prior and any(k in grid for k in prior):
        points.insert(0, {k: prior.get(k, grid[k][0]) for k in grid})
    return points


def scores(estimator: Any, x: np.ndarray, y: np.ndarray, log_loss: bool = False) -> dict[str, float]:
    """A multi-metric scorer: accuracy, macro-F1 and the most-predicted class's share, from one predict."""
    from sklearn.metrics import log_loss as ll

    out = prediction_scores(estimator.predict(x), y)
    if log_loss:
        out["neg_log_loss"] = -float(ll(y, estimator.predict_proba(x), labels=estimator.classes_))
    return out


def prediction_scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and the most-predicted class's share of the predictions ``pred`` of ``y``."""
    return {
        "accuracy": float((pred == y).mean()),
        "macro_f1": macro_f1(y, pred),
        "top_share": float(np.unique(pred, return_counts=True)[1].max() / len(pred)),
    }


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """``f1_score(y, pred, average="macro", zero_division=0)`` for class indices, the same float.

    The same counts and float64 arithmetic (2 tp / (true + predicted) per class seen in either,
    then their mean) without scikit-learn's input checks, which cost 10 ms a call on a loaded
    machine: the knn search scores 15 settings on 9 folds."""
    y, pred = np.asarray(y), np.asarray(pred)
    if y.dtype.kind not in "iu" or pred.dtype.kind not in "iu" or min(y.min(), pred.min()) < 0:
        from sklearn.metrics import f1_score

        return float(f1_score(y, pred, average="macro", zero_division=0))
    labels = np.union1d(y, pred)
    size = int(labels.max()) + 1
    tp = np.bincount(y[y == pred], minlength=size)[labels]
    true, predicted = np.bincount(y, minlength=size)[labels], np.bincount(pred, minlength=size)[labels]
    f = 2 * tp.astype(np.float64) / (true.astype(np.float64) + predicted.astype(np.float64))
    return float(np.mean(f))


@dataclass
class Judgement:
    """What :func:`judge` decided, per setting and overall."""

    pick: int
    best: int  # the best mean score among the candidates
    degenerate: list[bool]
    mean: dict[str, np.ndarray] = field(default_factory=dict)


def _mean_se(results: Mapping[str, Any], metric: str, splits: int, folds: int) -> tuple[np.ndarray, np.ndarray]:
    each = np.array([results[f"split{i}_test_{metric}"] for i in range(splits)], np.float64)  # [splits, settings]
    spread = each.std(0, ddof=1) if splits > 1 else np.zeros(each.shape[1])
    return each.mean(0), spread / np.sqrt(folds)


def judge(
    results: Mapping[str, Any], *, majority: float, classes: int, folds: int, splits: int, by: str = "accuracy"
) -> Judgement:
    """Apply the selection rule (module docstring) to ``GridSearchCV.cv_results_``."""
    acc, acc_se = _mean_se(results, "accuracy", splits, folds)
    f1, f1_se = _mean_se(results, "macro_f1", splits, folds)
    top, _ = _mean_se(results, "top_share", splits, folds)
    chance_f1 = 1.0 / classes
    majority_f1 = 2 * majority / (1 + majority) / classes  # macro-F1 of always answering the majority class
    informative = (f1 - chance_f1 > 2 * f1_se) & (acc > majority)
    degenerate = [False] * len(acc)
    if informative.any():
        at_majority = f1 <= (majority_f1 + chance_f1) / 2
        collapsed = top >= majority + COLLAPSE * (1 - majority)
        degenerate = [bool(v) for v in (at_majority | collapsed) & ~informative]
    candidates = [i for i, bad in enumerate(degenerate) if not bad]
    mean = {"accuracy": acc, "macro_f1": f1}
    if by != "accuracy":  # e.g. log loss: the best mean, no one-standard-error step
        mean[by] = np.asarray(results[f"mean_test_{by}"], np.float64)
        best = max(candidates, key=lambda i: (mean[by][i], -i))
        return Judgement(best, best, degenerate, mean)
    best = max(candidates, key=lambda i: (acc[i], -i))
    pick = next(i for i in candidates if acc[i] >= acc[best] - acc_se[best] and f1[i] >= f1[best] - f1_se[best])
    return Judgement(pick, best, degenerate, mean)


@dataclass
class Found:
    """The outcome of :func:`search`."""

    chosen: dict[str, Any]
    judgement: Judgement
    folds: int
    repeats: int
    rows: int
    points: int
    estimator: Any  # refitted on every training row when the search saw them all, else None
    by: str = "accuracy"

    def record(self, prior_first: bool = False) -> dict[str, Any]:
        """``head.tuned``: the chosen values and how (logged; saved in metrics.json and model.json)."""
        j, i = self.judgement, self.judgement.pick
        out: dict[str, Any] = {**self.chosen, "cv_folds": self.folds, "cv_repeats": self.repeats}
        if self.by == "neg_log_loss":
            out["cv_log_loss"] = round(-float(j.mean[self.by][i]), 4)
        out["cv_accuracy"] = round(float(j.mean["accuracy"][i]), 4)
        out["cv_macro_f1"] = round(float(j.mean["macro_f1"][i]), 4)
        if self.by == "accuracy":
            out["best_cv_accuracy"] = round(float(j.mean["accuracy"][j.best]), 4)
        out.update(grid_points=self.points, search_rows=self.rows)
        if any(j.degenerate):
            out["degenerate_settings"] = sum(j.degenerate)  # left out: predictions collapse to ~ one class
        if prior_first and i == 0:
            out["note"] = "nothing beat the class prior by more than the noise of the folds"
        return out


# (the points, x_train, y_train, x_test) -> each point's predictions of x_test
# (a string: numpy loads on first use, and `tl heads` imports this module)
FoldPredict: TypeAlias = (
    "Callable[[Sequence[Mapping[str, Any]], np.ndarray, np.ndarray, np.ndarray], Sequence[np.ndarray]]"
)


def search(
    make: Callable[[], Any],
    points: Sequence[Mapping[str, Any]],
    x: np.ndarray,
    y: np.ndarray,
    *,
    most_folds: int = 5,
    splits: int = 9,
    paths: Mapping[str, str] | None = None,
    by: str = "accuracy",
    sample: bool = True,
    fold_predict: FoldPredict | None = None,
) -> Found | None:
    """``GridSearchCV`` over ``points`` (in that order) of the estimator ``make()`` builds, on
    stratified folds repeated to make about ``splits`` fits per setting (twice at least; once for
    ``splits=1``), on at most :data:`SEARCH_ROWS` rows, selecting with :func:`judge`; None when
    some class has too few examples to cross-validate.

    ``paths`` maps an option to its parameter in the estimator (``svm__C`` in a pipeline);
    ``by="neg_log_loss"`` selects by log loss.  Scikit-learn's errors propagate (a bad option).

    ``fold_predict(points, x_train, y_train, x_test)``: every point's predictions of one fold at once, in
    place of a fit per point and fold (k-NN: one neighbour query per fold answers every k); the
    same folds, scores and rule, accuracy only, and no refitted estimator."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    rows = search_rows(y) if sample else np.arange(len(y))
    xs, ys = x[rows], y[rows]
    folds = cv_folds(ys, most_folds)
    if folds < 2:
        return None
    counts = np.bincount(ys)
    majority, classes = float(counts.max() / len(ys)), int((counts > 0).sum())
    repeats = 1 if splits <= 1 else max(2, round(splits / folds))
    splits = folds * repeats
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=0)

    def refit(results: Mapping[str, Any]) -> int:
        return judge(results, majority=majority, classes=classes, folds=folds, splits=splits, by=by).pick

    estimator = None
    results: Mapping[str, Any]
    if fold_predict is not None:
        results = _fold_results(fold_predict, cv, xs, ys, points)
    else:
        results, estimator = _grid_search(make(), points, paths or {}, cv, refit, by, xs, ys)
        estimator = estimator if len(ys) == len(y) else None  # refitted on a sample: not the head's fit
    judgement = judge(results, majority=majority, classes=classes, folds=folds, splits=splits, by=by)
    return Found(
        chosen=dict(points[judgement.pick]),
        judgement=judgement,
        folds=folds,
        repeats=repeats,
        rows=len(ys),
        points=len(points),
        estimator=estimator,
        by=by,
    )


def _grid_search(
    estimator: Any,
    points: Sequence[Mapping[str, Any]],
    paths: Mapping[str, str],
    cv: Any,
    refit: Callable[[Mapping[str, Any]], int],
    by: str,
    x: np.ndarray,
    y: np.ndarray,
) -> tuple[Mapping[str, Any], Any]:
    """``GridSearchCV`` over ``points`` in order (one grid per point), refitting the setting ``refit`` picks:
    its ``cv_results_`` and best estimator."""
    from sklearn.model_selection import GridSearchCV

    grid = [{paths.get(k, k): [v] for k, v in p.items()} for p in points]
    gs = GridSearchCV(
        estimator,
        grid,
        scoring=lambda est, a, b: scores(est, a, b, log_loss=by == "neg_log_loss"),
        refit=refit,
        cv=cv,
        error_score="raise",
    )
    with warnings.catch_warnings():  # a setting that does not converge just scores lower
        warnings.simplefilter("ignore")
        gs.fit(x, y)
    return gs.cv_results_, gs.best_estimator_


def _fold_results(
    predict: FoldPredict, cv: Any, x: np.ndarray, y: np.ndarray, points: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """``cv_results_``'s per-split scores (what :func:`judge` reads), from ``predict`` on each fold of ``cv``."""
    results: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (train, test) in enumerate(cv.split(x, y)):
            preds = predict(points, x[train], y[train], x[test])
            if len(preds) != len(points):
                raise RuntimeError(f"fold_predict gave {len(preds)} predictions for {len(points)} settings")
            each = [prediction_scores(p, y[test]) for p in preds]
            for metric in ("accuracy", "macro_f1", "top_share"):
                results[f"split{i}_test_{metric}"] = np.array([s[metric] for s in each])
    return results
