"""The strategy contract: :class:`Phase`, :class:`Plan`, :class:`StrategyContext`, :class:`Strategy`
(and the :class:`LanguageModelBackbone` protocol).  Re-exported by :mod:`tlzoo.api.interfaces`."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from tlzoo.api.backbone import (
        Backbone as Backbone,
        FittableBackbone as FittableBackbone,
        fit_backbone as fit_backbone,
    )
    from tlzoo.api.data import Dataset
    from tlzoo.api.heads import Head

# Backbone subclasses nn.Module, so it lives in tlzoo.api.backbone and loads (with torch) on
# first use: everything else here imports without torch, which keeps `tl heads`, `tl plugins`
# and the other listing commands fast.  `from tlzoo.api.interfaces import Backbone` still works.


# --------------------------------------------------------------------------- strategies
@dataclass
class Phase:
    """One stretch of training: which backbone groups learn, how long, how fast.

    ``train_groups`` counts backbone layer groups from the top (0 = backbone frozen,
    -1 = all).  The head always trains.  ``lr_decay`` < 1 gives discriminative
    learning rates: each group below the top gets ``lr * lr_decay**depth``.  ``lr_flag`` names the
    option that set ``lr``, for the one-line error when training diverges ("": ``--lr`` while the
    backbone is frozen, else ``--finetune-lr``).
    """

    name: str
    epochs: int
    lr: float
    train_groups: int = 0
    lr_decay: float = 1.0
    warmup_fraction: float = 0.0
    schedule: str = "cosine"  # cosine (after warm-up), slanted (ULMFiT's STLR), onecycle, constant
    lr_flag: str = ""


@dataclass
class Plan:
    """What a strategy decided: extract features once and fit, or train in phases."""

    phases: list[Phase]
    extract_features: bool  # True: the backbone never trains; features are cached

    @property
    def trains_backbone(self) -> bool:
        """Whether some phase updates backbone weights (then raw examples, not cached features, feed it)."""
        return not self.extract_features and any(p.train_groups != 0 for p in self.phases)


@runtime_checkable
class LanguageModelBackbone(Protocol):
    """A backbone that is (the encoder of) a language model and can go on training as one on
    plain texts: what the ``ulmfit`` strategy needs for its stage 2.  Structural: a backbone
    with this method satisfies ``isinstance(backbone, LanguageModelBackbone)``."""

    def finetune_language_model(
        self,
        texts: list[str],
        val_texts: list[str],
        *,
        epochs: int,
        lr: float,
        batch_size: int,
        seed: int,
        device: torch.device,
        log: Callable[[str], None],
        on_epoch: Callable[[dict[str, Any]], None],
    ) -> list[dict[str, Any]]:
        """Train the language model on ``texts`` (all layers), scoring ``val_texts``; call
        ``on_epoch(row)`` after each epoch (a history row: phase, epoch, train_loss, ...) and
        return the rows.  The backbone's parameters are left frozen (``requires_grad`` False)."""
        ...


@dataclass(frozen=True)
class StrategyContext:
    """What ``Strategy.before_training`` may use: the run's parts a strategy needs, not the whole Run.

    The test split is deliberately absent: nothing a strategy learns may see it.  The
    datasets are the run's own; read them, never modify them.
    """

    backbone: Backbone  # its weights may change (e.g. language-model fine-tuning); features are extracted after
    head: Head
    plan: Plan
    train_set: Dataset  # the training split
    val_set: Dataset  # the validation split (may be empty)
    train: Any  # the run's ``train`` config section (tlzoo.engine.config.TrainConfig): epochs, lr, batch_size, ...
    seed: int
    device: torch.device
    log: Callable[[str], None]
    record: Callable[[dict[str, Any]], None]  # add a row to history.csv (phase, epoch, train_loss, ...)
    assets: Path | None  # the run's assets/ folder, saved with the model (None in a `tl compare` probe)
    main: bool = True  # False on the other ranks under torchrun: only the main process writes files
    _run: Any = field(default=None, repr=False, compare=False)

    def __getattr__(self, name: str) -> Any:  # 0.1 strategies read the Run: still served, with a warning
        run = self.__dict__.get("_run")
        if name.startswith("__") or run is None or not hasattr(run, name):
            raise AttributeError(f"StrategyContext has no attribute '{name}'")
        warnings.warn(
            f"Strategy.before_training now receives a StrategyContext; ctx.{name} reads the Run and "
            "stops working in tlzoo 2.0",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(run, name)


class Strategy(ABC):
    """Turns the head and the ``train`` config section into a :class:`Plan`; may prepare the
    backbone before training (``before_training``)."""

    name: str = ""
    description: str = ""

    def defaults(self) -> dict[str, Any]:
        """The strategy's own options and their defaults (the built-ins have none: they read ``train.*``)."""
        return {}

    @abstractmethod
    def plan(self, head: Head, train: Any) -> Plan:
        """Turn the head and the ``train`` config section into a :class:`Plan`."""

    def plan_from_scratch(self, head: Head, train: Any) -> Plan | None:
        """The plan for a backbone with random weights (``model.pretrained`` false), or None to keep
        :meth:`plan`'s.  Called after ``plan``.  Freezing random layers only hurts, so the built-ins
        train every layer from the first epoch here, unless the user set a plan of their own."""
        return None

    def before_training(self, ctx: StrategyContext) -> None:  # noqa: B027 - optional: a no-op unless overridden
        """Optional work at the start of the train step, before features are extracted, e.g.
        ULMFiT's language-model fine-tuning on the target training texts."""
