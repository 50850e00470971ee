"""The head contract: :class:`Head`, :class:`TorchHead`, :class:`FittedHead` and ``head_class``.
Re-exported by :mod:`tlzoo.api.interfaces`."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from torch import nn

    from tlzoo.api.backbone import (
        Backbone as Backbone,
        FittableBackbone as FittableBackbone,
        fit_backbone as fit_backbone,
    )

# Backbone subclasses nn.Module, so it lives in tlzoo.api.backbone and loads (with torch) on
# first use: everything else here imports without torch, which keeps `tl heads`, `tl plugins`
# and the other listing commands fast.  `from tlzoo.api.interfaces import Backbone` still works.


# --------------------------------------------------------------------------- heads
class _HeadKind:
    """``Head.trainable``, kept for 0.1 code: True for a TorchHead, False for a FittedHead; read-only."""

    def __get__(self, obj: Any, owner: type) -> bool:
        return issubclass(owner, TorchHead)

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError("Head.trainable is read-only: it follows the head's type (TorchHead or FittedHead)")


class Head(ABC):
    """The new layers put on top of a backbone: subclass :class:`TorchHead` or :class:`FittedHead`.

    This common base holds the name and the options: ``defaults()`` lists every option with
    its default, and the constructor rejects unknown ones (``--set head.KEY=VALUE``).
    """

    name: str = ""
    params: dict[str, Any]
    trainable = _HeadKind()
    option_help: dict[str, str] = {}  # one line per option of defaults(), for `tl config --head NAME`

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        flag = vars(cls).get("trainable")
        if flag is None or isinstance(flag, _HeadKind):
            return
        kinds = [k for k in (globals().get("TorchHead"), globals().get("FittedHead")) if k is not None]
        if any(issubclass(cls, k) for k in kinds):
            if bool(flag) != issubclass(cls, kinds[0]):
                raise TypeError(
                    f"head class {cls.__name__}: trainable = {flag!r} contradicts its base; "
                    "drop the flag, the base (TorchHead or FittedHead) says it"
                )
            return
        warnings.warn(
            f"head class {cls.__name__}: Head with a `trainable` flag is deprecated; subclass "
            f"{'TorchHead' if flag else 'FittedHead'} instead",
            DeprecationWarning,
            stacklevel=3,
        )

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults())
        if unknown:
            from tlzoo.api.errors import TlzooError, suggest

            key = sorted(unknown)[0]
            raise TlzooError(
                f"Unknown option head.{key} for head '{self.name}'.{suggest(key, self.defaults())} "
                f"Options: {', '.join(sorted(self.defaults())) or 'none'}."
            )
        self.params = {**self.defaults(), **params}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every option of this head and its default value (JSON-able)."""
        return {}

    def use_blocks(self, blocks: list[tuple[str, list[int]]]) -> None:
        """Which feature columns each input gives, when the features hold several inputs (a fused
        run: ``Backbone.feature_blocks()``, re-indexed for a subset of the inputs).  The engine calls it
        before ``build`` or ``fit``; a head that scales or groups features by input uses it.  Default: ignored."""
        return None


class TorchHead(Head):
    """A head trained by gradient descent as a torch module, alone on cached features or
    together with the backbone (fine-tuning)."""

    @abstractmethod
    def build(self, num_features: int, num_classes: int) -> nn.Module:
        """A fresh module mapping ``[batch, num_features]`` features to ``[batch, num_classes]`` logits."""


class FittedHead(Head):
    """A head fitted once on extracted features, scikit-learn style (the backbone stays frozen)."""

    @abstractmethod
    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        """Learn from features ``x`` ``[n, d]`` and class indices ``y`` ``[n]`` in ``range(num_classes)``."""

    @abstractmethod
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``[n, num_classes]`` for features ``x``."""

    def to_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(weight, bias) when the fitted head is a linear softmax layer, else None."""
        return None

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """Arrays that restore the fitted head (saved as safetensors, never pickled)."""

    @abstractmethod
    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned (``tl predict``)."""


def _no_state(self: Any) -> dict[str, np.ndarray]:
    return {}


def _no_load_state(self: Any, arrays: dict[str, np.ndarray]) -> None:
    raise NotImplementedError(f"head '{self.name}' cannot be restored: it defines no load_state")


def head_class(cls: type[Head]) -> type[Head]:
    """``cls`` when it is a TorchHead or FittedHead; a 0.1 ``Head`` subclass (``trainable`` flag) adapted.

    The adapted class subclasses ``cls`` and the kind its flag names (a class without the
    flag is a TorchHead when it defines ``build``), so isinstance checks work; the zoo
    registers heads through this and records the deprecation against the plugin."""
    if not (isinstance(cls, type) and issubclass(cls, Head)):
        raise TypeError(f"register() takes a TorchHead or FittedHead subclass, got {cls!r}")
    if issubclass(cls, (TorchHead, FittedHead)):
        return cls
    flag = next((vars(k)["trainable"] for k in cls.__mro__ if k is not Head and "trainable" in vars(k)), None)
    torch_head = bool(flag) if flag is not None else callable(getattr(cls, "build", None))
    extra: dict[str, Any] = (
        {}
        if torch_head
        else {
            name: default
            for name, default in (("state", _no_state), ("load_state", _no_load_state))
            if not callable(getattr(cls, name, None))
        }
    )
    return type(
        cls.__name__,
        (cls, TorchHead if torch_head else FittedHead),
        {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__, **extra},
    )
