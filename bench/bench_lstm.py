"""Pretraining vs scratch for the LSTM language models (elmo, ulmfit) on Rotten Tomatoes.

The labelled task is the text zoo's benchmark: built-in ``rotten-tomatoes`` data,
``--limit 3000`` (stratified, seed 0), split 70/15/15 by the runner.  The pretraining
corpus is every other snippet of the same file (not in those 3,000; labels ignored),
so no benchmark example, least of all a test one, is seen during pretraining.

For each model: ``tl pretrain`` on that corpus, then ``tl run --weights DIR``; and the
same run with ``--no-pretrained`` (random init, identical recipe).  Prints one
BENCHMARKS.md row per run and writes all figures to ``<out>/results.json``.

    .venv/bin/python bench/bench_lstm.py --models ulmfit,elmo --out /tmp/bench-lstm
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

# sizes chosen to fit a shared 2-core CPU: pretraining took ~11 (ulmfit) and ~23 (elmo) minutes there,
# each of the four runs ~12-14 minutes; the whole script about 75 minutes
PRETRAIN: dict[str, dict[str, Any]] = {
    "ulmfit": {"epochs": 2, "batch_size": 16, "bptt": 40, "lr": 5e-3, "max_vocab": 6000, "hash_buckets": 1024},
    "elmo": {"epochs": 2, "batch_size": 64, "lr": 2e-3, "max_vocab": 8000},
}
RUN: dict[str, dict[str, Any]] = {  # RunConfig keys
    "ulmfit": {
        "train.strategy": "ulmfit",
        "train.lm_epochs": 2,
        "train.head_epochs": 5,
        "train.epochs": 2,
        "train.lr": 3e-3,
    },
    "elmo": {
        "train.strategy": "fine-tune",
        "train.head_epochs": 5,
        "train.epochs": 3,
        "train.unfreeze": -1,
        "train.finetune_lr": 1e-3,
        "train.lr": 3e-3,
    },
}


def corpus_outside_subset(limit: int, seed: int) -> list[str]:
    from tlzoo.api.interfaces import DataOptions
    from tlzoo.engine.data import stratified_limit
    from tlzoo.plugins.data.builtin import RottenTomatoes

    ds = RottenTomatoes().load("rotten-tomatoes", DataOptions())
    used = set(stratified_limit(ds, limit, seed).ids)
    return [t for i, t in zip(ds.ids, ds.examples) if i not in used]


def run(model: str, weights: str | None, out: Path, seed: int) -> dict[str, Any]:
    from tlzoo import Engine, RunConfig

    cfg = RunConfig()
    cfg.data.path, cfg.data.limit, cfg.seed = "rotten-tomatoes", 3000, seed
    cfg.model.plugin = model
    if weights:
        cfg.model.weights = weights
    else:
        cfg.model.pretrained = False
    for k, v in RUN[model].items():
        cfg.set(k, v)
    cfg.out, cfg.progress = str(out), False
    res = Engine().run(cfg)
    return {
        "accuracy": res.metrics["test"]["accuracy"],
        "macro_f1": res.metrics["test"]["macro_f1"],
        "seconds": res.metrics["seconds"],
        "run_dir": str(res.run_dir),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ulmfit,elmo")
    ap.add_argument("--out", default="/tmp/bench-lstm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy shared CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = corpus_outside_subset(3000, args.seed)
    print(f"pretraining corpus: {len(corpus):,} snippets outside the 3,000-example benchmark subset", flush=True)
    results: dict[str, Any] = {}
    rfile = out / f"results-{args.models.replace(',', '-')}.json"
    for model in args.models.split(","):
        from tlzoo.engine.zoo import Zoo

        pre = Zoo().pretrainers.get(model)
        stamp = time.strftime("%H%M%S")
        wdir = out / f"{model}-pretrained-{stamp}"
        t = time.perf_counter()
        summary = pre.pretrain(corpus, str(wdir), dict(PRETRAIN[model], seed=args.seed), print)
        summary["wall_seconds"] = round(time.perf_counter() - t, 1)
        results[model] = {"pretrain": summary, "settings": {"pretrain": PRETRAIN[model], "run": RUN[model]}}
        results[model]["pretrained"] = run(model, str(wdir), out / f"{model}-run-pretrained-{stamp}", args.seed)
        rfile.write_text(json.dumps(results, indent=2))
        results[model]["scratch"] = run(model, None, out / f"{model}-run-scratch-{stamp}", args.seed)
        rfile.write_text(json.dumps(results, indent=2))
    for model, r in results.items():
        s = r["pretrain"]
        strategy = RUN[model]["train.strategy"]
        print(
            f"| {model} | {strategy} | tl pretrain on {s['texts']:,} unlabelled RT snippets, {s['epochs']} epochs, "
            f"held-out perplexity {s['val_perplexity']:.0f}, {s['wall_seconds']:.0f} s | "
            f"{r['pretrained']['accuracy']:.4f} | {r['pretrained']['macro_f1']:.4f} | {r['pretrained']['seconds']:.0f} |"
        )
        print(
            f"| {model} | {strategy} | none (random init) | {r['scratch']['accuracy']:.4f} | "
            f"{r['scratch']['macro_f1']:.4f} | {r['scratch']['seconds']:.0f} |"
        )


if __name__ == "__main__":
    main()
