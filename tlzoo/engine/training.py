"""The training loop: it runs the phases a strategy planned, nothing more.

A phase says which backbone layer groups learn (counted from the top), for how many
epochs and at which learning rate.  Frozen groups have ``requires_grad=False`` and
stay in eval mode, so their BatchNorm running statistics never move.  Each epoch's
row goes to ``history.csv`` as soon as the epoch ends.

Under torchrun (a process group of several ranks, see ``distributed.py``) a phase trains
under DistributedDataParallel: each rank takes its piece of every batch a one-process run
forms (same seed, same order), losses are weighted so that the averaged gradients are the
whole batch's, and the training and validation sums are all-reduced, so every rank logs
the same row and takes the same early-stopping and best-epoch decisions.  Only rank 0
writes the history file and the checkpoints.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlzoo.api.interfaces import Backbone, Phase
from tlzoo.engine import distributed
from tlzoo.engine.checkpoint import Checkpointer
from tlzoo.engine.loop.callbacks import (
    BestWeights,
    Checkpoint,
    DistributedData,
    DivergenceGuard,
    EarlyStopping,
    EpochLog,
    OnTrain,
    ProgressBar,
    Resume,
)
from tlzoo.engine.loop.events import Callback, FitState, StopFit

HISTORY_FIELDS = ("phase", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


class TransferModel(nn.Module):
    """The new model: a pretrained backbone with a new head on top."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, batch: Any) -> torch.Tensor:
        return self.head(self.backbone(batch))


def set_trainable(backbone: Backbone, top_groups: int) -> list[nn.Module]:
    """Freeze the backbone except its top ``top_groups`` groups (-1: all); return those."""
    groups = backbone.layer_groups()
    for p in backbone.parameters():
        p.requires_grad_(False)
    k = len(groups) if top_groups < 0 else min(top_groups, len(groups))
    live = groups[len(groups) - k :] if k else []
    for g in live:
        for p in g.parameters():
            p.requires_grad_(True)
    return live


def count_parameters(module: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, total


def frozen_to_eval(backbone: Backbone, live: list[nn.Module]) -> None:
    """Put everything in the backbone that does not learn into eval mode (BatchNorm, dropout)."""
    backbone.eval()
    for g in live:
        g.train()


class History:
    """Epoch rows, appended to ``history.csv`` as each epoch ends."""

    def __init__(self, path: Path | None) -> None:
        self.rows: list[dict[str, Any]] = []
        self.path = path
        if path is not None:
            with path.open("w", newline="") as f:
                csv.DictWriter(f, HISTORY_FIELDS).writeheader()

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.path is not None:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, HISTORY_FIELDS).writerow({k: row.get(k, "") for k in HISTORY_FIELDS})

    def restore(self, rows: list[dict[str, Any]]) -> None:
        """Resume: start from the rows a checkpoint holds (the CSV may have one more)."""
        self.rows = []
        if self.path is not None:
            with self.path.open("w", newline="") as f:
                csv.DictWriter(f, HISTORY_FIELDS).writeheader()
        for row in rows:
            self.append(dict(row))


def soft_cross_entropy(label_smoothing: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy against one-hot (or soft) targets."""
    ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ce(logits, target.float())

    return loss


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move a batch to ``device`` (non-blocking: from pinned memory the copy overlaps the work);
    ``channels_last``: 4-d image batches in the layout the convolutions prefer."""
    if isinstance(batch, torch.Tensor):
        if channels_last and batch.dim() == 4:
            return batch.to(device, non_blocking=True, memory_format=torch.channels_last)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, list | tuple):  # a fused backbone's inputs: one batch per input
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch


def amp_dtype(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """The autocast dtype for ``device``: bfloat16 on a GPU that supports it (no loss scaling
    needed, unlike float16), None (full float32) on the CPU, an older GPU, or with ``amp`` off."""
    if not amp or device.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else None


def autocast(device: torch.device, amp: bool = True) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on a capable GPU (:func:`amp_dtype`), else a context that changes nothing."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def inference_batch_size(device: torch.device, default: int) -> int:
    """A batch size for extraction and prediction on ``device`` when the user chose none: ``default``
    on the CPU (larger batches do not run faster there), larger on a GPU, by its memory (a batch of
    256 MiniLM or EfficientNet-Lite0 inputs without gradients needs well under 8 GiB)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return default
    gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    return max(default, 256 if gib >= 16 else 128 if gib >= 8 else default)


def is_convolutional(model: nn.Module) -> bool:
    """Whether ``model`` convolves images (channels_last pays there and nowhere else)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _batch_size(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return len(x)
    if isinstance(x, dict):
        return len(next(iter(x.values())))
    return len(x)


BatchLoss = Callable[[FitState, Any], "tuple[torch.Tensor, int, torch.Tensor | int] | None"]


class Trainer:
    """The one training loop (:meth:`fit`) and the evaluation of a classifier (:meth:`evaluate`).

    ``fit`` runs epochs of optimizer steps and calls its callbacks' named events
    (``tlzoo.engine.loop.events``); everything else, from resume to checkpoints, is a callback
    (``tlzoo.engine.loop.callbacks``).  ``run_phase`` trains one phase of a strategy's plan with
    them; ``tl lr-find``'s sweep and the language-model loop of ``tlzoo.lib.text.lm`` use ``fit``
    with callbacks of their own."""

    def __init__(
        self,
        *,
        device: torch.device,
        loss: Callable,
        history: History,
        weight_decay: float = 0.01,
        progress: bool = True,
        log: Callable[[str], None] = print,
        amp: bool = True,
        channels_last: bool | None = None,
    ) -> None:
        """``amp``: bf16 autocast where the device supports it (:func:`amp_dtype`: a GPU, never the
        CPU); ``channels_last``: image batches and convolution weights in NHWC while training
        (None: for every model with a Conv2d; EfficientNet-Lite0's forward and backward at 224 px
        on 2 CPU threads measured 14-21 s per batch of 32 against 45-60 s in NCHW)."""
        self.device, self.loss, self.history = device, loss, history
        self.weight_decay, self.progress, self.log = weight_decay, progress, log
        self.amp = amp
        self.channels_last = channels_last

    def _channels_last(self, model: nn.Module) -> bool:
        if self.channels_last is not None:
            return self.channels_last
        return is_convolutional(model)

    def run_phase(
        self,
        model: nn.Module,
        phase: Phase,
        param_groups: list[dict[str, Any]],
        train_loader: Iterable,
        val_loader: Iterable | None,
        on_train: Callable[[], None] | None = None,
        keep_best: bool = True,
        *,
        phase_index: int = 0,
        checkpoint: Checkpointer | None = None,
        resume: dict[str, Any] | None = None,
        patience: int = 0,
    ) -> None:
        """Train ``model`` for ``phase.epochs``; keep the weights of the best validation loss.

        With ``checkpoint``, every epoch ends with a checkpoint; ``resume`` (a loaded
        checkpoint of this phase) continues after its epoch with every state restored.
        ``patience`` > 0 stops the phase after that many epochs without a better val loss.
        In a process group, ``train_loader`` is replaced by this rank's share of it and
        ``model`` trains under DDP (``model`` itself is what is saved and restored).
        A loss that stops being finite ends the run with a TlzooError suggesting a lower rate.
        """
        steps = max(1, phase.epochs * len(train_loader))  # type: ignore[arg-type]
        schedule = lr_schedule(phase.schedule, steps, int(steps * phase.warmup_fraction))
        option = phase.lr_flag or ("--lr" if phase.train_groups == 0 else "--finetune-lr")  # for a divergence
        callbacks: list[Callback] = [Resume(resume)] if resume is not None else []
        callbacks += [DistributedData()] if distributed.active() else []
        callbacks += [EarlyStopping(patience)] if patience else []
        callbacks += [OnTrain(on_train)] if on_train else []
        callbacks += [ProgressBar(self.progress)]  # (also when off: see ProgressBar)
        callbacks += [BestWeights()] if keep_best else []
        callbacks += [DivergenceGuard(option, checkpoint), EpochLog(self.history)]
        callbacks += [Checkpoint(checkpoint, phase_index, self.history)] if checkpoint is not None else []
        self.fit(
            model,
            param_groups,
            train_loader,
            epochs=phase.epochs,
            name=phase.name,
            val_loader=val_loader,
            schedule=schedule,
            callbacks=callbacks,
        )

    def fit(
        self,
        model: nn.Module,
        param_groups: list[dict[str, Any]],
        train_loader: Iterable,
        *,
        epochs: int,
        name: str = "train",
        val_loader: Iterable | None = None,
        schedule: Callable[[int], float] | None = None,
        callbacks: Sequence[Callback] = (),
        batch_loss: BatchLoss | None = None,
        evaluate: Callable[[nn.Module, Iterable], tuple[float, float]] | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> FitState:
        """Train ``model`` for ``epochs`` with AdamW over ``param_groups``; return the final state.

        ``schedule``: a multiplier of each group's rate per optimizer step (LambdaLR), None for
        rates a callback sets.  ``batch_loss(state, batch)``: (mean loss, examples it is the mean
        over, correct predictions), or None to skip the batch; by default a classifier's
        (``(x, y)`` batches, one-hot ``y``, the trainer's loss under autocast).  ``evaluate(model,
        val_loader)``: (loss, accuracy), by default :meth:`evaluate`.  Each epoch's row (phase,
        epoch, train_loss, train_accuracy, lr, val_loss, val_accuracy, seconds) is ``state.row``.
        """
        nhwc = self._channels_last(model)
        model.to(self.device)
        if nhwc:
            model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(param_groups, weight_decay=self.weight_decay, betas=betas)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule) if schedule is not None else None
        state = FitState(model, opt, sched, train_loader, val_loader, name, epochs, self.device, self.log)
        state.batch_loss = batch_loss or functools.partial(self._classify, nhwc)
        events = _Events(callbacks)
        try:
            events("on_fit_begin", state)
            state.epochs_done = state.first_epoch - 1
            for epoch in range(state.first_epoch, epochs + 1):
                state.epoch = epoch
                self._epoch(state, events, evaluate or self.evaluate)
                state.epochs_done = epoch
        except StopFit:
            pass
        except BaseException as exc:
            state.error = exc
            raise
        finally:
            if nhwc:  # back to the usual layout for whatever reads the weights next (export, hashing)
                model.to(memory_format=torch.contiguous_format)
            events("on_fit_end", state)
        return state

    def _epoch(self, state: FitState, events: _Events, evaluate: Callable) -> None:
        """One epoch: the optimizer steps, the sums, the row (validation included) and its events."""
        state.epoch_batches = state.train_loader
        events("on_epoch_begin", state)
        state.started = time.perf_counter()
        state.forward.train()
        events("on_train_begin", state)
        # running sums stay on the device: no host sync per step (one at the end of the epoch);
        # float64 as Python floats were, so the history rows come out the same
        state.seen = 0
        state.sum_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        state.sum_correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for index, batch in enumerate(state.epoch_batches, 1):
            state.batch_index = index
            events("on_batch_begin", state)
            out = state.batch_loss(state, batch)  # type: ignore[misc]
            if out is None:
                continue
            state.loss, state.n, correct = out
            state.scaled_loss = state.loss
            events("on_loss", state)
            state.optimizer.zero_grad(set_to_none=True)
            state.scaled_loss.backward()
            events("on_backward", state)
            state.optimizer.step()
            if state.scheduler is not None:
                state.scheduler.step()
            state.step += 1
            if state.n:  # (a rank without rows in a batch smaller than the group trained on a stand-in)
                state.seen += state.n
                state.sum_loss += state.loss.detach().double() * state.n
                state.sum_correct += correct
            events("on_batch_end", state)
        total, seen, correct = float(state.sum_loss), state.seen, int(state.sum_correct)
        if state.reduce is not None:  # the whole batch's sums, on every rank
            total, seen_f, correct_f = state.reduce([total, seen, correct])
            seen, correct = int(seen_f), int(correct_f)
        state.train_loss = total / max(1, seen)
        state.row = {
            "phase": state.name,
            "epoch": state.epoch,
            "train_loss": round(state.train_loss, 5),
            "train_accuracy": round(correct / max(1, seen), 5),
            "lr": f"{state.optimizer.param_groups[0]['lr']:.3g}",
        }
        state.seen, state.val_loss = seen, None
        if state.val_loader is not None:
            state.val_loss, va = evaluate(state.model, state.val_loader)
            state.row.update(val_loss=round(state.val_loss, 5), val_accuracy=round(va, 5))
        events("on_validate", state)
        state.row["seconds"] = round(time.perf_counter() - state.started, 2)
        events("on_epoch_end", state)

    def _classify(self, nhwc: bool, state: FitState, batch: Any) -> tuple[torch.Tensor, int, torch.Tensor]:
        """A classifier's batch: logits under autocast, the trainer's loss, one-hot targets."""
        x, y = batch
        x, y = to_device(x, self.device, nhwc), y.to(self.device, non_blocking=True)
        with autocast(self.device, self.amp):
            logits = state.forward(x)
            loss = self.loss(logits, y)
        return loss, _batch_size(y), _correct(logits, y)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, loader: Iterable) -> tuple[float, float]:
        """Mean loss and accuracy over ``loader``; in a process group each rank takes every
        N-th example and the sums are all-reduced (so call it on every rank)."""
        model.eval()
        seen = 0
        sharded = distributed.active()
        if sharded:
            loader = distributed.eval_loader(loader)  # type: ignore[arg-type]
        nhwc = self._channels_last(model)
        sum_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        sum_correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for x, y in loader:
            x, y = to_device(x, self.device, nhwc), y.to(self.device, non_blocking=True)
            with autocast(self.device, self.amp):
                logits = model(x)
                loss = self.loss(logits, y)
            n = _batch_size(y)
            sum_loss += loss.double() * n
            sum_correct += _correct(logits, y)
            seen += n
        total, correct = float(sum_loss), int(sum_correct)
        if sharded:
            total, seen_f, correct_f = distributed.sum_all([total, seen, correct])
            seen, correct = int(seen_f), int(correct_f)
        return total / max(1, seen), correct / max(1, seen)


class _Events:
    """Calls an event's method on every callback, in order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def __call__(self, event: str, state: FitState) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(state)


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct predictions against one-hot (or soft) targets, or class indices."""
    return (logits.argmax(1) == (y.argmax(1) if y.dim() > 1 else y)).sum()


def lr_schedule(kind: str, steps: int, warm: int) -> Callable[[int], float]:
    """A multiplier of the base learning rate for each optimizer step."""
    if kind == "constant":
        return lambda step: min(1.0, (step + 1) / warm) if warm else 1.0
    if kind == "slanted":  # ULMFiT's slanted triangular rates: short rise, long linear fall
        cut = max(1, int(steps * 0.1))
        ratio = 32.0

        def stlr(step: int) -> float:
            p = step / cut if step < cut else 1 - (step - cut) / max(1, steps - cut)
            return (1 + p * (ratio - 1)) / ratio

        return stlr
    if kind == "onecycle":  # rise to the peak over 30 %, cosine down to 1/250 of it
        peak = max(1, int(steps * 0.3))

        def one(step: int) -> float:
            if step < peak:
                return 0.04 + 0.96 * 0.5 * (1 - math.cos(math.pi * step / peak))
            t = (step - peak) / max(1, steps - peak)
            return 0.004 + 0.996 * 0.5 * (1 + math.cos(math.pi * t))

        return one
    if kind != "cosine":
        from tlzoo.api.errors import TlzooError

        raise TlzooError(f"Unknown learning-rate schedule '{kind}'; use cosine, slanted, onecycle or constant.")

    def cosine(step: int) -> float:  # linear warm-up, then cosine decay to 10 %
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, steps - warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    return cosine


@torch.inference_mode()
def predict_logits(model: nn.Module, loader: Iterable, device: torch.device, amp: bool = True) -> torch.Tensor:
    """Logits for every batch of ``loader`` (bf16 autocast on a capable GPU unless ``amp`` is off)."""
    model.eval().to(device)
    out = []
    with autocast(device, amp):
        for x in loader:
            out.append(model(to_device(x, device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def param_groups(model: TransferModel, live: list[nn.Module], phase: Phase) -> list[dict[str, Any]]:
    """Head and top group at ``phase.lr``; each group below gets ``lr_decay`` times less."""
    groups = [{"params": [p for p in model.head.parameters() if p.requires_grad], "lr": phase.lr}]
    for depth, g in enumerate(reversed(live)):
        ps = [p for p in g.parameters() if p.requires_grad]
        if ps:
            groups.append({"params": ps, "lr": phase.lr * phase.lr_decay**depth})
    return [g for g in groups if g["params"]]
