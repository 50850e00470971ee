"""The head contract: :data:`HEAD_CHECKS`, :class:`HeadCase` and ``check_head``.

A head is either trainable (a torch module trained by gradient descent, possibly with
the backbone) or fitted (numpy in, numpy out, scikit-learn style).  Which one is read
from the class: a subclass of ``tlzoo.api.interfaces.TorchHead`` / ``FittedHead`` where
the interfaces declare them, else the ``trainable`` flag of tlzoo 0.1's ``Head``.
Every check takes ``(head_cls, params=None, num_features=8, num_classes=3)``.
See :mod:`tlzoo.testing` for how a plugin's tests use them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo.api import interfaces
from tlzoo.api.errors import TlzooError

from ._rules import Check, default_zoo, defaults_of, rule
from .inputs import separable_features


def is_trainable(head_cls: type[Any]) -> bool:
    """Whether ``head_cls`` is a trainable (torch) head rather than a fitted one."""
    torch_head = getattr(interfaces, "TorchHead", None)
    fitted_head = getattr(interfaces, "FittedHead", None)
    if isinstance(torch_head, type) and issubclass(head_cls, torch_head):
        return True
    if isinstance(fitted_head, type) and issubclass(head_cls, fitted_head):
        return False
    return bool(getattr(head_cls, "trainable", True))


def _is_head_class(obj: Any) -> bool:
    bases = tuple(
        t for t in (getattr(interfaces, n, None) for n in ("Head", "TorchHead", "FittedHead")) if isinstance(t, type)
    )
    return isinstance(obj, type) and issubclass(obj, bases)


@rule
def check_head_options(
    head_cls: type[Any], params: dict[str, Any] | None = None, num_features: int = 8, num_classes: int = 3
) -> None:
    """name and JSON-able defaults are declared; an unknown option is a TlzooError naming it; params
    hold every default."""
    params = params or {}
    cls: Any = head_cls
    assert _is_head_class(cls), f"{cls!r} must be a class subclassing tlzoo's Head"
    assert isinstance(cls.name, str) and cls.name, "the head class must set name"
    defaults = defaults_of(cls)
    try:
        json.dumps(defaults)  # saved in config.toml and model.json
    except TypeError as exc:
        raise AssertionError(f"defaults are not JSON-able ({exc}); they are saved in config.toml") from None
    try:
        cls(no_such_option_xyz=1)
    except TlzooError as exc:
        assert "no_such_option_xyz" in str(exc), "the unknown-option error must name the option"
    else:
        raise AssertionError("an unknown head option must raise TlzooError")
    head = cls(**params)
    assert set(head.params) == set(defaults), (
        f"params must hold every default option: missing {sorted(set(defaults) - set(head.params))}, "
        f"extra {sorted(set(head.params) - set(defaults))}"
    )
    json.dumps(head.params)


@rule
def check_head_learns(
    head_cls: type[Any], params: dict[str, Any] | None = None, num_features: int = 8, num_classes: int = 3
) -> None:
    """On well-separated features a trainable head's loss goes down to >= 0.9 accuracy; a fitted
    head's predict_proba gives probabilities with >= 0.9 accuracy."""
    x, y = separable_features(n=60, num_features=num_features, num_classes=num_classes)
    head = head_cls(**(params or {}))
    if is_trainable(head_cls):
        module = _train(head, x, y, num_features, num_classes)
        with torch.no_grad():
            acc = float((module(torch.from_numpy(x)).argmax(1) == torch.from_numpy(y)).float().mean())
        assert acc >= 0.9, f"the head reached only {acc:.2f} accuracy on well-separated data"
        return
    head.fit(x, y, num_classes)
    p = np.asarray(head.predict_proba(x))
    assert p.shape == (len(x), num_classes), f"predict_proba shape {p.shape}, expected {(len(x), num_classes)}"
    assert np.all(np.isfinite(p)), "predict_proba gave NaN or inf"
    assert np.all(p >= 0) and np.allclose(p.sum(1), 1, atol=1e-4), "predict_proba rows must be probabilities"
    acc = float((p.argmax(1) == y).mean())
    assert acc >= 0.9, f"the fitted head reached only {acc:.2f} accuracy on well-separated data"


def _train(head: Any, x: np.ndarray, y: np.ndarray, num_features: int, num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    module = head.build(num_features, num_classes)
    assert isinstance(module, nn.Module), "build() must return an nn.Module"
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    out = module(xt)
    assert tuple(out.shape) == (len(x), num_classes), (
        f"head output shape {tuple(out.shape)}, expected {(len(x), num_classes)}"
    )
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    module.train()
    first = last = float("nan")
    for step in range(100):
        loss = nn.functional.cross_entropy(module(xt), yt)
        assert torch.isfinite(loss), f"training loss is not finite at step {step}"
        last = float(loss.detach())
        first = last if step == 0 else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert last < first, "training loss did not go down"
    module.eval()
    return module


@rule
def check_head_round_trip(
    head_cls: type[Any], params: dict[str, Any] | None = None, num_features: int = 8, num_classes: int = 3
) -> None:
    """What ``tl predict`` relies on: a trainable head's state dict loads into a freshly built module;
    a fitted head is a linear layer (``to_linear``) or restores from ``state()`` arrays (no pickles)."""
    params = params or {}
    x, y = separable_features(n=60, num_features=num_features, num_classes=num_classes)
    head = head_cls(**params)
    if is_trainable(head_cls):
        module = _train(head, x, y, num_features, num_classes)
        torch.manual_seed(1)  # a different initialisation: only the state dict may make them agree
        again = head_cls(**head.params).build(num_features, num_classes)
        again.load_state_dict(module.state_dict())
        xt = torch.from_numpy(x)
        with torch.no_grad():
            assert torch.allclose(again.eval()(xt), module(xt), atol=1e-6), "a rebuilt head gives different outputs"
        return
    head.fit(x, y, num_classes)
    p = np.asarray(head.predict_proba(x))
    linear = head.to_linear()
    if linear is not None:
        w, b = (np.asarray(a) for a in linear)
        assert w.shape == (num_classes, x.shape[1]) and b.shape == (num_classes,), (
            f"to_linear() gave shapes {w.shape} and {b.shape}, expected {(num_classes, x.shape[1])} and "
            f"{(num_classes,)}"
        )
        logits = x.astype(np.float64) @ w.T.astype(np.float64) + b
        e = np.exp(logits - logits.max(1, keepdims=True))
        assert np.allclose(e / e.sum(1, keepdims=True), p, atol=1e-4), (
            "to_linear() is not the same classifier as predict_proba()"
        )
        return
    state = head.state()
    assert state, "a fitted head that is not linear must return its arrays from state()"
    for k, v in state.items():
        assert isinstance(v, np.ndarray), f"state()['{k}'] is a {type(v).__name__}, not a numpy array (no pickles)"
        assert v.dtype != object, f"state()['{k}'] holds Python objects (dtype object), which only a pickle saves"
    fresh = head_cls(**params)
    fresh.load_state({k: np.array(v) for k, v in state.items()})
    assert np.allclose(fresh.predict_proba(x), p, atol=1e-5), "load_state(state()) does not restore the head"


HEAD_CHECKS: tuple[Callable[..., None], ...] = (check_head_options, check_head_learns, check_head_round_trip)
"""Every head check, each called as ``check(head_cls, params=None, num_features=8, num_classes=3)``."""


def check_head(
    head_cls: type[Any], num_features: int = 8, num_classes: int = 3, params: dict[str, Any] | None = None
) -> None:
    """Run every check in :data:`HEAD_CHECKS`; ``params`` are options for a fast configuration."""
    for check in HEAD_CHECKS:
        check(head_cls, params, num_features, num_classes)


@dataclass(eq=False)
class HeadCase:
    """A head class for the checks: the class or its registered name, and fast ``params``."""

    head: Any
    params: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    num_features: int = 8
    num_classes: int = 3
    zoo: Any = None

    def __post_init__(self) -> None:
        if not self.id:
            self.id = (
                self.head if isinstance(self.head, str) else str(getattr(self.head, "name", "") or self.head.__name__)
            )

    def resolve(self) -> type[Any]:
        """The head class."""
        return (self.zoo or default_zoo()).heads.get(self.head) if isinstance(self.head, str) else self.head

    def checks(self) -> Iterator[Check]:
        """Every head check bound to this case."""
        for fn in HEAD_CHECKS:
            yield Check(fn, _with_params)


def _with_params(case: HeadCase, rule: Callable[..., Any]) -> Any:
    return rule(case.resolve(), dict(case.params), case.num_features, case.num_classes)
