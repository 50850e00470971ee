"""The late and mlp fusion heads of a fused run (``--fusion late`` / ``--fusion mlp``).

Both read the fused features (each input's block of columns, ``Backbone.feature_blocks()``) from the
same cache a ``concat`` run uses, so choosing another fusion costs head fits only.  Their ``blocks``
option maps each input to its column ranges; it is filled in by the fusion plugin's step wrapper
(``fusion_hooks``) when the model is built, and saved in model.json, so ``tl predict`` and
``tl export`` rebuild the head from its options like any other.  Without blocks a head sees one
input (all the columns), which is what the contract kit checks.

* ``late-fusion`` (a fitted head): one copy of the run's fitted head per input, fitted on that
  input's columns alone; class probabilities are mixed with non-negative weights that sum to 1,
  chosen on the validation split: the point of a grid on the simplex (step 0.05; 0.1 past four
  inputs) with the lowest validation log loss, ties going to the most even weights.
* ``mlp-fusion`` (a torch head, trained by the engine's loop like ``fc``): one linear projection
  per input to ``width`` units, modality dropout (during training each input of each example is
  zeroed with probability ``modality_dropout``, so the model learns not to lean on one input),
  then a small MLP (``width`` hidden units, ReLU, dropout) to the classes.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import FittedHead, TorchHead
from tlzoo.lib.lazy import lazy_module

if TYPE_CHECKING:  # numpy loads on first use (tl heads lists these heads), torch in build()
    import numpy as np
    from torch import nn
else:
    np = lazy_module("numpy")

Blocks = dict[str, list[list[int]]]


def encode_blocks(feature_blocks: list[tuple[str, list[int]]]) -> Blocks:
    """``Backbone.feature_blocks()`` as compact ranges: {input: [[start, stop], ...]} (JSON in model.json)."""
    out: Blocks = {}
    for name, columns in feature_blocks:
        ranges: list[list[int]] = []
        for c in sorted(columns):
            if ranges and ranges[-1][1] == c:
                ranges[-1][1] = c + 1
            else:
                ranges.append([c, c + 1])
        out[name] = ranges
    return out


def block_columns(blocks: Blocks, num_features: int) -> list[tuple[str, list[int]]]:
    """Each input's columns; one input of every column when no blocks are given."""
    if not blocks:
        return [("all", list(range(num_features)))]
    cols = [
        (name, [c for start, stop in ranges for c in range(int(start), int(stop))]) for name, ranges in blocks.items()
    ]
    top = max((max(c) for _, c in cols if c), default=-1)
    if top >= num_features:
        raise TlzooError(
            f"The fusion head's input blocks reach feature {top}, and the features have {num_features} columns; "
            "rerun `tl run` (the backbone's features changed)."
        )
    return cols


def _check_blocks(blocks: Any, head: str) -> None:
    ok = isinstance(blocks, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(r, list) and len(r) == 2 for r in v)
        for k, v in blocks.items()
    )
    if not ok:
        raise TlzooError(
            f"head.blocks of the {head} head must map inputs to column ranges, e.g. {{'image': [[0, 1280]]}}; "
            "it is set by --fusion in a fused run."
        )


# --------------------------------------------------------------------------- late fusion
def simplex_grid(k: int, step: float) -> np.ndarray:
    """Every weight vector of ``k`` non-negative multiples of ``step`` that sum to 1, [n, k]."""
    n = round(1 / step)
    points = [c for c in itertools.product(range(n + 1), repeat=k - 1) if sum(c) <= n]
    return np.array([[*c, n - sum(c)] for c in points], dtype=np.float64) / n


def choose_weights(probas: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, float]:
    """The simplex-grid weights whose mixture of ``probas`` has the lowest log loss on labels ``y``."""
    k = len(probas)
    grid = simplex_grid(k, 0.05 if k <= 4 else 0.1)
    stacked = np.stack([p[np.arange(len(y)), y] for p in probas], axis=1)  # [n, k]: each input's p(true class)
    losses = -np.log(np.clip(stacked @ grid.T, 1e-12, 1.0)).mean(axis=0)  # [grid points]
    spread = np.abs(grid - 1.0 / k).sum(axis=1)  # ties: the most even weights
    best = int(np.lexsort((spread, np.round(losses, 10)))[0])
    return grid[best], float(losses[best])


class LateFusionHead(FittedHead):
    """One fitted head per input; probabilities mixed with weights chosen on the validation split."""

    name = "late-fusion"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not isinstance(self.params["head"], str) or not isinstance(self.params["head_params"], dict):
            raise TlzooError(
                "head.head of the late-fusion head names a fitted head (e.g. 'logreg'), head.head_params its options."
            )
        _check_blocks(self.params["blocks"], self.name)
        self.members: list[FittedHead] = []
        self.columns: list[tuple[str, list[int]]] = []
        self.weights = np.zeros(0)
        self.tuned: dict[str, Any] = {}
        self.member_class: Any = None  # the class of the configured head, when the run knows it

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"head": "logreg", "head_params": {}, "blocks": {}}

    def use_blocks(self, feature_blocks: list[tuple[str, list[int]]]) -> None:
        """The backbone's input blocks (set when the model is built; saved with the options)."""
        self.params["blocks"] = encode_blocks(feature_blocks)

    def _member(self) -> FittedHead:
        if self.member_class is None:  # tl predict: the head class of that name
            from tlzoo.engine.zoo import Zoo

            self.member_class = Zoo().heads.get(self.params["head"])
        head = self.member_class(**self.params["head_params"])
        if not isinstance(head, FittedHead):
            raise TlzooError(
                f"--fusion late fits one head per input, and '{self.params['head']}' is trained by gradient "
                "descent; choose a fitted head (--head logreg, knn, svm, rf, tree, nb), or --fusion mlp."
            )
        return head

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        self.columns = block_columns(self.params["blocks"], x.shape[1])
        self.members = []
        for _, cols in self.columns:
            member = self._member()
            member.fit(np.ascontiguousarray(x[:, cols]), y, num_classes)
            self.members.append(member)
        self.weights = np.full(len(self.members), 1.0 / len(self.members))
        inner = {name: dict(t) for (name, _), m in zip(self.columns, self.members) if (t := getattr(m, "tuned", None))}
        self.tuned = {  # the weights come from choose(), on the validation split, after this fit
            "fusion": "late",
            **({"inputs": inner} if inner else {}),
            "note": "a head per input; the weights are chosen on the validation split next",
        }

    def input_probabilities(self, x: np.ndarray) -> list[np.ndarray]:
        """Each input's head's class probabilities, [n, classes] per input."""
        self.columns = block_columns(self.params["blocks"], x.shape[1])
        return [
            np.asarray(m.predict_proba(np.ascontiguousarray(x[:, c]))) for m, (_, c) in zip(self.members, self.columns)
        ]

    def choose(self, x_val: Any, y_val: Any) -> None:
        """The mixing weights that minimise the validation log loss (equal weights without a validation split)."""
        self.tuned.pop("note", None)
        if not len(y_val):
            self.tuned.update(weights=self.weight_table(), chosen_on="no validation split: equal weights")
            return
        probas = self.input_probabilities(x_val)
        self.weights, loss = choose_weights(probas, y_val)
        mixed = sum(w * p for w, p in zip(self.weights, probas))
        self.tuned.update(
            weights=self.weight_table(),
            chosen_on=f"validation split ({len(y_val)} examples): grid on the simplex, lowest log loss",
            val_log_loss=round(loss, 5),
            val_accuracy=round(float((np.asarray(mixed).argmax(1) == y_val).mean()), 5),
            val_accuracy_per_input={
                name: round(float((p.argmax(1) == y_val).mean()), 5) for (name, _), p in zip(self.columns, probas)
            },
        )

    def weight_table(self) -> dict[str, float]:
        return {name: round(float(w), 4) for (name, _), w in zip(self.columns, self.weights)}

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        probas = self.input_probabilities(x)
        return np.asarray(sum(w * p for w, p in zip(self.weights, probas)), dtype=np.float64)

    def state(self) -> dict[str, np.ndarray]:
        out = {"fusion_weights": np.asarray(self.weights, dtype=np.float64)}
        for i, member in enumerate(self.members):
            out.update({f"input{i}.{k}": np.asarray(v) for k, v in member.state().items()})
        return out

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights = np.asarray(arrays["fusion_weights"], dtype=np.float64)
        names = list(self.params["blocks"]) or ["all"]
        if len(names) != len(self.weights):
            raise TlzooError(f"the late-fusion head has {len(self.weights)} weights for {len(names)} inputs")
        self.members = []
        for i in range(len(names)):
            prefix = f"input{i}."
            member = self._member()
            member.load_state({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
            self.members.append(member)


# --------------------------------------------------------------------------- mlp fusion
class MLPFusionHead(TorchHead):
    """Per-input projections to a common width, modality dropout, a small MLP."""

    name = "mlp-fusion"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        _check_blocks(self.params["blocks"], self.name)
        p = self.params
        if not (isinstance(p["width"], int) and not isinstance(p["width"], bool) and p["width"] >= 1):
            raise TlzooError(f"the mlp fusion width must be an integer >= 1, got {p['width']!r}; e.g. 64.")
        for key in ("modality_dropout", "dropout"):
            v = p[key]
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1):
                raise TlzooError(f"the mlp fusion {key} must be a number in [0, 1), got {v!r}; e.g. 0.2.")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"blocks": {}, "width": 64, "modality_dropout": 0.2, "dropout": 0.1}

    def use_blocks(self, feature_blocks: list[tuple[str, list[int]]]) -> None:
        """The backbone's input blocks (set when the model is built; saved with the options)."""
        self.params["blocks"] = encode_blocks(feature_blocks)

    def build(self, num_features: int, num_classes: int) -> nn.Module:
        columns = block_columns(self.params["blocks"], num_features)
        p = self.params
        return _mlp_module(columns, int(p["width"]), float(p["modality_dropout"]), float(p["dropout"]), num_classes)


def _mlp_module(
    columns: list[tuple[str, list[int]]], width: int, modality_dropout: float, dropout: float, num_classes: int
) -> nn.Module:
    import torch
    from torch import nn

    class MLPFusion(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.modality_dropout = modality_dropout
            for i, (_, cols) in enumerate(columns):
                self.register_buffer(f"cols{i}", torch.tensor(cols, dtype=torch.long), persistent=False)
            self.project = nn.ModuleList(nn.Linear(len(cols), width) for _, cols in columns)
            self.mlp = nn.Sequential(
                nn.ReLU(), nn.Dropout(dropout), nn.Linear(width * len(columns), width), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(width, num_classes),
            )  # fmt: skip

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            parts = []
            for i, proj in enumerate(self.project):
                part = proj(x.index_select(1, getattr(self, f"cols{i}")))
                if self.training and self.modality_dropout > 0:  # the whole input of an example, zeroed
                    keep = torch.rand(x.shape[0], 1, device=x.device) >= self.modality_dropout
                    part = part * keep.to(part.dtype)
                parts.append(part)
            return self.mlp(torch.cat(parts, dim=1))

    return MLPFusion()
