"""The ``knn`` head (k nearest neighbours, saved as its training features and labels) and the
``nb`` head (Gaussian naive Bayes, saved as per-class means, variances and priors)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tlzoo.lib.lazy import lazy_module

from .fc import choice, integer, number
from .fitted import AUTO, SklearnHead, auto, softmax, widen
from .tuning import search_rows

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

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


class KNNHead(SklearnHead):
    """k nearest neighbours; the state is the training features and labels themselves.

    ``n_neighbors="auto"`` and ``weights="auto"`` (the defaults) are chosen by cross-validated
    accuracy: k from 45 down to 1 (k above half the searched rows is skipped), uniform or
    distance weights.  Weak features need a large k; clean clusters a small one."""

    name = "knn"
    K_GRID = (45, 25, 15, 9, 5, 3, 1)  # smoothest first
    option_help = {
        "n_neighbors": "how many nearest training examples vote; 'auto' tunes it",
        "weights": "uniform votes, or votes weighted by closeness (distance); 'auto' tunes it",
        "metric": "how closeness is measured between feature vectors",
    }
    RULES = {
        "n_neighbors": auto(integer(1, "5")),
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
        half = max(1, len(search_rows(self.y)) // 2)  # a training fold holds at least half the searched rows
        ks = [k for k in self.K_GRID if k <= half]
        chosen = self._tune(
            self.x,
            self.y,
            {"n_neighbors": ks, "weights": ("uniform", "distance")},
            lambda v: self._estimator(int(v["n_neighbors"]), v["weights"]),
            {"n_neighbors": 5, "weights": "distance"},
            prior={"n_neighbors": half, "weights": "uniform"},  # a vote of half the rows: ~ the majority
            fold_predict=self._fold_predict,
        )
        self.k, self.weights = int(chosen["n_neighbors"]), str(chosen["weights"])
        self._build()

    def _fold_predict(
        self, points: Sequence[Mapping[str, Any]], x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray
    ) -> list[np.ndarray]:
        """One fold's predictions for every searched (k, weights), from one neighbour query.

        What ``KNeighborsClassifier(k, weights).predict`` gives for each setting, computed once
        per fold instead of once per setting and fold: the ``max k`` nearest neighbours (with
        their distances) come from scikit-learn, and each k votes with the nearest k of them,
        uniformly (ties to the lowest class, as scikit-learn) or by ``weighted_mode`` over the
        inverse distances (an exact match counts alone, as in scikit-learn).  Only neighbours at
        exactly the same distance across the k-th place could be ordered differently."""
        from sklearn.utils.extmath import weighted_mode

        points = [{**self.params, **p} for p in points]  # an option given by the user is not searched
        classes, encoded = np.unique(y_train, return_inverse=True)
        most = max(int(p["n_neighbors"]) for p in points)
        est = self._fit(self._estimator(most, "uniform"), x_train, y_train)
        dist, ind = est.kneighbors(x_test, n_neighbors=most)
        votes = encoded[ind]  # [test rows, most]: the neighbours' classes, nearest first
        n, c = len(x_test), len(classes)
        offsets = np.arange(n)[:, None] * c
        out = []
        for p in points:
            k = int(p["n_neighbors"])
            if p["weights"] == "uniform":
                mode = np.bincount((votes[:, :k] + offsets).ravel(), minlength=n * c).reshape(n, c).argmax(1)
            else:
                with np.errstate(divide="ignore"):
                    w = 1.0 / dist[:, :k]
                exact = np.isinf(w)
                w[exact.any(1)] = exact[exact.any(1)]
                mode = weighted_mode(votes[:, :k], w, axis=1)[0].ravel().astype(np.intp)
            out.append(classes[mode])
        return out

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        return widen(self.model.predict_proba(x), self.model.classes_, self.num_classes)

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


class GaussianNBHead(SklearnHead):
    """Gaussian naive Bayes: per-class means, variances and priors.

    ``var_smoothing="auto"`` (the default) is chosen by cross-validated accuracy over
    1 … 10^-9 (a share of the largest feature variance added to every variance)."""

    name = "nb"
    SMOOTHING_GRID = (1.0, 0.1, 1e-2, 1e-3, 1e-5, 1e-7, 1e-9)  # smoothest first
    option_help = {
        "var_smoothing": "share of the largest feature variance added to every variance (Gaussian naive Bayes); "
        "'auto' tunes it",
    }
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
        m = self.searched if self.searched is not None else self._fit(nb(chosen), x, y)
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
        return widen(softmax(ll + np.log(self.prior)[None, :]), self.seen, self.num_classes)

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
