"""The fully connected head: optional hidden layers, dropout, a softmax output layer."""
from __future__ import annotations

from typing import Any

from torch import nn

from tlzoo.core.errors import TlzooError
from tlzoo.core.hookspecs import hookimpl
from tlzoo.core.interfaces import Head


class FCHead(Head):
    """``hidden``: a width or a list of widths (0 or [] = a single linear layer)."""

    name = "fc"
    trainable = True

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"hidden": [], "dropout": 0.1, "activation": "relu"}

    def build(self, num_features: int, num_classes: int) -> nn.Module:
        hidden = self.params["hidden"]
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        hidden = [h for h in hidden if h]
        if any(not isinstance(h, int) or h < 0 for h in hidden):
            raise TlzooError(f"head.hidden must be a width or a list of widths, got {self.params['hidden']!r}.")
        dropout = float(self.params["dropout"])
        if not 0 <= dropout < 1:
            raise TlzooError(f"head.dropout must be in [0, 1), got {dropout}.")
        acts = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
        if self.params["activation"] not in acts:
            raise TlzooError(f"head.activation must be one of {', '.join(acts)}, got {self.params['activation']!r}.")
        layers: list[nn.Module] = []
        width = num_features
        for h in hidden:
            layers += [nn.Dropout(dropout), nn.Linear(width, h), acts[self.params["activation"]]()]
            width = h
        layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
        return nn.Sequential(*layers)


@hookimpl
def tlzoo_register_heads(register: Any) -> None:
    register(FCHead)
