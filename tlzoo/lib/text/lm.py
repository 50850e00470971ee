"""What the two LSTM language-model plugins (``elmo``, ``ulmfit``) share.

* The pretrained-weights folder: ``model.safetensors`` + ``vocab.json`` +
  ``description.json`` (+ ``pretraining_curve.png``), written by ``tl pretrain`` and read by
  ``tl run --weights DIR``; ``weights_folder`` finds it or says how to make one.
* ``train_language_model``: the epoch loop used by pretraining and by ULMFiT's
  language-model fine-tuning, with progress lines and a loss / perplexity curve.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlzoo.core.errors import TlzooError
from tlzoo.lib.text.vocab import HashedVocab, Vocab

FORMAT = "tlzoo-lstm-lm"


# --------------------------------------------------------------------------- weights folder
def weights_folder(plugin: str, weights: str | None, pretrained: bool, assets: str | None = None) -> Path | None:
    """The folder to load, None for random init, or a one-line error saying what to do.

    ``assets`` is a finished run's asset folder (``tl predict``): a copy of the pretrained
    folder kept there wins, so a run still predicts after its ``--weights`` folder moved."""
    if assets and pretrained and (Path(assets) / "pretrained" / "description.json").is_file():
        return Path(assets) / "pretrained"
    if weights:
        p = Path(weights)
        if not p.is_dir():
            raise TlzooError(f"--weights '{weights}' is not a folder; pass the --out folder of "
                             f"`tl pretrain --plugin {plugin} --corpus FILE --out DIR`.")
        return p
    if not pretrained:
        return None
    from tlzoo.core.features import tlzoo_home

    default = tlzoo_home() / "pretrained" / plugin
    if (default / "description.json").is_file():
        return default
    raise TlzooError(f"No pretrained {plugin} weights: no package ships them. Make them with `tl pretrain --plugin "
                     f"{plugin} --corpus FILE|DIR --out DIR` and pass --weights DIR, or train from scratch with "
                     "--no-pretrained.")


def read_weights(folder: Path, plugin: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], Vocab]:
    """(description, tensors, vocabulary) of a folder written by ``save_weights``."""
    from safetensors.torch import load_file

    desc_path = folder / "description.json"
    if not desc_path.is_file() or not (folder / "model.safetensors").is_file():
        raise TlzooError(f"'{folder}' holds no pretrained {plugin} weights (description.json + model.safetensors); "
                         f"make them with `tl pretrain --plugin {plugin} --corpus FILE --out {folder}`.")
    desc = json.loads(desc_path.read_text("utf-8"))
    if desc.get("format") != FORMAT or desc.get("plugin") != plugin:
        raise TlzooError(f"'{folder}' holds weights for '{desc.get('plugin', 'another model')}', not {plugin}; "
                         f"pass a folder from `tl pretrain --plugin {plugin}`.")
    return desc, load_file(str(folder / "model.safetensors")), Vocab.load(folder / "vocab.json")


def save_weights(folder: Path, plugin: str, tensors: dict[str, torch.Tensor], vocab: HashedVocab,
                 config: dict[str, Any], summary: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from tlzoo.core import artifacts

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(folder / "model.safetensors"),
              metadata={"format": FORMAT, "plugin": plugin})
    vocab.save(folder)
    desc = {"format": FORMAT, "version": 1, "plugin": plugin, "config": config, "hash_buckets": vocab.buckets,
            "vocab_size": len(vocab.vocab), "tokenizer": "tlzoo.lib.text.vocab.tokenize (lower-cased words)",
            "summary": summary, "versions": artifacts.versions()}
    (folder / "description.json").write_text(json.dumps(desc, indent=2), "utf-8")


def split_corpus(corpus: list[str], seed: int, val_share: float = 0.05) -> tuple[list[str], list[str]]:
    """A small held-out share of the corpus to report validation perplexity on."""
    texts = [t for t in corpus if t and t.strip()]
    if len(texts) < 2:
        raise TlzooError("The pretraining corpus has fewer than 2 non-empty texts; pass a bigger --corpus.")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(texts), generator=g).tolist()
    n_val = max(1, int(len(texts) * val_share))
    return [texts[i] for i in order[n_val:]], [texts[i] for i in order[:n_val]]


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


def finish_pretraining(out: str, plugin: str, model: torch.nn.Module, vocab: HashedVocab, config: dict[str, Any],
                       rows: list[dict[str, Any]], texts: int, held_out: int, title: str) -> dict[str, Any]:
    """Summarise a language-model pretraining, save weights + vocabulary and draw its curve."""
    summary = {"epochs": config["epochs"], "train_perplexity": rows[-1]["train_perplexity"],
               "val_perplexity": rows[-1].get("val_perplexity"), "tokens_per_epoch": rows[-1]["tokens"],
               "texts": texts, "held_out_texts": held_out,
               "parameters": sum(p.numel() for p in model.parameters()),
               "seconds": round(sum(r["seconds"] for r in rows), 1), "history": rows}
    folder = Path(out)
    save_weights(folder, plugin, model.state_dict(), vocab, config, summary)
    plot_curve(rows, folder / "pretraining_curve.png", f"{title} · {texts:,} texts")
    return summary  # the engine writes its history to pretraining_history.csv


def plot_curve(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss and perplexity per epoch, training and held-out."""
    from tlzoo.core.plots import _plt

    plt = _plt()
    import matplotlib.ticker
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    ep = [r["epoch"] for r in rows]
    a.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    b.plot(ep, [r["train_perplexity"] for r in rows], "o-", label="train")
    if rows and "val_loss" in rows[0]:
        a.plot(ep, [r["val_loss"] for r in rows], "s-", label="held-out")
        b.plot(ep, [r["val_perplexity"] for r in rows], "s-", label="held-out")
    a.set(xlabel="epoch", ylabel="cross-entropy (nats / token)", title="loss")
    b.set(xlabel="epoch", ylabel="perplexity", title="perplexity")
    ppl = [r[k] for r in rows for k in ("train_perplexity", "val_perplexity") if k in r]
    if ppl and max(ppl) > 10 * min(ppl):  # log scale only when perplexity spans decades
        b.set_yscale("log")
        b.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    for ax in (a, b):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def seed_all(seed: int) -> None:
    import random

    random.seed(seed)
    torch.manual_seed(seed)


def copy_weights(src: Path | None, assets: str) -> None:
    """Keep a copy of the pretrained folder with a run (see ``weights_folder``)."""
    import shutil

    if src is None:
        return
    dst = Path(assets) / "pretrained"
    if dst.resolve() == src.resolve():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "vocab.json", "description.json"):
        shutil.copy2(src / name, dst / name)
