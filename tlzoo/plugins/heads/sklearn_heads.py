"""Classic heads fitted on extracted features with scikit-learn.

``logreg``, ``svm``, ``rf``, ``knn``, ``tree`` and ``nb`` (Gaussian naive Bayes).  Each is
fitted with scikit-learn, then exported as plain numpy arrays (``state()``) that the
runner saves in ``model.safetensors``: no pickle, so a trained model loads with any
scikit-learn version.  Prediction from those arrays is done here in numpy, so
``tl predict`` does not even need scikit-learn for most heads.  Every hyper-parameter is
reachable as ``--set head.<param>=...``.  Third-party heads register through the same
``tlzoo_register_heads`` hook.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tlzoo.core.errors import TlzooError
from tlzoo.core.hookspecs import hookimpl
from tlzoo.core.interfaces import FittedHead

from .fc import Rule, check_params, choice, integer, is_int, number


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
        return self.C_GRID[int(np.argmax(scores))]

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

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
    """

    name = "svm"
    RULES = {
        "C": number("a positive number", lambda v: v > 0, "0.1"),
        "kernel": choice("linear", "rbf"),
        "gamma": number("a positive number or 'scale'", lambda v: v > 0, "0.01", words=("scale",)),
        "n_components": integer(1, "1024"),
        "max_iter": integer(1, "5000"),
        "class_weight": choice("balanced", nullable=True),
        "cv": integer(1, "3", also=" (folds for calibration; 1 calibrates on the training scores)"),
        "dual": choice("auto", True, False),
        "random_state": SEED,
    }

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        # C=0.1: deep features are wide; stronger regularisation generalises and converges fast
        return {
            "C": 0.1,
            "kernel": "linear",
            "gamma": "scale",
            "n_components": 1024,
            "max_iter": 5000,
            "class_weight": None,
            "cv": 3,
            "dual": "auto",
            "random_state": 0,
        }

    def _features(self, x: np.ndarray) -> np.ndarray:
        z = (x.astype(np.float64) - self.mean) / self.scale
        if self.rff_w is not None:
            z = np.sqrt(2.0 / self.rff_w.shape[1]) * np.cos(z @ self.rff_w + self.rff_b)
        return z

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
        self.rff_w = self.rff_b = None
        if kernel == "rbf":
            d = x.shape[1]
            gamma = 1.0 / d if p["gamma"] == "scale" else float(p["gamma"])  # features have unit variance
            rng = np.random.default_rng(int(p["random_state"]))
            n = int(p["n_components"])
            self.rff_w = rng.normal(0.0, np.sqrt(2 * gamma), size=(d, n))
            self.rff_b = rng.uniform(0, 2 * np.pi, size=n)
        z = self._features(x)

        def svc() -> Any:
            return self._make(
                LinearSVC,
                C=float(p["C"]),
                max_iter=int(p["max_iter"]),
                dual=p["dual"],
                class_weight=p["class_weight"],
                random_state=int(p["random_state"]),
            )

        model = self._fit(svc(), z, y)
        self.seen = model.classes_.astype(np.int64)
        self.coef, self.intercept = model.coef_, model.intercept_
        counts = np.bincount(y)
        counts = counts[counts > 0]
        folds = min(int(p["cv"]), int(counts.min()))
        if folds >= 2 and len(self.seen) > 1:
            cv = StratifiedKFold(folds, shuffle=True, random_state=int(p["random_state"]))
            scores = cross_val_predict(svc(), z, y, cv=cv, method="decision_function")
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


def _binary_rows(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's binary LogisticRegression keeps one row; give softmax two."""
    if coef.shape[0] == 1:
        return np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef, intercept


# --------------------------------------------------------------------------- k nearest neighbours
class KNNHead(SklearnHead):
    """k nearest neighbours; the state is the training features and labels themselves."""

    name = "knn"
    RULES = {
        "n_neighbors": integer(1, "5"),
        "weights": choice("distance", "uniform"),
        "metric": choice(*KNN_METRICS),
    }

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"n_neighbors": 5, "weights": "distance", "metric": "cosine"}

    def _build(self) -> None:
        from sklearn.neighbors import KNeighborsClassifier

        k = min(int(self.params["n_neighbors"]), len(self.x))
        self.model = self._make(
            KNeighborsClassifier,
            n_neighbors=k,
            weights=self.params["weights"],
            metric=self.params["metric"],
            algorithm="brute",
        )
        self._fit(self.model, self.x, self.y)

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        self.x, self.y, self.num_classes = np.ascontiguousarray(x, np.float32), y.astype(np.int64), num_classes
        self._build()

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        return _widen(self.model.predict_proba(x), self.model.classes_, self.num_classes)

    def state(self) -> dict[str, np.ndarray]:
        return {"x": self.x, "y": self.y, "num_classes": np.array([self.num_classes])}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._check_state(arrays, "x", "y", "num_classes")
        self.x, self.y, self.num_classes = arrays["x"], arrays["y"], int(arrays["num_classes"][0])
        self._build()  # "fitting" k-NN only stores the arrays: exact, and cheap


# --------------------------------------------------------------------------- Gaussian naive Bayes
class GaussianNBHead(SklearnHead):
    """Gaussian naive Bayes: per-class means, variances and priors."""

    name = "nb"
    RULES = {"var_smoothing": number("a number >= 0", lambda v: v >= 0, "1e-9")}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"var_smoothing": 1e-9}

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.naive_bayes import GaussianNB

        m = self._fit(self._make(GaussianNB, var_smoothing=float(self.params["var_smoothing"])), x, y)
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
    """One decision tree (CART); ``max_depth`` keeps it readable and regularised."""

    name = "tree"
    RULES = {
        "max_depth": integer(1, "12", nullable=True),
        "min_samples_leaf": Rule("an integer >= 1 or a fraction in (0, 1)", _leaf, "2"),
        "criterion": choice("gini", "entropy", "log_loss"),
        "random_state": integer(0, "0", hi=2**32 - 1, nullable=True),
    }

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"max_depth": 12, "min_samples_leaf": 2, "criterion": "gini", "random_state": 0}

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.tree import DecisionTreeClassifier

        p = self.params
        m = self._fit(
            self._make(
                DecisionTreeClassifier,
                max_depth=p["max_depth"],
                criterion=p["criterion"],
                min_samples_leaf=p["min_samples_leaf"],
                random_state=p["random_state"],
            ),
            x.astype(np.float32),
            y,
        )
        self._store([m], [np.arange(len(m.classes_))], m.classes_, num_classes)


class RandomForestHead(_TreeHeadBase):
    """A random forest; its trees are saved as arrays and averaged in numpy."""

    name = "rf"
    RULES = {
        "n_estimators": integer(1, "200"),
        "max_depth": integer(1, "12", nullable=True),
        "min_samples_leaf": Rule("an integer >= 1 or a fraction in (0, 1)", _leaf, "1"),
        "max_features": Rule(
            "'sqrt', 'log2', null, an integer >= 1 or a fraction in (0, 1]", _max_features, "sqrt", nullable=True
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
            "max_depth": None,
            "min_samples_leaf": 1,
            "max_features": "sqrt",
            "class_weight": None,
            "random_state": 0,
            "n_jobs": 1,
        }

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.ensemble import RandomForestClassifier

        p = self.params
        m = self._fit(
            self._make(
                RandomForestClassifier,
                n_estimators=p["n_estimators"],
                max_depth=p["max_depth"],
                min_samples_leaf=p["min_samples_leaf"],
                max_features=p["max_features"],
                class_weight=p["class_weight"],
                random_state=p["random_state"],
                n_jobs=p["n_jobs"],
            ),
            x.astype(np.float32),
            y,
        )
        # every tree of a forest reports probabilities over the forest's classes_
        self._store(list(m.estimators_), [np.arange(len(m.classes_))] * len(m.estimators_), m.classes_, num_classes)


HEADS: tuple[type[FittedHead], ...] = (LogRegHead, SVMHead, RandomForestHead, KNNHead, TreeHead, GaussianNBHead)


@hookimpl
def tlzoo_register_heads(register: Any) -> None:
    for cls in HEADS:
        register(cls)
