"""The events of the training loop, the state a callback sees, and how a callback stops a fit.

:meth:`tlzoo.engine.training.Trainer.fit` calls, in this order::

    on_fit_begin                      once, after the optimizer and scheduler exist
      on_epoch_begin                  before anything of the epoch (early stopping stops here)
      on_train_begin                  after model.train() (frozen layers back to eval mode)
        on_batch_begin                before the forward pass (a rate sweep sets the rates)
        on_loss                       after the loss, before backward (DDP weighs it; a sweep stops)
        on_backward                   after backward, before the optimizer step (gradient clipping)
        on_batch_end                  after the step and the scheduler, sums updated
      on_validate                     the epoch's row holds train and validation figures
      on_epoch_end                    the row is complete (seconds too): log, history, checkpoint
    on_fit_end                        always, also after an error (``state.error`` says which)

A callback that raises :class:`StopFit` ends the fit after the current event (early stopping,
a diverging sweep); ``on_fit_end`` still runs.  Callbacks run in the order they were given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

EVENTS = (
    "on_fit_begin",
    "on_epoch_begin",
    "on_train_begin",
    "on_batch_begin",
    "on_loss",
    "on_backward",
    "on_batch_end",
    "on_validate",
    "on_epoch_end",
    "on_fit_end",
)


class StopFit(Exception):
    """Raised by a callback to end the fit (the epoch loop stops; ``on_fit_end`` runs)."""


@dataclass
class FitState:
    """What the loop knows; callbacks read it and may change the fields their event documents."""

    model: nn.Module  # what is trained, saved and restored
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a LambdaLR, or None for rates a callback sets itself
    train_loader: Iterable[Any]  # every epoch's batches, unless a callback sets epoch_batches
    val_loader: Iterable[Any] | None
    name: str  # the phase name the history rows carry
    epochs: int
    device: torch.device
    log: Callable[[str], None]
    net: nn.Module | None = None  # what the forward pass runs (DDP wraps model): None means model
    # (state, batch) -> (mean loss, examples or tokens it is the mean over, correct predictions) or None
    batch_loss: Callable[[FitState, Any], Any] | None = None
    first_epoch: int = 1  # a resumed fit starts later
    epoch: int = 0
    epochs_done: int = 0  # the last epoch that finished (a resumed one included)
    epoch_batches: Iterable[Any] = ()  # this epoch's batches (on_epoch_begin may replace them)
    batch_index: int = 0  # 1-based, within the epoch
    step: int = 0  # optimizer steps taken in this fit
    loss: torch.Tensor | None = None  # the batch's mean loss
    scaled_loss: torch.Tensor | None = None  # what backward runs on (on_loss may weigh it)
    n: int = 0  # examples (or tokens) the batch's loss is the mean over
    seen: int = 0
    sum_loss: torch.Tensor | None = None  # float64 running sums, kept on the device
    sum_correct: torch.Tensor | None = None
    reduce: Callable[[list[float]], list[float]] | None = None  # sums over the ranks (DDP)
    train_loss: float = float("nan")  # the epoch's mean training loss, unrounded
    val_loss: float | None = None
    row: dict[str, Any] = field(default_factory=dict)
    best: dict[str, Any] | None = None  # {"loss", "epoch", "state"}: the best validation weights so far
    started: float = 0.0  # perf_counter at the start of the epoch
    error: BaseException | None = None  # what ended the fit, for on_fit_end (StopFit is no error)

    @property
    def forward(self) -> nn.Module:
        return self.net if self.net is not None else self.model


class Callback:
    """A no-op for every event; subclasses override the events they need (see the module docstring)."""

    def on_fit_begin(self, state: FitState) -> None: ...
    def on_epoch_begin(self, state: FitState) -> None: ...
    def on_train_begin(self, state: FitState) -> None: ...
    def on_batch_begin(self, state: FitState) -> None: ...
    def on_loss(self, state: FitState) -> None: ...
    def on_backward(self, state: FitState) -> None: ...
    def on_batch_end(self, state: FitState) -> None: ...
    def on_validate(self, state: FitState) -> None: ...
    def on_epoch_end(self, state: FitState) -> None: ...
    def on_fit_end(self, state: FitState) -> None: ...
