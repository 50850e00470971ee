"""Classic heads fitted on extracted features with scikit-learn."""
from __future__ import annotations

from typing import Any

import numpy as np

from tlzoo.core.errors import TlzooError
from tlzoo.core.hookspecs import hookimpl
from tlzoo.core.interfaces import Head


class LogRegHead(Head):
    """Multinomial logistic regression on standardised features.

    The fitted model is exactly a linear softmax layer (the scaler is folded into the
    weights), so it is saved as one and loads without scikit-learn or pickle.
    """

    name = "logreg"
    trainable = False

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"C": 1.0, "max_iter": 2000, "class_weight": None}

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        try:
            self.scaler = StandardScaler().fit(x)
            self.model = LogisticRegression(C=float(self.params["C"]), max_iter=int(self.params["max_iter"]),
                                            class_weight=self.params["class_weight"])
        except (TypeError, ValueError) as exc:
            raise TlzooError(f"Bad logreg option: {exc}; check --set head.* values.") from None
        self.model.fit(self.scaler.transform(x), y)
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
        logits = x.astype(np.float64) @ w.T.astype(np.float64) + b
        logits -= logits.max(1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    def to_linear(self) -> tuple[np.ndarray, np.ndarray]:
        return self._linear


@hookimpl
def tlzoo_register_heads(register: Any) -> None:
    register(LogRegHead)
