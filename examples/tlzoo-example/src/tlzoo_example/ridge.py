"""``ridge``: a fitted head, scikit-learn's ridge classifier on the extracted features.

One-vs-rest least squares onto +-1 targets with an L2 penalty ``alpha``: closed form, no
iterations, deterministic.  Probabilities are a softmax of the decision values times
``scale``; the head is linear, so ``to_linear`` hands the engine its weights and tlzoo saves
it as a torch layer (``tl predict`` and ``tl export`` need no scikit-learn for it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tlzoo import FittedHead, TlzooError

if TYPE_CHECKING:  # numpy is imported where it is used, so `tl heads` does not load it
    import numpy as np


class RidgeHead(FittedHead):
    name = "ridge"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"alpha": 1.0, "scale": 5.0}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)  # rejects unknown options, fills in the defaults
        for key in ("alpha", "scale"):
            value = self.params[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise TlzooError(f"head.{key} of the ridge head must be a positive number, got {value!r}.")
        import numpy as np

        self.weight = np.zeros((0, 0), np.float32)
        self.bias = np.zeros(0, np.float32)

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        import numpy as np
        from sklearn.linear_model import RidgeClassifier

        x = np.asarray(x, np.float64)
        seen = np.unique(y)
        weight = np.zeros((num_classes, x.shape[1]))
        bias = np.full(num_classes, -1e4 / float(self.params["scale"]))  # a class absent from training: never
        if len(seen) == 1:  # nothing to separate: always that class
            bias[seen[0]] = 0.0
        else:
            model = RidgeClassifier(alpha=float(self.params["alpha"])).fit(x, y)
            coef, intercept = np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)
            if len(seen) == 2:  # one decision value d: scores (-d/2, d/2) give class 1 when d > 0
                coef = np.vstack([-coef[0] / 2, coef[0] / 2])
                intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
            weight[model.classes_] = coef
            bias[model.classes_] = intercept
        scale = float(self.params["scale"])
        self.weight, self.bias = (weight * scale).astype(np.float32), (bias * scale).astype(np.float32)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        z = np.asarray(x, np.float32) @ self.weight.T + self.bias
        z = np.exp(z - z.max(1, keepdims=True))
        return (z / z.sum(1, keepdims=True)).astype(np.float32)

    def to_linear(self) -> tuple[np.ndarray, np.ndarray]:
        return self.weight, self.bias

    def state(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        import numpy as np

        self.weight = np.asarray(arrays["weight"], np.float32)
        self.bias = np.asarray(arrays["bias"], np.float32)
