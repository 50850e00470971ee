"""``check_head``: the contract of a Head class, trainable (torch) or fitted (numpy).

See :mod:`tlzoo.testing` for how a plugin's tests use it.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo.core.errors import TlzooError
from tlzoo.core.interfaces import Head

from .inputs import separable_features

def check_head(head_cls: type[Head], num_features: int = 8, num_classes: int = 3,
               params: dict[str, Any] | None = None) -> None:
    """A Head class: defaults, option checking, and either build-and-learn or fit/predict/save/load.

    ``params`` are constructor options for a fast configuration (e.g. few iterations).
    """
    params = params or {}
    assert isinstance(head_cls.name, str) and head_cls.name, "Head.name must be set"
    defaults = head_cls.defaults()
    assert isinstance(defaults, dict), "defaults() must return a dict of options"
    json.dumps(defaults)  # saved in config.toml and model.json
    try:
        head_cls(no_such_option_xyz=1)
    except TlzooError as exc:
        assert "no_such_option_xyz" in str(exc), "the unknown-option error must name the option"
    else:
        raise AssertionError("an unknown head option must raise TlzooError")
    head = head_cls(**params)
    assert set(head.params) == set(defaults), "params must hold every default option"
    json.dumps(head.params)
    x, y = separable_features(n=60, num_features=num_features, num_classes=num_classes)
    if head_cls.trainable:
        _check_trainable_head(head, x, y, num_features, num_classes)
    else:
        _check_fitted_head(head_cls, head, params, x, y, num_classes)


def _check_trainable_head(head: Head, x: np.ndarray, y: np.ndarray, num_features: int, num_classes: int) -> None:
    torch.manual_seed(0)
    module = head.build(num_features, num_classes)
    assert isinstance(module, nn.Module), "build() must return an nn.Module"
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    out = module(xt)
    assert tuple(out.shape) == (len(x), num_classes), f"head output shape {tuple(out.shape)}, expected {(len(x), num_classes)}"
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    module.train()
    first = None
    for _ in range(100):
        loss = nn.functional.cross_entropy(module(xt), yt)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        acc = float((module(xt).argmax(1) == yt).float().mean())
    assert float(loss.detach()) < first, "training loss did not go down"
    assert acc >= 0.9, f"the head reached only {acc:.2f} accuracy on well-separated data"
    # the state dict round-trips into a freshly built module (how tl predict loads it)
    again = type(head)(**head.params).build(num_features, num_classes)
    again.load_state_dict(module.state_dict())
    with torch.no_grad():
        assert torch.allclose(again.eval()(xt), module(xt), atol=1e-6), "a rebuilt head gives different outputs"


def _check_fitted_head(head_cls: type[Head], head: Head, params: dict[str, Any], x: np.ndarray,
                       y: np.ndarray, num_classes: int) -> None:
    head.fit(x, y, num_classes)
    p = head.predict_proba(x)
    assert p.shape == (len(x), num_classes), f"predict_proba shape {p.shape}, expected {(len(x), num_classes)}"
    assert np.all(p >= 0) and np.allclose(p.sum(1), 1, atol=1e-4), "predict_proba rows must be probabilities"
    acc = float((p.argmax(1) == y).mean())
    assert acc >= 0.9, f"the fitted head reached only {acc:.2f} accuracy on well-separated data"
    linear = head.to_linear()
    if linear is not None:
        w, b = linear
        assert w.shape == (num_classes, x.shape[1]) and b.shape == (num_classes,), "to_linear() shapes are wrong"
        logits = x.astype(np.float64) @ w.T.astype(np.float64) + b
        e = np.exp(logits - logits.max(1, keepdims=True))
        assert np.allclose(e / e.sum(1, keepdims=True), p, atol=1e-4), \
            "to_linear() is not the same classifier as predict_proba()"
        return
    state = head.state()
    assert state, "a fitted head that is not linear must return its arrays from state()"
    for k, v in state.items():
        assert isinstance(v, np.ndarray), f"state()['{k}'] is a {type(v).__name__}, not a numpy array (no pickles)"
    fresh = head_cls(**params)
    fresh.load_state({k: np.array(v) for k, v in state.items()})
    assert np.allclose(fresh.predict_proba(x), p, atol=1e-5), "load_state(state()) does not restore the head"
