"""Classic heads fitted on extracted features with scikit-learn.

``logreg``, ``svm``, ``rf``, ``knn``, ``tree`` and ``nb`` (Gaussian naive Bayes).  Each is
fitted with scikit-learn, then exported as plain numpy arrays (``state()``) that the
runner saves in ``model.safetensors``: no pickle, so a trained model loads with any
scikit-learn version.  Prediction from those arrays is done here in numpy, so
``tl predict`` does not even need scikit-learn for most heads.  Every hyper-parameter is
reachable as ``--set head.<param>=...``.  Third-party heads register through the same
``tlzoo_register_heads`` hook.

Every head tunes its main hyper-parameters by cross-validation on the training features
(``"auto"``, the default; a value set with ``--set`` skips the search for that option):
tree depth and leaf size, the forest's depth and ``max_features``, k and the weighting
of k-NN, C (and gamma for ``kernel=rbf``) of the SVM, naive Bayes' ``var_smoothing``,
logistic regression's C.  Untuned defaults can fall below the majority-class baseline on
weak features (a depth-12 tree on a 3-class text task whose majority class is 40.5 %
scored 39 %).  The grids run from the most regularised setting to the least, and the
search keeps the first whose mean held-out accuracy is within one standard error (of the
folds) of the best: more complexity must pay beyond the noise.  Where the family can say
it, the first point is the class prior (a single leaf, a vote of half the rows, huge
variances), so features without usable signal give the majority class, not fitted noise.
On a weak 3-class task (majority 40 %, 2 of 32 features informative, 10 held-out draws)
tlzoo 0.1's fixed values fell below the majority class 3/10 times (k-NN) and 2/10
(tree); tuned, no head did.  With even weaker features (2 of 64, smaller shifts) some
still can (k-NN 4/10, logreg 4/10, SVM 2/10, tree and nb 1/10, by 2-4 points).
Folds: stratified, k = 5 (3 above 500 rows, and for the forest), never more than
the smallest class has examples; the search sees at most 3,000 rows (a stratified sample)
so its cost stays bounded, then the chosen setting is fitted on every training row.  The
fits run in this process (``n_jobs=1``): they are small, a process pool costs more to
start than it saves on two cores, and the forest's own ``n_jobs`` still applies.  Cost,
fit with the search against one fit at tlzoo 0.1's fixed values (1,000 x 384 features, 3
classes, best of 3, a loaded 2-core machine): tree 9.7x (0.6 s -> 5.6 s), svm 6.2x, forest
2.8x, nb 0.2 s, k-NN 3.5 s (its fixed fit only stores the rows); logreg's search 6x.  What
was chosen is in ``head.tuned`` (logged, and saved in metrics.json and model.json).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import FittedHead
from tlzoo.lib.lazy import lazy_module

from .fc import Rule, check_params, choice, integer, is_int, number

if TYPE_CHECKING:
    import numpy as np
else:  # imported on first use: `tl heads` and the other listing commands load no numpy
    np = lazy_module("numpy")


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _widen(proba: np.ndarray, seen: np.ndarray, num_classes: int) -> np.ndarray:
    """Columns for the classes the estimator saw -> all ``num_classes`` columns."""
    out = np.zeros((len(proba), num_classes), np.float32)
    out[:, seen.astype(np.int64)] = proba
    return out


SEED = integer(0, "0", hi=2**32 - 1)
KNN_METRICS = (
    "cosine",
    "euclidean",
    "l2",
    "manhattan",
    "l1",
    "cityblock",
    "chebyshev",
    "minkowski",
    "sqeuclidean",
    "braycurtis",
    "canberra",
    "correlation",
)


def _leaf(v: Any) -> bool:
    """sklearn's min_samples_leaf: a count >= 1 or a fraction of the samples in (0, 1)."""
    return is_int(v, 1) or (isinstance(v, float) and 0 < v < 1)


def _max_features(v: Any) -> bool:
    return v in ("sqrt", "log2") if isinstance(v, str) else is_int(v, 1) or (isinstance(v, float) and 0 < v <= 1)


AUTO = "auto"  # an option chosen by cross-validation on the training features
SEARCH_ROWS = 3000  # the search sees at most this many rows (stratified sample); the final fit sees all


def _auto(rule: Rule) -> Rule:
    """``rule``, or "auto"."""
    return Rule(
        rule.allowed + " or 'auto' (cross-validated)",
        lambda v: v == AUTO or rule.test(v),
        rule.example,
        rule.nullable,
        words=(*rule.words, AUTO),
    )


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


def _search_rows(y: np.ndarray, rows: int = SEARCH_ROWS) -> np.ndarray:
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


class SklearnHead(FittedHead):
    """Shared plumbing: option checking, scikit-learn errors as one-line TlzooErrors.

    ``RULES`` say what each option accepts; they are checked when the head is built, at
    the start of a run, so a bad value never waits for feature extraction.
    """

    num_classes: int = 0
    RULES: dict[str, Rule] = {}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        check_params(self, self.RULES)

    def _make(self, factory: Any, **kwargs: Any) -> Any:
        try:
            return factory(**kwargs)
        except (TypeError, ValueError) as exc:
            raise TlzooError(f"Bad {self.name} option: {exc}; check --set head.* values.") from None

    def _fit(self, estimator: Any, x: np.ndarray, y: np.ndarray) -> Any:
        try:
            return estimator.fit(x, y)
        except (TypeError, ValueError) as exc:  # sklearn validates parameters at fit time
            raise TlzooError(
                f"Bad {self.name} option: {str(exc).splitlines()[0]}; check --set head.* values (see `tl heads`)."
            ) from None

    def _tune(
        self,
        x: np.ndarray,
        y: np.ndarray,
        grid: Mapping[str, Sequence[Any]],
        make: Callable[[dict[str, Any]], Any],
        fallback: dict[str, Any],
        features: Callable[[dict[str, Any], np.ndarray], np.ndarray] | None = None,
        most_folds: int = 5,
        prior: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The values of the ``grid`` options: the user's, or for those left at "auto" the first
        (most regularised) grid point whose mean stratified-CV accuracy is within one standard
        error of the best (Breiman's rule for trees: a better score within the noise of the
        folds does not buy a more complex model).

        ``make(values)`` builds an estimator; ``features(values, x)`` (optional) maps the
        searched rows for those values (the SVM's random Fourier features depend on gamma).
        ``prior``: values under which the head predicts (nearly) the class prior; that point
        comes first, so a head whose features carry no signal it can use beyond the noise
        of the folds predicts the majority class instead of fitting noise.  Without enough
        examples per class to cross-validate, ``fallback`` stands in for "auto".  Sets
        ``self.tuned``: what was chosen and how, or {} when nothing was "auto"."""
        from sklearn.model_selection import StratifiedKFold

        auto = {k: list(v) for k, v in grid.items() if self.params.get(k) == AUTO}
        given = {k: self.params[k] for k in grid if k not in auto}
        self.tuned: dict[str, Any] = {}
        if not auto:
            return given
        rows = _search_rows(y)
        xs, ys = x[rows], y[rows]
        folds = cv_folds(ys, most_folds)
        if folds < 2:
            chosen = {k: fallback[k] for k in auto}
            self.tuned = {**chosen, "cv_folds": 0, "note": "too few examples per class to cross-validate: defaults"}
            return {**given, **chosen}
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(xs, ys))
        points = [dict(zip(auto, combo)) for combo in itertools.product(*auto.values())]
        if prior and any(k in auto for k in prior):
            points.insert(0, {k: prior.get(k, auto[k][0]) for k in auto})
        scores, spreads = [], []
        with warnings.catch_warnings():  # a grid point that does not converge just scores lower
            warnings.simplefilter("ignore")
            for point in points:
                values = {**given, **point}
                z = xs if features is None else features(values, xs)
                acc = []
                for train, test in splits:
                    model = self._fit(make(values), z[train], ys[train])
                    acc.append(float((model.predict(z[test]) == ys[test]).mean()))
                scores.append(float(np.mean(acc)))
                spreads.append(float(np.std(acc, ddof=1) / np.sqrt(len(acc))))
        top = int(np.argmax(scores))
        pick = next(i for i, v in enumerate(scores) if v >= scores[top] - spreads[top])
        self.tuned = {
            **points[pick],
            "cv_folds": folds,
            "cv_accuracy": round(scores[pick], 4),
            "best_cv_accuracy": round(scores[top], 4),
            "grid_points": len(points),
            "search_rows": len(ys),
        }
        if prior and pick == 0 and any(k in auto for k in prior):
            self.tuned["note"] = "nothing beat the class prior by more than the noise of the folds"
        return {**given, **points[pick]}

    def _check_state(self, arrays: dict[str, np.ndarray], *keys: str) -> None:
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise TlzooError(
                f"The saved {self.name} head lacks '{missing[0]}'; the run directory is damaged, retrain with `tl run`."
            )


# --------------------------------------------------------------------------- logistic regression
class LogRegHead(SklearnHead):
    """Multinomial logistic regression on standardised features.

    ``C="auto"`` (the default) picks the inverse regularisation strength by stratified
    3-fold cross-validation on the training features over 10^-3 … 10^1: wide pretrained
    features with a few hundred examples need far stronger regularisation than
    scikit-learn's C = 1 (on MiniLM features of 1,400 snippets: 0.70 at C = 1, 0.78 at
    C = 0.01).  A number fixes C.

    The fitted model is exactly a linear softmax layer (the scaler is folded into the
    weights), so it is saved as one and loads without scikit-learn or pickle.
    """

    name = "logreg"
    C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
    RULES = {
        "C": number("a positive number or 'auto'", lambda v: v > 0, "0.1", words=("auto",)),
        "max_iter": integer(1, "2000"),
        "class_weight": choice("balanced", nullable=True),
    }

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"C": "auto", "max_iter": 2000, "class_weight": None}

    def _choose_C(self, x: np.ndarray, y: np.ndarray) -> float:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        c = self.params["C"]
        if c != "auto":  # checked in __init__: a positive number
            return float(c)
        folds = min(3, int(np.unique(y, return_counts=True)[1].min()) if len(y) else 0)
        if folds < 2:  # too few examples of some class to cross-validate
            self.tuned = {"C": 1.0, "cv_folds": 0, "note": "too few examples per class to cross-validate: defaults"}
            return 1.0
        cv = StratifiedKFold(folds, shuffle=True, random_state=0)
        scores = [
            cross_val_score(
                self._make(
                    LogisticRegression,
                    C=c,
                    max_iter=int(self.params["max_iter"]),
                    class_weight=self.params["class_weight"],
                ),
                x,
                y,
                cv=cv,
                scoring="neg_log_loss",
            ).mean()
            for c in self.C_GRID
        ]
        best = int(np.argmax(scores))
        self.tuned = {"C": self.C_GRID[best], "cv_folds": folds, "cv_log_loss": round(-float(scores[best]), 4)}
        return self.C_GRID[best]

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        self.tuned = {}
        self.scaler = StandardScaler().fit(x)
        xs = self.scaler.transform(x)
        self.chosen_C = self._choose_C(xs, y)
        self.model = self._make(
            LogisticRegression,
            C=self.chosen_C,
            max_iter=int(self.params["max_iter"]),
            class_weight=self.params["class_weight"],
        )
        self._fit(self.model, xs, y)
        self.num_classes = num_classes
        self._linear = self._fold()

    def _fold(self) -> tuple[np.ndarray, np.ndarray]:
        coef, intercept = self.model.coef_, self.model.intercept_
        if coef.shape[0] == 1:  # binary: sklearn keeps one row; softmax needs two
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        full_w = np.zeros((self.num_classes, coef.shape[1]))
        full_b = np.full(self.num_classes, -1e4)  # classes absent from training never win
        full_w[self.model.classes_] = coef
        full_b[self.model.classes_] = intercept
        scale = self.scaler.scale_
        w = full_w / scale
        b = full_b - (full_w * (self.scaler.mean_ / scale)).sum(1)
        return w.astype(np.float32), b.astype(np.float32)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        w, b = self._linear
        return _softmax(x.astype(np.float64) @ w.T.astype(np.float64) + b)

    def to_linear(self) -> tuple[np.ndarray, np.ndarray]:
        return self._linear

    def state(self) -> dict[str, np.ndarray]:
        return {"weight": self._linear[0], "bias": self._linear[1]}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._check_state(arrays, "weight", "bias")
        self._linear = (arrays["weight"], arrays["bias"])
        self.num_classes = len(arrays["bias"])


# --------------------------------------------------------------------------- support vector machine
class SVMHead(SklearnHead):
    """A support vector machine with calibrated probabilities.

    ``kernel=linear`` is scikit-learn's LinearSVC on standardised features;
    ``kernel=rbf`` first maps features through ``n_components`` random Fourier features
    (Rahimi & Recht), whose inner products approximate the RBF kernel, so the fitted
    model stays a set of arrays.  Probabilities: a multinomial logistic calibration
    fitted on ``cv``-fold out-of-fold SVM scores (Platt's idea, for many classes).

    ``C="auto"`` (the default) is chosen by cross-validated accuracy over 10^-3 … 1, and with
    ``kernel=rbf`` so is ``gamma="auto"`` over 0.1, 1 and 10 times 1/d (features have unit
    variance; ``"scale"`` is 1/d).  tlzoo's "auto" means cross-validated, not scikit-learn's
    ``gamma="auto"`` (1/d).  The search scores the uncalibrated SVM (calibration does not
    move the winning class much and would triple the cost).
    """

    name = "svm"
    C_GRID = (0.001, 0.01, 0.1, 1.0)
    GAMMA_SCALES = (0.1, 1.0, 10.0)  # times 1/d: smoother first
    RULES = {
        "C": number("a positive number or 'auto'", lambda v: v > 0, "0.1", words=(AUTO,)),
        "kernel": choice("linear", "rbf"),
        "gamma": number("a positive number, 'scale' or 'auto'", lambda v: v > 0, "0.01", words=("scale", AUTO)),
        "n_components": integer(1, "1024"),
        "max_iter": integer(1, "5000"),
        "class_weight": choice("balanced", nullable=True),
        "cv": integer(1, "3", also=" (folds for calibration; 1 calibrates on the training scores)"),
        "dual": choice("auto", True, False),
        "random_state": SEED,
    }

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            "C": AUTO,
            "kernel": "linear",
            "gamma": AUTO,
            "n_components": 1024,
            "max_iter": 5000,
            "class_weight": None,
            "cv": 3,
            "dual": "auto",
            "random_state": 0,
        }

    def _features(self, x: np.ndarray) -> np.ndarray:
        z = (x.astype(np.float64) - self.mean) / self.scale
        if self.rff_w is not None and self.rff_b is not None:
            z = _rff(z, self.rff_w, self.rff_b)
        return z

    def _rff_arrays(self, d: int, gamma: float) -> tuple[np.ndarray, np.ndarray]:
        """Random Fourier features for the RBF kernel of ``gamma`` (same draw for every gamma)."""
        rng = np.random.default_rng(int(self.params["random_state"]))
        n = int(self.params["n_components"])
        return rng.normal(0.0, np.sqrt(2 * gamma), size=(d, n)), rng.uniform(0, 2 * np.pi, size=n)

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
        from sklearn.svm import LinearSVC

        p = self.params
        kernel = p["kernel"]  # checked in __init__
        self.num_classes = num_classes
        self.mean = x.mean(0).astype(np.float64)
        self.scale = x.std(0).astype(np.float64)
        self.scale[self.scale < 1e-12] = 1.0
        d = x.shape[1]

        def gamma_of(values: dict[str, Any]) -> float:
            g = values.get("gamma", "scale")
            return 1.0 / d if g == "scale" else float(g)  # features have unit variance

        def svc(values: dict[str, Any]) -> Any:
            return self._make(
                LinearSVC,
                C=float(values["C"]),
                max_iter=int(p["max_iter"]),
                dual=p["dual"],
                class_weight=p["class_weight"],
                random_state=int(p["random_state"]),
            )

        grid: dict[str, Sequence[Any]] = {"C": self.C_GRID}
        mapped: dict[float, np.ndarray] = {}

        def search_features(values: dict[str, Any], rows: np.ndarray) -> np.ndarray:
            g = gamma_of(values) if kernel == "rbf" else 0.0
            if g not in mapped:  # one mapping per gamma, shared by every C
                z = (rows.astype(np.float64) - self.mean) / self.scale
                mapped[g] = _rff(z, *self._rff_arrays(d, g)) if kernel == "rbf" else z
            return mapped[g]

        if kernel == "rbf":
            grid["gamma"] = tuple(m / d for m in self.GAMMA_SCALES)
        chosen = self._tune(x, y, grid, svc, {"C": 0.1, "gamma": "scale"}, features=search_features)
        mapped.clear()
        self.rff_w = self.rff_b = None
        if kernel == "rbf":
            self.rff_w, self.rff_b = self._rff_arrays(d, gamma_of(chosen))
        z = self._features(x)

        def final() -> Any:
            return svc(chosen)

        model = self._fit(final(), z, y)
        self.seen = model.classes_.astype(np.int64)
        self.coef, self.intercept = model.coef_, model.intercept_
        counts = np.bincount(y)
        counts = counts[counts > 0]
        folds = min(int(p["cv"]), int(counts.min()))
        if folds >= 2 and len(self.seen) > 1:
            cv = StratifiedKFold(folds, shuffle=True, random_state=int(p["random_state"]))
            scores = cross_val_predict(final(), z, y, cv=cv, method="decision_function")
        else:  # too few examples per class to hold any out: calibrate on the training scores
            scores = model.decision_function(z)
        calibrator = LogisticRegression(max_iter=1000).fit(scores.reshape(len(z), -1), y)
        self.cal_w, self.cal_b = _binary_rows(calibrator.coef_, calibrator.intercept_)

    def _scores(self, x: np.ndarray) -> np.ndarray:
        return self._features(x) @ self.coef.T + self.intercept

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        s = self._scores(x)  # binary: one score column, calibrated into two classes
        return _widen(_softmax(s @ self.cal_w.T + self.cal_b), self.seen, self.num_classes)

    def state(self) -> dict[str, np.ndarray]:
        out = {
            "mean": self.mean,
            "scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
            "cal_w": self.cal_w,
            "cal_b": self.cal_b,
            "seen": self.seen,
            "num_classes": np.array([self.num_classes]),
        }
        if self.rff_w is not None:
            out.update(rff_w=self.rff_w, rff_b=self.rff_b)
        return out

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._check_state(arrays, "mean", "scale", "coef", "intercept", "cal_w", "cal_b", "seen", "num_classes")
        for k in ("mean", "scale", "coef", "intercept", "cal_w", "cal_b", "seen"):
            setattr(self, k, arrays[k])
        self.rff_w, self.rff_b = arrays.get("rff_w"), arrays.get("rff_b")
        self.num_classes = int(arrays["num_classes"][0])


def _rff(z: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Random Fourier features (Rahimi & Recht): inner products approximate the RBF kernel."""
    return np.sqrt(2.0 / w.shape[1]) * np.cos(z @ w + b)


def _binary_rows(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's binary LogisticRegression keeps one row; give softmax two."""
    if coef.shape[0] == 1:
        return np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef, intercept


# --------------------------------------------------------------------------- k nearest neighbours
class KNNHead(SklearnHead):
    """k nearest neighbours; the state is the training features and labels themselves.

    ``n_neighbors="auto"`` and ``weights="auto"`` (the defaults) are chosen by cross-validated
    accuracy: k from 45 down to 1 (k above half the training rows is skipped), uniform or
    distance weights.  Weak features need a large k; clean clusters a small one."""

    name = "knn"
    K_GRID = (45, 25, 15, 9, 5, 3, 1)  # smoothest first
    RULES = {
        "n_neighbors": _auto(integer(1, "5")),
        "weights": choice("uniform", "distance", AUTO),
        "metric": choice(*KNN_METRICS),
    }

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"n_neighbors": AUTO, "weights": AUTO, "metric": "cosine"}

    def _estimator(self, k: int, weights: str) -> Any:
        from sklearn.neighbors import KNeighborsClassifier

        return self._make(
            KNeighborsClassifier, n_neighbors=k, weights=weights, metric=self.params["metric"], algorithm="brute"
        )

    def _build(self) -> None:
        self.model = self._estimator(min(self.k, len(self.x)), self.weights)
        self._fit(self.model, self.x, self.y)

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        self.x, self.y, self.num_classes = np.ascontiguousarray(x, np.float32), y.astype(np.int64), num_classes
        half = max(1, len(y) // 2)  # a training fold holds at least half the rows
        ks = [k for k in self.K_GRID if k <= half]
        chosen = self._tune(
            self.x,
            self.y,
            {"n_neighbors": ks, "weights": ("uniform", "distance")},
            lambda v: self._estimator(int(v["n_neighbors"]), v["weights"]),
            {"n_neighbors": 5, "weights": "distance"},
            prior={"n_neighbors": half, "weights": "uniform"},  # a vote of half the rows: ~ the majority
        )
        self.k, self.weights = int(chosen["n_neighbors"]), str(chosen["weights"])
        self._build()

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        return _widen(self.model.predict_proba(x), self.model.classes_, self.num_classes)

    def state(self) -> dict[str, np.ndarray]:
        return {
            "x": self.x,
            "y": self.y,
            "num_classes": np.array([self.num_classes]),
            "n_neighbors": np.array([self.k]),  # the k and weighting used, chosen or given
            "distance_weights": np.array([int(self.weights == "distance")]),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._check_state(arrays, "x", "y", "num_classes")
        self.x, self.y, self.num_classes = arrays["x"], arrays["y"], int(arrays["num_classes"][0])
        if "n_neighbors" in arrays:
            self.k = int(arrays["n_neighbors"][0])
            self.weights = "distance" if int(arrays["distance_weights"][0]) else "uniform"
        else:  # saved before tlzoo tuned k: its params hold the values used
            self.k, self.weights = int(self.params["n_neighbors"]), str(self.params["weights"])
        self._build()  # "fitting" k-NN only stores the arrays: exact, and cheap


# --------------------------------------------------------------------------- Gaussian naive Bayes
class GaussianNBHead(SklearnHead):
    """Gaussian naive Bayes: per-class means, variances and priors.

    ``var_smoothing="auto"`` (the default) is chosen by cross-validated accuracy over
    1 … 10^-9 (a share of the largest feature variance added to every variance)."""

    name = "nb"
    SMOOTHING_GRID = (1.0, 0.1, 1e-2, 1e-3, 1e-5, 1e-7, 1e-9)  # smoothest first
    RULES = {"var_smoothing": number("a number >= 0 or 'auto'", lambda v: v >= 0, "1e-9", words=(AUTO,))}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"var_smoothing": AUTO}

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.naive_bayes import GaussianNB

        def nb(values: dict[str, Any]) -> Any:
            return self._make(GaussianNB, var_smoothing=float(values["var_smoothing"]))

        chosen = self._tune(
            x, y, {"var_smoothing": self.SMOOTHING_GRID}, nb, {"var_smoothing": 1e-9}, prior={"var_smoothing": 1e6}
        )  # variances a million times the largest: the likelihoods barely differ, the prior decides
        m = self._fit(nb(chosen), x, y)
        self.theta, self.var, self.prior = m.theta_, m.var_, m.class_prior_
        self.seen, self.num_classes = m.classes_.astype(np.int64), num_classes

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        # log N(x | theta, var) summed over features, per class (chunk-free: [n, classes])
        ll = (
            -0.5
            * (
                np.log(2 * np.pi * self.var).sum(1)[None, :]
                + ((x[:, None, :] - self.theta[None]) ** 2 / self.var[None]).sum(2)
            )
            if len(x) * self.theta.size < 5e7
            else self._ll_loop(x)
        )
        return _widen(_softmax(ll + np.log(self.prior)[None, :]), self.seen, self.num_classes)

    def _ll_loop(self, x: np.ndarray) -> np.ndarray:  # bounded memory for large inputs
        return np.stack(
            [-0.5 * (np.log(2 * np.pi * v).sum() + ((x - t) ** 2 / v).sum(1)) for t, v in zip(self.theta, self.var)], 1
        )

    def state(self) -> dict[str, np.ndarray]:
        return {
            "theta": self.theta,
            "var": self.var,
            "prior": self.prior,
            "seen": self.seen,
            "num_classes": np.array([self.num_classes]),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._check_state(arrays, "theta", "var", "prior", "seen", "num_classes")
        self.theta, self.var, self.prior, self.seen = arrays["theta"], arrays["var"], arrays["prior"], arrays["seen"]
        self.num_classes = int(arrays["num_classes"][0])


# --------------------------------------------------------------------------- trees
class _Forest:
    """One or more fitted decision trees as flat arrays, evaluated in numpy."""

    KEYS = ("left", "right", "feature", "threshold", "value", "roots")

    def __init__(
        self,
        left: np.ndarray,
        right: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        value: np.ndarray,
        roots: np.ndarray,
    ) -> None:
        self.left, self.right, self.feature, self.threshold = left, right, feature, threshold
        self.value, self.roots = value, roots

    @classmethod
    def from_sklearn(cls, trees: list[Any], seen_in_tree: list[np.ndarray], n_seen: int) -> _Forest:
        """Concatenate trees; node ids are offset so children point inside the big arrays."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in cls.KEYS[:-1]}
        roots, offset = [], 0
        for tree, cols in zip(trees, seen_in_tree):
            t = tree.tree_
            leaf = t.children_left < 0
            parts["left"].append(np.where(leaf, -1, t.children_left + offset))
            parts["right"].append(np.where(leaf, -1, t.children_right + offset))
            parts["feature"].append(np.where(leaf, 0, t.feature))
            parts["threshold"].append(t.threshold)
            v = t.value[:, 0, :].astype(np.float64)
            v = v / np.maximum(v.sum(1, keepdims=True), 1e-12)  # counts or fractions -> fractions
            full = np.zeros((len(v), n_seen))
            full[:, cols] = v  # a bootstrap sample may miss a class
            parts["value"].append(full)
            roots.append(offset)
            offset += t.node_count
        return cls(**{k: np.concatenate(parts[k]) for k in cls.KEYS[:-1]}, roots=np.array(roots, np.int64))

    def proba(self, x: np.ndarray) -> np.ndarray:
        total = np.zeros((len(x), self.value.shape[1]))
        rows = np.arange(len(x))
        for root in self.roots:
            node = np.full(len(x), root, np.int64)
            live = self.left[node] >= 0
            while live.any():  # one level of all samples at a time
                n = node[live]
                go_left = x[rows[live], self.feature[n]] <= self.threshold[n]
                node[live] = np.where(go_left, self.left[n], self.right[n])
                live = self.left[node] >= 0
            total += self.value[node]
        return total / len(self.roots)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.KEYS}


class _TreeHeadBase(SklearnHead):
    def _store(self, trees: list[Any], seen_in_tree: list[np.ndarray], seen: np.ndarray, num_classes: int) -> None:
        self.seen, self.num_classes = seen.astype(np.int64), num_classes
        self.forest = _Forest.from_sklearn(trees, seen_in_tree, len(seen))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _widen(self.forest.proba(np.asarray(x, np.float32)).astype(np.float32), self.seen, self.num_classes)

    def state(self) -> dict[str, np.ndarray]:
        return {**self.forest.arrays(), "seen": self.seen, "num_classes": np.array([self.num_classes])}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._check_state(arrays, *_Forest.KEYS, "seen", "num_classes")
        self.forest = _Forest(*(arrays[k] for k in _Forest.KEYS))
        self.seen, self.num_classes = arrays["seen"], int(arrays["num_classes"][0])


class TreeHead(_TreeHeadBase):
    """One decision tree (CART); ``max_depth`` keeps it readable and regularised.

    ``max_depth="auto"`` and ``min_samples_leaf="auto"`` (the defaults) are chosen by
    cross-validated accuracy over depths 1, 2, 4, 8, 16 and leaves of 20 or 5 examples:
    a depth-12 tree on weak features scored below the majority class."""

    name = "tree"
    DEPTH_GRID = (1, 2, 4, 8, 16)
    LEAF_GRID = (20, 5)  # leaves of 1-2 examples fit noise, and deep trees of them cost most of a search
    RULES = {
        "max_depth": _auto(integer(1, "12", nullable=True)),
        "min_samples_leaf": _auto(Rule("an integer >= 1 or a fraction in (0, 1)", _leaf, "2")),
        "criterion": choice("gini", "entropy", "log_loss"),
        "random_state": integer(0, "0", hi=2**32 - 1, nullable=True),
    }

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"max_depth": AUTO, "min_samples_leaf": AUTO, "criterion": "gini", "random_state": 0}

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.tree import DecisionTreeClassifier

        p = self.params

        def tree(values: dict[str, Any]) -> Any:
            return self._make(
                DecisionTreeClassifier,
                max_depth=values["max_depth"],
                criterion=p["criterion"],
                min_samples_leaf=values["min_samples_leaf"],
                random_state=p["random_state"],
            )

        x = x.astype(np.float32)
        grid = {"max_depth": self.DEPTH_GRID, "min_samples_leaf": self.LEAF_GRID}
        single_leaf = {"max_depth": 1, "min_samples_leaf": max(1, len(y))}  # no split: the class prior
        chosen = self._tune(x, y, grid, tree, {"max_depth": 12, "min_samples_leaf": 2}, prior=single_leaf)
        m = self._fit(tree(chosen), x, y)
        self._store([m], [np.arange(len(m.classes_))], m.classes_, num_classes)


class RandomForestHead(_TreeHeadBase):
    """A random forest; its trees are saved as arrays and averaged in numpy.

    ``max_depth="auto"`` and ``max_features="auto"`` (the defaults) are chosen by 3-fold
    cross-validated accuracy over depths 4, 8 and unlimited and ``log2`` / ``sqrt`` features
    per split, with forests of at most 50 trees during the search (the final forest has
    ``n_estimators``)."""

    name = "rf"
    DEPTH_GRID = (4, 8, None)
    MAX_FEATURES_GRID = ("log2", "sqrt")
    SEARCH_TREES = 50
    RULES = {
        "n_estimators": integer(1, "200"),
        "max_depth": _auto(integer(1, "12", nullable=True)),
        "min_samples_leaf": Rule("an integer >= 1 or a fraction in (0, 1)", _leaf, "1"),
        "max_features": _auto(
            Rule("'sqrt', 'log2', null, an integer >= 1 or a fraction in (0, 1]", _max_features, "sqrt", nullable=True)
        ),
        "class_weight": choice("balanced", "balanced_subsample", nullable=True),
        "random_state": integer(0, "0", hi=2**32 - 1, nullable=True),
        "n_jobs": Rule(
            "a number of processes (-1 = every core) or null", lambda v: is_int(v) and v != 0, "1", nullable=True
        ),
    }

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            "n_estimators": 200,
            "max_depth": AUTO,
            "min_samples_leaf": 1,
            "max_features": AUTO,
            "class_weight": None,
            "random_state": 0,
            "n_jobs": 1,
        }

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.ensemble import RandomForestClassifier

        p = self.params

        def forest(values: dict[str, Any], trees: int) -> Any:
            return self._make(
                RandomForestClassifier,
                n_estimators=trees,
                max_depth=values["max_depth"],
                min_samples_leaf=p["min_samples_leaf"],
                max_features=values["max_features"],
                class_weight=p["class_weight"],
                random_state=p["random_state"],
                n_jobs=p["n_jobs"],
            )

        x = x.astype(np.float32)
        search = min(int(p["n_estimators"]), self.SEARCH_TREES)
        chosen = self._tune(
            x,
            y,
            {"max_depth": self.DEPTH_GRID, "max_features": self.MAX_FEATURES_GRID},
            lambda v: forest(v, search),
            {"max_depth": None, "max_features": "sqrt"},
            most_folds=3,
        )
        m = self._fit(forest(chosen, int(p["n_estimators"])), x, y)
        # every tree of a forest reports probabilities over the forest's classes_
        self._store(list(m.estimators_), [np.arange(len(m.classes_))] * len(m.estimators_), m.classes_, num_classes)


HEADS: tuple[type[FittedHead], ...] = (LogRegHead, SVMHead, RandomForestHead, KNNHead, TreeHead, GaussianNBHead)


@hookimpl
def tlzoo_register_heads(register: Any) -> None:
    for cls in HEADS:
        register(cls)
