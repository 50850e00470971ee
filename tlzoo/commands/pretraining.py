"""Source-task pretraining: ``tl pretrain`` and ``tlzoo.pretrain()``.

The engine reads the corpus, seeds everything, hands the texts to the plugin's
:class:`~tlzoo.api.interfaces.Pretrainer`, and then completes the output folder:

* ``pretraining.json``: what was trained, on what, with which options, how long, and
  the pretrainer's summary (final loss, perplexity, vocabulary size ...);
* ``pretraining_history.csv`` and ``pretraining_curve.png`` from the summary's
  ``history`` (one row per epoch: ``epoch``, ``train_loss``, optionally ``val_loss``,
  ``train_perplexity``, ``val_perplexity``), unless the pretrainer wrote its own PNG;
  the summary's ``loss`` (a short description such as "masked-token cross-entropy")
  labels the loss axis.

The folder is written as ``<out>.incomplete`` and renamed only when complete, so a
crashed pretraining never leaves something that ``tl run --weights`` would accept.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import merge_options as merge_options  # its home is the contract; 0.2 name kept
from tlzoo.engine.corpus import CorpusOptions, read_corpus
from tlzoo.infra.lifecycle import RunLock

DESCRIPTION = "pretraining.json"
CURVE = "pretraining_curve.png"
HISTORY = "pretraining_history.csv"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pretrain(
    plugin: str,
    corpus: str | list[str],
    out: str | Path,
    options: dict[str, Any] | None = None,
    *,
    epochs: int | None = None,
    limit: int = 0,
    seed: int = 0,
    corpus_options: CorpusOptions | None = None,
    zoo: Any = None,
    log: Callable[[str], None] | None = _stderr,
) -> dict[str, Any]:
    """Pretrain ``plugin`` on ``corpus`` (a location or a list of texts) into folder ``out``.

    ``options`` go to the pretrainer as they are (``epochs`` and ``seed`` are added);
    returns the summary that is also written to ``out/pretraining.json``.
    """
    log = log or (lambda m: None)
    if zoo is None:
        from tlzoo.engine.zoo import Zoo

        zoo = Zoo()
    pretrainer = zoo.pretrainers.get(plugin)
    final = Path(out)
    _check_out(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with RunLock(final):  # a second `tl pretrain` on the same --out refuses at once instead of sharing the folder
        return _pretrain(pretrainer, plugin, corpus, final, zoo, options, epochs, limit, seed, corpus_options, log)


def _check_out(final: Path) -> None:
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise TlzooError(f"Output folder '{final}' already exists and is not empty; choose another --out or remove it.")


def _pretrain(
    pretrainer: Any,
    plugin: str,
    corpus: str | list[str],
    final: Path,
    zoo: Any,
    options: dict[str, Any] | None,
    epochs: int | None,
    limit: int | None,
    seed: int,
    corpus_options: CorpusOptions | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    _check_out(final)  # again under the lock: another process may have finished it meanwhile
    texts, where = _read_texts(corpus, limit, seed, corpus_options, zoo)
    opts = _pretrainer_options(options, epochs, seed)
    n_chars = sum(len(t) for t in texts)
    log(f"pretraining {plugin} on {len(texts):,} texts ({n_chars:,} characters) from {where}")
    _seed_everything(seed)
    tmp = final.with_name(final.name + ".incomplete")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if final.exists():
        final.rmdir()
    started = time.perf_counter()
    try:
        summary = pretrainer.pretrain(texts, str(tmp), opts, log) or {}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = round(time.perf_counter() - started, 2)
    history = list(summary.pop("history", []) or [])
    _write_curve(history, tmp, f"{plugin} pretraining on {Path(str(where)).name}", str(summary.get("loss") or "loss"))
    record = {
        "plugin": plugin,
        "corpus": str(where),
        "n_texts": len(texts),
        "n_characters": n_chars,
        "options": opts,
        "seconds": seconds,
        "summary": summary,
        "history": history,
        "versions": _versions(),
    }
    (tmp / DESCRIPTION).write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.rename(final)
    log(f"done in {seconds:.1f}s -> {final}  (use: tl run --plugin {plugin} --weights {final} ...)")
    return {"out": str(final), **record}


def _read_texts(
    corpus: str | list[str], limit: int | None, seed: int, corpus_options: CorpusOptions | None, zoo: Any
) -> tuple[list[str], str]:
    """The non-empty texts to pretrain on (at most ``limit``), and how to name where they came from."""
    if isinstance(corpus, str):
        copts = corpus_options or CorpusOptions()
        copts.limit, copts.seed = limit or copts.limit, seed
        return read_corpus(corpus, copts, zoo), corpus
    texts = [t for t in corpus if t and t.strip()]
    if limit and len(texts) > limit:
        texts = texts[:limit]
    if not texts:
        raise TlzooError("The corpus holds no text; give some non-empty texts.")
    return texts, f"<{len(texts)} texts>"


def _pretrainer_options(options: dict[str, Any] | None, epochs: int | None, seed: int) -> dict[str, Any]:
    """The pretrainer's options as given, with ``epochs`` (checked) and ``seed`` added."""
    opts = dict(options or {})
    if epochs is not None:
        if epochs < 1:
            raise TlzooError(f"--epochs must be at least 1, got {epochs}.")
        opts["epochs"] = epochs
    opts.setdefault("seed", seed)
    return opts


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _write_curve(history: list[dict[str, Any]], folder: Path, title: str, loss_name: str) -> None:
    """``pretraining_history.csv`` and, unless the pretrainer drew its own, ``pretraining_curve.png``."""
    if not history:
        return
    write_history(history, folder / HISTORY)
    if not (folder / CURVE).exists():
        plot_pretraining(history, folder / CURVE, title=title, loss_name=loss_name)


def _versions() -> dict[str, str]:
    import torch

    return {"torch": torch.__version__, "python": platform.python_version()}


def write_history(rows: list[dict[str, Any]], path: Path) -> None:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)


def plot_pretraining(rows: list[dict[str, Any]], path: Path, title: str = "", loss_name: str = "loss") -> None:
    """Loss per epoch (training, validation) and, where it is a token cross-entropy, perplexity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tlzoo.evaluation.plots import integer_ticks

    has_ppl = any(k.endswith("perplexity") for r in rows for k in r)
    fig, axes = plt.subplots(1, 2 if has_ppl else 1, figsize=(11 if has_ppl else 6, 4.2), squeeze=False)
    x = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    panels = [("loss", loss_name)] + ([("perplexity", "perplexity")] if has_ppl else [])
    for ax, (metric, label) in zip(axes[0], panels):
        for split, style in (("train", "-o"), ("val", "-s")):
            ys = [_num(r.get(f"{split}_{metric}")) for r in rows]
            if any(not math.isnan(y) for y in ys):
                ax.plot(x, ys, style, ms=4, label="training" if split == "train" else "held-out")
        ax.set_xlabel("epoch")
        integer_ticks(ax, x)
        ax.set_ylabel(label)
        ax.set_title(metric.capitalize())
        values = [v for r in rows for k, v in r.items() if k.endswith("perplexity") and not math.isnan(_num(v))]
        if metric == "perplexity" and values and max(map(float, values)) > 10 * max(1e-9, min(map(float, values))):
            ax.set_yscale("log")  # only when it spans a decade: log ticks over a narrow range read 2.2 x 10^2
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def read_description(folder: str | Path) -> dict[str, Any] | None:
    """The ``pretraining.json`` of a ``tl pretrain`` output folder, or None."""
    p = Path(folder) / DESCRIPTION
    return json.loads(p.read_text()) if p.is_file() else None
