"""The language-model training loop: pretraining and language-model fine-tuning of tlzoo's own text models.

* ``LanguageModelTask``: one model's recipe: the module, how texts become batches, the
  loss of a batch (and the gradient clipping it wants);
* ``run_language_model``: a task trained on texts (and checked on held-out texts),
  used by ``tl pretrain`` and by ``--strategy ulmfit``'s language-model fine-tuning;
* ``train_language_model``: the epochs, on the engine's one training loop
  (``Trainer.fit``): AdamW with a slanted triangular (or BERT's warm-up / decay) schedule,
  gradient clipping, progress lines, one row per epoch (loss, perplexity, accuracy, held-out);
* ``split_corpus``: the seeded held-out share of a pretraining corpus; ``seed_all``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.engine.loop.events import Callback, FitState


def split_corpus(corpus: list[str], seed: int, val_share: float = 0.05) -> tuple[list[str], list[str]]:
    """A small held-out share of the corpus to report validation perplexity on."""
    texts = [t for t in corpus if t and t.strip()]
    if len(texts) < 2:
        raise TlzooError("The pretraining corpus has fewer than 2 non-empty texts; pass a bigger --corpus.")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(texts), generator=g).tolist()
    n_val = max(1, int(len(texts) * val_share))
    return [texts[i] for i in order[n_val:]], [texts[i] for i in order[:n_val]]


def seed_all(seed: int) -> None:
    import random

    random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- training loop
Batch = Any
# (mean loss, tokens it is the mean over, correct predictions), or None for a batch with nothing to predict
LossFn = Callable[[Batch], "tuple[torch.Tensor, int, int] | None"]
Schedule = Callable[[int], Callable[[int], float]]  # total steps -> (step -> multiplier of the learning rate)


def slanted_triangular(steps: int) -> Callable[[int], float]:
    """ULMFiT's slanted triangular rates: a short linear rise, a long linear fall."""
    from tlzoo.engine.training import lr_schedule

    return lr_schedule("slanted", steps, 0)


def linear_warmup_decay(warmup: float) -> Schedule:
    """BERT's rates: a linear rise over the first ``warmup`` share of the steps, then a linear fall to 0."""

    def schedule(steps: int) -> Callable[[int], float]:
        warm = max(1, int(steps * warmup))
        return lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm))

    return schedule


def train_language_model(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Callable[[int], list[Batch]],
    val_batches: list[Batch],
    *,
    epochs: int,
    lr: float,
    log: Callable[[str], None],
    label: str,
    clip: float = 0.5,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.8, 0.99),
    schedule: Schedule = slanted_triangular,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """AdamW over the trainable parameters, one ``schedule`` over all steps, gradients clipped to ``clip``.

    ``batches(epoch)`` gives an epoch's batches (epoch 0 first); a batch whose loss is None
    is skipped.  Returns one row per epoch: loss, perplexity and accuracy on the training
    batches and on ``val_batches``, the learning rate reached, tokens and seconds.  The loop is
    the engine's (:meth:`tlzoo.engine.training.Trainer.fit`) with :class:`LanguageModelEpochs`
    and gradient clipping as callbacks; float32, on the device the model is on.
    """
    from tlzoo.engine.loop.callbacks import GradientClip
    from tlzoo.engine.training import History, Trainer

    first = batches(0)
    steps = max(1, epochs * len(first))
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device if params else torch.device("cpu")
    trainer = Trainer(
        device=device,
        loss=_unused_loss,  # the task's loss_fn computes each batch's loss
        history=History(None),
        weight_decay=weight_decay,
        progress=False,
        log=log,
        amp=False,
        channels_last=False,
    )
    epochs_cb = LanguageModelEpochs(batches, log, on_epoch)
    trainer.fit(
        model,
        [{"params": params, "lr": lr}],
        first,
        epochs=epochs,
        name=label,
        val_loader=val_batches or None,
        schedule=schedule(steps),
        callbacks=[epochs_cb, GradientClip(clip)],
        batch_loss=lambda state, batch: loss_fn(batch),
        evaluate=lambda m, val: evaluate_language_model(m, loss_fn, list(val)),
        betas=betas,
    )
    model.eval()
    return epochs_cb.rows


def _unused_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    raise AssertionError("a language model's batches have their own loss function")


class LanguageModelEpochs(Callback):
    """A language model's epochs: reshuffled batches each epoch, a progress line about every 20 s,
    and rows with perplexity and tokens (``on_epoch`` sees each)."""

    def __init__(
        self,
        batches: Callable[[int], list[Batch]],
        log: Callable[[str], None],
        on_epoch: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.batches, self.log, self.on_epoch = batches, log, on_epoch
        self.rows: list[dict[str, Any]] = []

    def on_epoch_begin(self, state: FitState) -> None:
        if state.epoch > 1:
            state.epoch_batches = self.batches(state.epoch - 1)
        self.count = len(state.epoch_batches)  # type: ignore[arg-type]
        self.start = self.last = time.perf_counter()

    def on_batch_end(self, state: FitState) -> None:
        i, toks = state.batch_index, state.seen
        if toks and (time.perf_counter() - self.last > 20 or i == self.count):  # a progress line every ~20 s
            assert state.sum_loss is not None
            self.last = time.perf_counter()
            mean = float(state.sum_loss) / toks
            rate = toks / max(1e-9, self.last - self.start)
            self.log(
                f"  {state.name} epoch {state.epoch}/{state.epochs} batch {i}/{self.count}: loss {mean:.3f} "
                f"(perplexity {math.exp(min(20.0, mean)):.1f}), {rate:,.0f} tokens/s"
            )

    def on_epoch_end(self, state: FitState) -> None:
        r = state.row
        row: dict[str, Any] = {
            "phase": r["phase"],
            "epoch": r["epoch"],
            "train_loss": r["train_loss"],
            "train_accuracy": r["train_accuracy"],
            "train_perplexity": round(math.exp(min(20.0, state.train_loss)), 3),
            "lr": r["lr"],
            "tokens": state.seen,
        }
        if state.val_loss is not None:
            vl = state.val_loss
            row.update(val_loss=r["val_loss"], val_accuracy=r["val_accuracy"])
            row["val_perplexity"] = round(math.exp(min(20.0, vl)), 3)
        row["seconds"] = round(time.perf_counter() - self.start, 2)
        self.rows.append(row)
        self.log(
            f"  {state.name} epoch {state.epoch}/{state.epochs}: train perplexity {row['train_perplexity']:.1f}"
            + (f", validation perplexity {row['val_perplexity']:.1f}" if "val_perplexity" in row else "")
            + f" ({row['seconds']:.0f}s)"
        )
        if self.on_epoch:
            self.on_epoch(row)


@torch.no_grad()
def evaluate_language_model(model: nn.Module, loss_fn: LossFn, batches: list[Batch]) -> tuple[float, float]:
    model.eval()
    tot, toks, hits = 0.0, 0, 0
    for batch in batches:
        result = loss_fn(batch)
        if result is None:
            continue
        loss, n, correct = result
        tot += float(loss) * n
        toks += n
        hits += correct
    return tot / max(1, toks), hits / max(1, toks)


@dataclass
class LanguageModelTask:
    """How one language model learns: the module, ``batches(texts, seed)`` and ``loss(batch)``, and the
    optimizer settings of its recipe (AWD-LSTM's by default; the MLM transformer uses BERT's)."""

    model: nn.Module
    batches: Callable[[list[str], int], list[Batch]]
    loss: LossFn
    clip: float = 0.5
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    schedule: Schedule = slanted_triangular


def run_language_model(
    task: LanguageModelTask,
    texts: list[str],
    val_texts: list[str],
    *,
    epochs: int,
    lr: float,
    seed: int,
    device: torch.device,
    log: Callable[[str], None],
    label: str,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``task`` on ``texts`` for ``epochs`` (batches reshuffled each epoch), reporting on ``val_texts``."""
    task.model.to(device)
    val = task.batches(val_texts, seed) if val_texts else []
    return train_language_model(
        task.model,
        task.loss,
        lambda e: task.batches(texts, seed + e),
        val,
        epochs=epochs,
        lr=lr,
        log=log,
        label=label,
        clip=task.clip,
        weight_decay=task.weight_decay,
        betas=task.betas,
        schedule=task.schedule,
        on_epoch=on_epoch,
    )
