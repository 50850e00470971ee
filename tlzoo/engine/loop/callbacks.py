"""The callbacks a training phase is made of (``Trainer.run_phase`` assembles them in this order):
resume, DistributedDataParallel, frozen layers in eval mode, early stopping, the progress bar,
best weights, the divergence guard, the epoch log and the per-epoch checkpoint; and gradient
clipping, which the language-model loop adds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.engine import distributed
from tlzoo.engine.checkpoint import Checkpointer, gather_rng_states, rank_rng_state, set_rng_state, state_dict_copy
from tlzoo.engine.loop.events import Callback, FitState, StopFit


def _generator(state: FitState) -> torch.Generator | None:
    return getattr(state.train_loader, "generator", None)  # the shuffling order's source


class Resume(Callback):
    """Continue after the epoch a loaded checkpoint of this phase holds, with every state restored
    (weights, optimizer, scheduler, best weights, the shuffling generator and this rank's RNGs)."""

    def __init__(self, checkpoint: dict[str, Any]) -> None:
        self.checkpoint = checkpoint

    def on_fit_begin(self, state: FitState) -> None:
        c = self.checkpoint
        state.model.load_state_dict(c["model"])
        state.optimizer.load_state_dict(c["optimizer"])
        if state.scheduler is not None:
            state.scheduler.load_state_dict(c["scheduler"])
        state.best = c["best"]
        generator = _generator(state)
        if generator is not None and c.get("generator") is not None:
            generator.set_state(c["generator"])
        set_rng_state(rank_rng_state(c))
        state.first_epoch = c["epoch"] + 1
        state.log(f"  resumed {state.name} after epoch {c['epoch']}/{state.epochs}")


class DistributedData(Callback):
    """Under torchrun: this rank's piece of every batch, the model under DDP, each piece's loss weighed
    by its share of the whole batch (so the averaged gradients are the whole batch's), sums all-reduced."""

    def on_fit_begin(self, state: FitState) -> None:
        state.train_loader = distributed.shard_loader(state.train_loader)  # type: ignore[arg-type]
        self.share = state.train_loader.tlzoo_share  # type: ignore[attr-defined]
        state.net = distributed.wrap(state.model, state.device)  # the same weights
        state.reduce = distributed.sum_all

    def on_loss(self, state: FitState) -> None:
        assert state.loss is not None
        weight, state.n = self.share.weight()  # a rank without rows in a small batch trains on a stand-in
        state.scaled_loss = state.loss * weight


class OnTrain(Callback):
    """Call ``fn`` after ``model.train()`` each epoch (``frozen_to_eval``: frozen groups stay in eval mode)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def on_train_begin(self, state: FitState) -> None:
        self.fn()


class BestWeights(Callback):
    """Keep a copy of the weights of the best validation loss; put them back when the fit ends."""

    def on_validate(self, state: FitState) -> None:
        vl = state.val_loss
        if vl is not None and (state.best is None or vl < state.best["loss"]):
            state.best = {"loss": vl, "epoch": state.epoch, "state": state_dict_copy(state.model)}

    def on_fit_end(self, state: FitState) -> None:
        best = state.best
        if best is None or state.error is not None:
            return
        state.model.load_state_dict(best["state"])
        if best["epoch"] != state.epochs_done:
            state.log(f"  {state.name}: restored the best weights (epoch {best['epoch']}, val loss {best['loss']:.4f})")


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without a better validation loss than the best so far."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_epoch_begin(self, state: FitState) -> None:
        best, patience = state.best, self.patience
        if best is not None and patience and state.epoch - best["epoch"] > patience:
            state.log(
                f"  {state.name}: early stop, no better val loss in {patience} epoch{'s' * (patience != 1)} "
                f"(best at epoch {best['epoch']})"
            )
            raise StopFit


class ProgressBar(Callback):
    """A tqdm bar over each epoch's batches, with the running loss (a host sync only when shown).

    The bar counts the batches the loop takes from its one iterator of the loader (``total`` is the
    loader's length, :meth:`on_batch_begin` advances it).  It used to wrap the loader, and tqdm.auto
    starts an iterator of what it wraps when it is made, then drops it: two iterators per epoch
    (with ``--num-workers N``, two sets of worker processes).  That dropped iterator drew from
    the loader's generator, and every seeded order since was drawn after it, so
    :func:`draw_as_a_dropped_iterator` makes the same draws without the iterator: seeded runs train
    on the same batches as before.  ``run_phase`` adds the bar even with ``show`` off, for the draws."""

    def __init__(self, show: bool = True) -> None:
        self.show = show
        self.bar: Any = None

    def on_epoch_begin(self, state: FitState) -> None:
        from tqdm.auto import tqdm

        draw_as_a_dropped_iterator(state.epoch_batches)
        try:
            total: int | None = len(state.epoch_batches)  # type: ignore[arg-type]
        except TypeError:
            total = None
        self.bar = tqdm(
            total=total,
            desc=f"{state.name} {state.epoch}/{state.epochs}",
            unit="batch",
            leave=False,
            disable=None if self.show else True,
            mininterval=1.0,
        )
        self.shown = time.monotonic()

    def on_batch_begin(self, state: FitState) -> None:
        self.bar.update(1)  # as tqdm counted when it wrapped the loader: each batch taken, skipped ones too

    def on_batch_end(self, state: FitState) -> None:
        if state.n and not self.bar.disable and time.monotonic() - self.shown >= 1.0:
            assert state.sum_loss is not None
            self.shown = time.monotonic()
            self.bar.set_postfix(loss=f"{float(state.sum_loss) / state.seen:.3f}")

    def on_epoch_end(self, state: FitState) -> None:
        self.bar.close()

    def on_fit_end(self, state: FitState) -> None:
        if self.bar is not None:  # an error or a stop mid-epoch: the bar goes too
            self.bar.close()


def draw_as_a_dropped_iterator(batches: Any) -> None:
    """Draw what starting (and dropping) an iterator of ``batches`` drew, without starting one.

    A torch ``DataLoader`` draws its iterator's base seed from its generator (the global one when it
    has none); with worker processes, the iterator also takes ``prefetch_factor x num_workers``
    batches of indices from the sampler at once (a shuffling sampler draws its order then).  Other
    iterables, and loaders that keep their workers (whose iterator is reused), get an iterator made
    and dropped, as before."""
    from torch.utils.data import DataLoader, IterableDataset

    keeps = getattr(batches, "persistent_workers", False) and getattr(batches, "num_workers", 0) > 0
    if not isinstance(batches, DataLoader) or keeps or isinstance(batches.dataset, IterableDataset):
        iter(batches)
        return
    torch.empty((), dtype=torch.int64).random_(generator=batches.generator)  # _BaseDataLoaderIter's base seed
    if batches.num_workers > 0:
        indices = iter(batches._index_sampler)
        for _ in range(int(batches.prefetch_factor or 2) * batches.num_workers):
            if next(indices, None) is None:
                break


class DivergenceGuard(Callback):
    """A non-finite loss after an epoch stops the run in one line that suggests a lower rate, before
    anything is saved; an earlier epoch's checkpoint goes too (resuming would diverge again)."""

    def __init__(self, option: str, checkpoint: Checkpointer | None = None) -> None:
        self.option, self.checkpoint = option, checkpoint

    def on_epoch_end(self, state: FitState) -> None:
        losses = {"training": state.train_loss, "validation": state.val_loss}
        bad = {k: v for k, v in losses.items() if v is not None and not math.isfinite(v)}
        if not bad:
            return
        if self.checkpoint is not None:
            self.checkpoint.remove()
        which, value = next(iter(bad.items()))
        lr = float(state.optimizer.param_groups[0]["lr"])
        raise TlzooError(
            f"Training diverged: the {which} loss is {value} after {state.name} epoch {state.epoch} "
            f"(learning rate {lr:.3g}); lower {self.option} (10x or more), or let `tl lr-find` suggest one."
        )


class EpochLog(Callback):
    """Append the epoch's row to the history (``history.csv``) and log it."""

    def __init__(self, history: Any) -> None:
        self.history = history

    def on_epoch_end(self, state: FitState) -> None:
        row = state.row
        self.history.append(row)
        state.log(
            f"  {state.name} epoch {state.epoch}/{state.epochs}: loss {row['train_loss']:.4f} "
            f"acc {row['train_accuracy']:.3f}"
            + (f" | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f}" if "val_loss" in row else "")
        )


class Checkpoint(Callback):
    """End every epoch with ``checkpoint.pt`` (rank 0 writes it, with every rank's RNG states)."""

    def __init__(self, checkpointer: Checkpointer, phase_index: int, history: Any) -> None:
        self.checkpointer, self.phase_index, self.history = checkpointer, phase_index, history

    def on_epoch_end(self, state: FitState) -> None:
        ranks = gather_rng_states()  # every rank takes part; rank 0 gets the list
        if not distributed.is_main():
            return
        generator = _generator(state)
        self.checkpointer.save(
            {
                "phase_index": self.phase_index,
                "phase": state.name,
                "epoch": state.epoch,
                "model": state_dict_copy(state.model),
                "optimizer": state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
                "best": state.best,
                "generator": generator.get_state() if generator is not None else None,
                "history": list(self.history.rows),
            },
            rank_rngs=ranks,
        )


class GradientClip(Callback):
    """Clip the gradient norm of every parameter the optimizer updates to ``max_norm``."""

    def __init__(self, max_norm: float) -> None:
        self.max_norm = max_norm

    def on_backward(self, state: FitState) -> None:
        params: list[nn.Parameter] = [p for g in state.optimizer.param_groups for p in g["params"]]
        nn.utils.clip_grad_norm_(params, self.max_norm)
