"""0.2's ``train.epochs`` (``--epochs``, ``-e``), kept until 0.4 beside the names that replace it.

``train.epochs`` meant the epochs of a strategy's *last* phase: the head's under feature
extraction, the joint ones under fine-tuning, every layer's from scratch.  0.3 names the two
kinds: ``train.head_epochs`` (the new head alone, the backbone frozen) and
``train.joint_epochs`` (the backbone training).  The old key still loads (option, config file,
``--set``, Python): :func:`resolve_old_epochs` moves it to the key of the phase it meant, once
the strategy is known, and leaves a one-line note for the run's log; config.toml then holds the
new key.  Strategies written for 0.2 still read ``train.epochs`` (:class:`EpochsCompat`).
"""

from __future__ import annotations

import warnings
from typing import Any

from tlzoo.api.errors import TlzooError

UNSET_EPOCHS = -1  # train.head_epochs not given: the strategy decides (0 is a choice: fine-tune without a head phase)


class EpochsCompat:
    """TrainConfig's epoch helpers: the strategy's default where a key is not given, and 0.2's
    ``epochs`` as a deprecated property."""

    head_epochs: int
    joint_epochs: int

    def __post_init__(self) -> None:
        self._old_epochs = 0  # 0.2's train.epochs as given; RunConfig.validate() moves it to its new key

    def head_epochs_or(self, default: int) -> int:
        """``head_epochs`` as given, else the strategy's ``default`` (0 given stays 0)."""
        return default if self.head_epochs == UNSET_EPOCHS else self.head_epochs

    def joint_epochs_or(self, default: int) -> int:
        """``joint_epochs`` as given, else the strategy's ``default``."""
        return self.joint_epochs or default

    @property
    def epochs(self) -> int:
        """Deprecated (0.2's ``train.epochs``, removed in 0.4), kept for strategies that read it: the epochs
        of the last phase as given: ``joint_epochs`` if set, else ``head_epochs`` if set, else 0."""
        return self._old_epochs or self.joint_epochs or max(self.head_epochs, 0)

    @epochs.setter
    def epochs(self, value: int) -> None:
        warnings.warn(
            "train.epochs is deprecated (removed in 0.4): set train.head_epochs (the new head alone) or "
            "train.joint_epochs (the backbone training)",
            DeprecationWarning,
            stacklevel=2,
        )
        self._old_epochs = value


def old_epochs_of(train: Any) -> int:
    """0.2's ``train.epochs`` not yet moved to its new key (a TrainConfig built in Python and planned
    directly): a built-in strategy reads it for its last phase, as 0.2 did."""
    return int(getattr(train, "_old_epochs", 0) or 0)


def accept_old_epochs(cls: Any) -> Any:
    """``TrainConfig(epochs=5)`` of 0.2 still builds (with the DeprecationWarning of the property)."""
    made = cls.__init__

    def __init__(self: Any, *args: Any, epochs: int = 0, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        if epochs:
            self.epochs = epochs

    __init__.__doc__ = made.__doc__
    cls.__init__ = __init__
    return cls


def set_old_epochs(cfg: Any, value: int) -> None:
    """``--epochs N`` or ``train.epochs = N``: kept until the strategy is known (``validate``)."""
    if value < 1:
        raise TlzooError(
            f"--epochs (train.epochs) must be at least 1, got {value}; it is deprecated: use --head-epochs "
            "(the new head alone) or --joint-epochs (the backbone training)."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cfg.train.epochs = value
    cfg._given.add("train.epochs")


def old_epochs_key(cfg: Any) -> tuple[str, str]:
    """The new key 0.2's ``train.epochs`` meant in this run (its last phase), and that phase in words."""
    t = cfg.train
    if t.strategy == "feature-extraction" and (cfg.model.pretrained or t.unfreeze == 0):
        return "head_epochs", "the head's epochs under feature extraction"
    if t.strategy == "feature-extraction" or not cfg.model.pretrained:
        return "joint_epochs", "every layer's epochs from scratch"
    if t.strategy == "fine-tune":
        return "joint_epochs", "fine-tune's joint epochs"
    return "joint_epochs", f"the last phase of {t.strategy}"


def resolve_old_epochs(cfg: Any) -> None:
    """Move a given ``train.epochs`` to the key of the phase it meant, with a note in ``cfg.notes``."""
    old = cfg.train._old_epochs
    if not old:
        return
    key, meaning = old_epochs_key(cfg)
    flag = "--" + key.replace("_", "-")
    if cfg.given(f"train.{key}"):
        cfg.notes.append(f"note: --epochs (train.epochs) is deprecated and goes in 0.4; {old} ignored: {flag} is given")
    else:
        setattr(cfg.train, key, old)
        cfg._given.add(f"train.{key}")
        cfg.notes.append(
            f"note: --epochs (train.epochs) is deprecated and goes in 0.4; read as {flag} {old} ({meaning}); "
            f"use {flag} (train.{key})"
        )
    cfg.train._old_epochs = 0
