"""The language-model training loop: pretraining and language-model fine-tuning of tlzoo's own text models.

* ``LanguageModelTask``: one model's recipe: the module, how texts become batches, the
  loss of a batch (and the gradient clipping it wants);
* ``run_language_model``: a task trained on texts (and checked on held-out texts),
  used by ``tl pretrain`` and by ``--strategy ulmfit``'s language-model fine-tuning;
* ``train_language_model``: the epoch loop itself: AdamW with a slanted triangular (or
  BERT's warm-up / decay) schedule, progress lines, one row per epoch (loss, perplexity,
  accuracy, held-out);
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
    batches and on ``val_batches``, the learning rate reached, tokens and seconds.
    """
    first = batches(0)
    steps = max(1, epochs * len(first))
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, betas=betas, weight_decay=weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule(steps))
    rows: list[dict[str, Any]] = []
    step = 0
    for epoch in range(1, epochs + 1):
        data = first if epoch == 1 else batches(epoch - 1)
        model.train()
        start = last = time.perf_counter()
        tot, toks, hits = 0.0, 0, 0
        for i, batch in enumerate(data, 1):
            result = loss_fn(batch)
            if result is None:
                continue
            loss, n, correct = result
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
            opt.step()
            sched.step()
            step += 1
            tot += float(loss.detach()) * n
            toks += n
            hits += correct
            if toks and (time.perf_counter() - last > 20 or i == len(data)):  # a progress line every ~20 s
                last = time.perf_counter()
                rate = toks / max(1e-9, last - start)
                log(
                    f"  {label} epoch {epoch}/{epochs} batch {i}/{len(data)}: loss {tot / toks:.3f} "
                    f"(perplexity {math.exp(min(20.0, tot / toks)):.1f}), {rate:,.0f} tokens/s"
                )
        row: dict[str, Any] = {
            "phase": label,
            "epoch": epoch,
            "train_loss": round(tot / max(1, toks), 5),
            "train_accuracy": round(hits / max(1, toks), 5),
            "train_perplexity": round(math.exp(min(20.0, tot / max(1, toks))), 3),
            "lr": f"{opt.param_groups[0]['lr']:.3g}",
            "tokens": toks,
        }
        if val_batches:
            vl, va = evaluate_language_model(model, loss_fn, val_batches)
            row.update(
                val_loss=round(vl, 5), val_accuracy=round(va, 5), val_perplexity=round(math.exp(min(20.0, vl)), 3)
            )
        row["seconds"] = round(time.perf_counter() - start, 2)
        rows.append(row)
        log(
            f"  {label} epoch {epoch}/{epochs}: train perplexity {row['train_perplexity']:.1f}"
            + (f", validation perplexity {row['val_perplexity']:.1f}" if "val_perplexity" in row else "")
            + f" ({row['seconds']:.0f}s)"
        )
        if on_epoch:
            on_epoch(row)
    model.eval()
    return rows


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
