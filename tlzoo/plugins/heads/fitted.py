"""What the scikit-learn heads share: option rules, one-line errors, probability helpers, tuning.

Light on purpose: numpy loads on first use and scikit-learn inside methods, so `tl heads` and
the other listing commands import neither.  The search itself lives in :mod:`.tuning`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import FittedHead
from tlzoo.lib.lazy import lazy_module

from .fc import Rule, check_params, integer

if TYPE_CHECKING:
    import numpy as np
else:  # imported on first use
    np = lazy_module("numpy")

# below this many feature values (examples x features) a fit uses one BLAS thread: its products are
# small, and handing each over between threads costs more than it saves; on a busy machine 50x more
# (lbfgs on 1,400 x 384 MiniLM features, 2 cores under load: 16 s with two threads, 0.3 s with one)
ONE_BLAS_THREAD_BELOW = 1 << 22


def blas_threads_for(x: Any) -> Any:
    """A context for fitting on ``x``: one BLAS thread for a small problem (see ONE_BLAS_THREAD_BELOW),
    the library's own threads for a large one."""
    import contextlib

    if getattr(x, "size", ONE_BLAS_THREAD_BELOW) >= ONE_BLAS_THREAD_BELOW:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    return threadpool_limits(1, user_api="blas")


AUTO = "auto"  # an option chosen by cross-validation on the training features
SEED = integer(0, "0", hi=2**32 - 1)


def auto(rule: Rule) -> Rule:
    """``rule``, or "auto"."""
    return Rule(
        rule.allowed + " or 'auto' (cross-validated)",
        lambda v: v == AUTO or rule.test(v),
        rule.example,
        rule.nullable,
        words=(*rule.words, AUTO),
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def widen(proba: np.ndarray, seen: np.ndarray, num_classes: int) -> np.ndarray:
    """Columns for the classes the estimator saw -> all ``num_classes`` columns."""
    out = np.zeros((len(proba), num_classes), np.float32)
    out[:, seen.astype(np.int64)] = proba
    return out


class SklearnHead(FittedHead):
    """Shared plumbing: option checking, scikit-learn errors as one-line TlzooErrors, tuning.

    ``RULES`` say what each option accepts; they are checked when the head is built, at
    the start of a run, so a bad value never waits for feature extraction.
    """

    num_classes: int = 0
    RULES: dict[str, Rule] = {}
    CV_SPLITS = 9  # repeated stratified folds, about this many fits per setting: steadier than one shuffle

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        check_params(self, self.RULES)
        self.tuned: dict[str, Any] = {}
        self.blocks: list[list[int]] = []  # each input's columns, for features of several inputs

    def use_blocks(self, blocks: list[tuple[str, list[int]]]) -> None:
        """Each input's columns (a fused run): the heads that standardise scale each input as a whole."""
        self.blocks = [list(columns) for _, columns in blocks] if len(blocks) > 1 else []

    def block_scale(self, variance: np.ndarray) -> np.ndarray:
        """The divisor that standardises features of per-column ``variance`` made of several inputs
        (:meth:`use_blocks`; with one input the heads divide each column by its standard deviation).

        Each input's block is divided by one number, so the geometry inside it (an L2-normalised embedding's) stays,
        and every input gets an equal share of the total variance.  Scaling each column to unit variance
        instead hands most of the variance, and of the weight a regularised model can afford, to the
        widest input (1,280 image columns beside 384 text ones) and inflates its noisiest directions:
        on the built-in flags set, 0.853 against 0.897 for the block scale (10 split seeds, logreg)."""
        variance = np.asarray(variance, np.float64)
        scale = np.sqrt(variance)  # columns outside every block (none, from a fused backbone): their own
        width = sum(len(b) for b in self.blocks)
        for columns in self.blocks:
            total = float(variance[columns].sum())
            scale[columns] = np.sqrt(total * len(self.blocks) / width) if total > 1e-24 else 1.0
        scale[scale < 1e-12] = 1.0
        return scale

    @property
    def cross_validates(self) -> bool:
        """Whether ``fit`` chooses an option by cross-validation (one left at "auto"): it needs no
        validation split then, and a run fits it on train + validation.  (LinearSVC's ``dual="auto"``
        is scikit-learn's own choice, not a search.)"""
        return any(v == AUTO for k, v in self.params.items() if k != "dual")

    def _bad(self, exc: Exception) -> TlzooError:
        return TlzooError(
            f"Bad {self.name} option: {str(exc).splitlines()[0]}; check --set head.* values (see `tl heads`)."
        )

    def _make(self, factory: Any, **kwargs: Any) -> Any:
        try:
            return factory(**kwargs)
        except (TypeError, ValueError) as exc:
            raise self._bad(exc) from None

    def _fit(self, estimator: Any, x: np.ndarray, y: np.ndarray) -> Any:
        try:
            with blas_threads_for(x):
                return estimator.fit(x, y)
        except (TypeError, ValueError) as exc:  # sklearn validates parameters at fit time
            raise self._bad(exc) from None

    def _tune(
        self,
        x: np.ndarray,
        y: np.ndarray,
        grid: Mapping[str, Sequence[Any]],
        make: Callable[[dict[str, Any]], Any],
        fallback: dict[str, Any],
        *,
        most_folds: int = 5,
        prior: dict[str, Any] | None = None,
        paths: Mapping[str, str] | None = None,
        by: str = "accuracy",
        sample: bool = True,
        fold_predict: Callable[..., Sequence[np.ndarray]] | None = None,
    ) -> dict[str, Any]:
        """The values of the ``grid`` options: the user's, or for those left at "auto" the one
        :func:`.tuning.search` selects (repeated stratified folds; the simplest setting within
        one standard error of the best mean accuracy, among the settings that do not collapse).

        ``make(values)`` builds the estimator for a full set of values; ``paths`` names an
        option's parameter inside it where that differs (``{"C": "svm__C"}`` in a pipeline).
        ``prior``: values under which the head predicts (nearly) the class prior; that
        setting comes first, and stands when no setting carries usable signal.  Without
        enough examples per class to cross-validate, ``fallback`` stands in for "auto".
        ``by``, ``sample`` and ``fold_predict`` (every setting's predictions of a fold at once): see
        :func:`.tuning.search`.
        Sets ``self.tuned``: what was chosen and how, or {} when nothing was "auto"; and
        ``self.searched``: the estimator refitted on every training row, when the search
        saw them all (else None)."""
        from . import tuning

        self.tuned, self.searched = {}, None
        auto_keys = {k: list(v) for k, v in grid.items() if self.params.get(k) == AUTO}
        given = {k: self.params[k] for k in grid if k not in auto_keys}
        if not auto_keys:
            return given
        points = tuning.grid_points(auto_keys, prior)
        try:
            with blas_threads_for(x):
                found = tuning.search(
                    lambda: make({**given, **points[0]}),
                    points,
                    x,
                    y,
                    most_folds=most_folds,
                    splits=self.CV_SPLITS,
                    paths=paths or {},
                    by=by,
                    sample=sample,
                    fold_predict=fold_predict,
                )
        except (TypeError, ValueError) as exc:  # a bad option surfaces in the first fit
            raise self._bad(exc) from None
        if found is None:
            chosen = {k: fallback[k] for k in auto_keys}
            self.tuned = {**chosen, "cv_folds": 0, "note": "too few examples per class to cross-validate: defaults"}
            return {**given, **chosen}
        self.tuned = found.record(prior_first=prior is not None and any(k in auto_keys for k in prior))
        self.searched = found.estimator
        return {**given, **found.chosen}

    def _check_state(self, arrays: dict[str, np.ndarray], *keys: str) -> None:
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise TlzooError(
                f"The saved {self.name} head lacks '{missing[0]}'; the run directory is damaged, retrain with `tl run`."
            )
