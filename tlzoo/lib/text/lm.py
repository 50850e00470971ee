"""The language-model training loop: pretraining and language-model fine-tuning of tlzoo's own text models.

* ``LanguageModelTask``: one model's recipe: the module, how texts become batches, the
  loss of a batch (and the gradient clipping it wants);
* ``run_language_model``: a task trained on texts (and checked on held-out texts),
  used by ``tl pretrain`` and by ``--strategy ulmfit``'s language-model fine-tuning;
* ``train_language_model``: the epoch loop itself: AdamW with a slanted triangular
  schedule, progress lines, one row per epoch (loss, perplexity, accuracy, held-out);
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

from tlzoo.core.errors import TlzooError

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
LossFn = Callable[[Batch], tuple[torch.Tensor, int, int]]  # (mean loss, tokens, correct predictions)


def train_language_model(model: nn.Module, loss_fn: LossFn, batches: Callable[[int], list[Batch]],
                         val_batches: list[Batch], *, epochs: int, lr: float, log: Callable[[str], None],
                         label: str, clip: float = 0.5, weight_decay: float = 0.01,
                         params: list[dict[str, Any]] | None = None,
                         on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Adam with a slanted triangular schedule; one row per epoch (loss, perplexity, accuracy)."""
    from tlzoo.core.training import lr_schedule

    first = batches(0)
    steps = max(1, epochs * len(first))
    opt = torch.optim.AdamW(params or [p for p in model.parameters() if p.requires_grad], lr=lr,
                            betas=(0.8, 0.99), weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule("slanted", steps, 0))
    rows: list[dict[str, Any]] = []
    step = 0
    for epoch in range(1, epochs + 1):
        data = first if epoch == 1 else batches(epoch - 1)
        model.train()
        start = last = time.perf_counter()
        tot = toks = hits = 0
        for i, batch in enumerate(data, 1):
            loss, n, correct = loss_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
            opt.step()
            sched.step()
            step += 1
            tot += float(loss.detach()) * n
            toks += n
            hits += correct
            if time.perf_counter() - last > 20 or i == len(data):  # a progress line every ~20 s
                last = time.perf_counter()
                rate = toks / max(1e-9, last - start)
                log(f"  {label} epoch {epoch}/{epochs} batch {i}/{len(data)}: loss {tot / toks:.3f} "
                    f"(perplexity {math.exp(min(20.0, tot / toks)):.1f}), {rate:,.0f} tokens/s")
        row: dict[str, Any] = {"phase": label, "epoch": epoch, "train_loss": round(tot / max(1, toks), 5),
                               "train_accuracy": round(hits / max(1, toks), 5),
                               "train_perplexity": round(math.exp(min(20.0, tot / max(1, toks))), 3),
                               "lr": f"{opt.param_groups[0]['lr']:.3g}", "tokens": toks}
        if val_batches:
            vl, va = evaluate_language_model(model, loss_fn, val_batches)
            row.update(val_loss=round(vl, 5), val_accuracy=round(va, 5), val_perplexity=round(math.exp(min(20.0, vl)), 3))
        row["seconds"] = round(time.perf_counter() - start, 2)
        rows.append(row)
        log(f"  {label} epoch {epoch}/{epochs}: train perplexity {row['train_perplexity']:.1f}"
            + (f", validation perplexity {row['val_perplexity']:.1f}" if "val_perplexity" in row else "")
            + f" ({row['seconds']:.0f}s)")
        if on_epoch:
            on_epoch(row)
    model.eval()
    return rows


@torch.no_grad()
def evaluate_language_model(model: nn.Module, loss_fn: LossFn, batches: list[Batch]) -> tuple[float, float]:
    model.eval()
    tot = toks = hits = 0
    for batch in batches:
        loss, n, correct = loss_fn(batch)
        tot += float(loss) * n
        toks += n
        hits += correct
    return tot / max(1, toks), hits / max(1, toks)


@dataclass
class LanguageModelTask:
    """How one language model learns: the module, ``batches(texts, seed)`` and ``loss(batch)``."""

    model: nn.Module
    batches: Callable[[list[str], int], list[Batch]]
    loss: LossFn
    clip: float = 0.5


def run_language_model(task: LanguageModelTask, texts: list[str], val_texts: list[str], *, epochs: int, lr: float,
                       seed: int, device: torch.device, log: Callable[[str], None], label: str,
                       on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train ``task`` on ``texts`` for ``epochs`` (batches reshuffled each epoch), reporting on ``val_texts``."""
    task.model.to(device)
    val = task.batches(val_texts, seed) if val_texts else []
    return train_language_model(task.model, task.loss, lambda e: task.batches(texts, seed + e), val,
                                epochs=epochs, lr=lr, log=log, label=label, clip=task.clip, on_epoch=on_epoch)
