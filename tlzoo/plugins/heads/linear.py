"""The linear fitted heads: ``logreg`` (multinomial logistic regression) and ``svm`` (a linear
SVM, or one on random Fourier features for ``kernel=rbf``), both saved as plain arrays."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from tlzoo.lib.lazy import lazy_module

from .fc import choice, integer, number
from .fitted import AUTO, SEED, SklearnHead, softmax, widen

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")


class LogRegHead(SklearnHead):
    """Multinomial logistic regression on standardised features.

    ``C="auto"`` (the default) picks the inverse regularisation strength by stratified
    3-fold cross-validation on the training features over 10^-3 … 10^1, by log loss, among
    the settings whose predictions do not collapse (:mod:`.tuning`): wide pretrained
    features with a few hundred examples need far stronger regularisation than
    scikit-learn's C = 1 (on MiniLM features of 1,400 snippets: 0.70 at C = 1, 0.78 at
    C = 0.01).  A number fixes C.

    The fitted model is exactly a linear softmax layer (the scaler is folded into the
    weights), so it is saved as one and loads without scikit-learn or pickle.
    """

    name = "logreg"
    C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
    CV_SPLITS = 1  # one shuffle of 3 folds, on every row: the choices of tlzoo 0.2 stand
    option_help = {
        "C": "inverse regularisation strength of the logistic regression (smaller = simpler); 'auto' tunes it",
        "max_iter": "iterations of the solver before it stops",
        "class_weight": "'balanced' weighs classes inversely to their frequency; null: every example counts once",
    }
    RULES = {
        "C": number("a positive number or 'auto'", lambda v: v > 0, "0.1", words=(AUTO,)),
        "max_iter": integer(1, "2000"),
        "class_weight": choice("balanced", nullable=True),
    }

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"C": AUTO, "max_iter": 2000, "class_weight": None}

    def _estimator(self, values: dict[str, Any]) -> Any:
        from sklearn.linear_model import LogisticRegression

        return self._make(
            LogisticRegression,
            C=float(values["C"]),
            max_iter=int(self.params["max_iter"]),
            class_weight=self.params["class_weight"],
        )

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler().fit(x)
        if self.blocks:
            self.scaler.scale_ = self.block_scale(self.scaler.var_)
        xs = self.scaler.transform(x)
        chosen = self._tune(
            xs, y, {"C": self.C_GRID}, self._estimator, {"C": 1.0}, most_folds=3, by="neg_log_loss", sample=False
        )
        self.chosen_C = float(chosen["C"])
        self.model = self.searched if self.searched is not None else self._fit(self._estimator(chosen), xs, y)
        self.num_classes = num_classes
        self._linear = self._fold()

    def _fold(self) -> tuple[np.ndarray, np.ndarray]:
        coef, intercept = binary_rows(self.model.coef_, self.model.intercept_)
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
        return softmax(x.astype(np.float64) @ w.T.astype(np.float64) + b)

    def to_linear(self) -> tuple[np.ndarray, np.ndarray]:
        return self._linear

    def state(self) -> dict[str, np.ndarray]:
        return {"weight": self._linear[0], "bias": self._linear[1]}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._check_state(arrays, "weight", "bias")
        self._linear = (arrays["weight"], arrays["bias"])
        self.num_classes = len(arrays["bias"])


def rff_arrays(d: int, gamma: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random Fourier features for the RBF kernel of ``gamma`` (the same draw for every gamma)."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, np.sqrt(2 * gamma), size=(d, n)), rng.uniform(0, 2 * np.pi, size=n)


def rff(z: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Random Fourier features (Rahimi & Recht): inner products approximate the RBF kernel."""
    return np.sqrt(2.0 / w.shape[1]) * np.cos(z @ w + b)


@functools.cache
def _rff_transformer() -> type:
    """A scikit-learn transformer for :func:`rff`, so a search pipeline tunes gamma (built on first use)."""
    from sklearn.base import BaseEstimator, TransformerMixin

    class RandomFourierFeatures(TransformerMixin, BaseEstimator):
        def __init__(self, gamma: float = 1.0, n_components: int = 1024, random_state: int = 0) -> None:
            self.gamma, self.n_components, self.random_state = gamma, n_components, random_state

        def fit(self, x: np.ndarray, y: Any = None) -> Any:
            self.w_, self.b_ = rff_arrays(x.shape[1], self.gamma, self.n_components, self.random_state)
            return self

        def transform(self, x: np.ndarray) -> np.ndarray:
            return rff(x, self.w_, self.b_)

    return RandomFourierFeatures


def binary_rows(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's binary linear models keep one row; give softmax two."""
    if coef.shape[0] == 1:
        return np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef, intercept


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
    CV_SPLITS = 6  # a weakly regularised LinearSVC converges slowly: 3 folds, twice
    option_help = {
        "C": "inverse regularisation strength of the SVM (smaller = wider margin); 'auto' tunes it",
        "kernel": "linear, or rbf (approximated with random Fourier features)",
        "gamma": "rbf kernel width; 'scale' uses 1 / (features x variance), 'auto' tunes it",
        "n_components": "random Fourier features of the rbf approximation",
        "max_iter": "iterations of the solver before it stops",
        "class_weight": "'balanced' weighs classes inversely to their frequency; null: every example counts once",
        "cv": "folds that calibrate the SVM's scores into probabilities",
        "dual": "solve the dual problem (true), the primal (false), or let scikit-learn choose (auto)",
        "random_state": "seed of the random features and the calibration folds (tl run --seeds sets it)",
    }
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
            z = rff(z, self.rff_w, self.rff_b)
        return z

    def _gamma(self, values: dict[str, Any], d: int) -> float:
        g = values.get("gamma", "scale")
        return 1.0 / d if g == "scale" else float(g)  # features have unit variance

    def _svc(self, values: dict[str, Any]) -> Any:
        from sklearn.svm import LinearSVC

        p = self.params
        return self._make(
            LinearSVC,
            C=float(values["C"]),
            max_iter=int(p["max_iter"]),
            dual=p["dual"],
            class_weight=p["class_weight"],
            random_state=int(p["random_state"]),
        )

    def _search_model(self, values: dict[str, Any], d: int) -> Any:
        """What the search fits on standardised features: the SVM, behind the feature map for rbf."""
        from sklearn.pipeline import Pipeline

        if self.params["kernel"] != "rbf":
            return self._svc(values)
        p = self.params
        mapping = _rff_transformer()(self._gamma(values, d), int(p["n_components"]), int(p["random_state"]))
        return Pipeline([("rff", mapping), ("svm", self._svc(values))])

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        self.num_classes = num_classes
        self.mean = x.mean(0).astype(np.float64)
        self.scale = self.block_scale(x.var(0)) if self.blocks else x.std(0).astype(np.float64)
        self.scale[self.scale < 1e-12] = 1.0
        d = x.shape[1]
        rbf = self.params["kernel"] == "rbf"  # checked in __init__
        grid: dict[str, tuple[Any, ...]] = {"C": self.C_GRID}
        if rbf:
            grid["gamma"] = tuple(m / d for m in self.GAMMA_SCALES)
        self.rff_w = self.rff_b = None
        chosen = self._tune(
            (x.astype(np.float64) - self.mean) / self.scale,
            y,
            grid,
            lambda v: self._search_model(v, d),
            {"C": 0.1, "gamma": "scale"},
            paths={"C": "svm__C", "gamma": "rff__gamma"} if rbf else None,
        )
        if rbf:
            n, seed = int(self.params["n_components"]), int(self.params["random_state"])
            self.rff_w, self.rff_b = rff_arrays(d, self._gamma(chosen, d), n, seed)
        self._calibrate(self._features(x), y, chosen)

    def _calibrate(self, z: np.ndarray, y: np.ndarray, chosen: dict[str, Any]) -> None:
        """The SVM on every training row, and its calibration on out-of-fold scores."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        model = self._fit(self._svc(chosen), z, y)
        self.seen = model.classes_.astype(np.int64)
        self.coef, self.intercept = model.coef_, model.intercept_
        counts = np.bincount(y)
        folds = min(int(self.params["cv"]), int(counts[counts > 0].min()))
        if folds >= 2 and len(self.seen) > 1:
            cv = StratifiedKFold(folds, shuffle=True, random_state=int(self.params["random_state"]))
            scores = cross_val_predict(self._svc(chosen), z, y, cv=cv, method="decision_function")
        else:  # too few examples per class to hold any out: calibrate on the training scores
            scores = model.decision_function(z)
        calibrator = LogisticRegression(max_iter=1000).fit(scores.reshape(len(z), -1), y)
        self.cal_w, self.cal_b = binary_rows(calibrator.coef_, calibrator.intercept_)

    def _scores(self, x: np.ndarray) -> np.ndarray:
        return self._features(x) @ self.coef.T + self.intercept

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        s = self._scores(x)  # binary: one score column, calibrated into two classes
        return widen(softmax(s @ self.cal_w.T + self.cal_b), self.seen, self.num_classes)

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
