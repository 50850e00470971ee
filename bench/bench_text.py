"""Text zoo benchmark: bert, glove, word2vec and fasttext on the Rotten Tomatoes snippets.

The labelled task (shared with bench/bench_lstm.py): built-in ``rotten-tomatoes`` data,
``--limit 3000`` (stratified, seed 0), split 70/15/15 by the runner (2,100 / 450 / 450),
three classes fresh / rotten / plot.  Same split and seed for every row.

* bert (the packaged all-MiniLM-L6-v2): feature extraction (mean pooling, logistic
  regression head) and fine-tuning (fc head first, then the top encoder layers).
* glove: the packaged GloVe 6B-50d, mean-pooled (feature extraction, logistic regression).
* word2vec and fasttext: first ``tl pretrain`` on the snippets' own text, namely the
  10,891 snippets of the file outside the 3,000-example benchmark subset (the same
  unlabelled corpus bench_lstm.py gives elmo/ulmfit; no benchmark text is seen), then
  mean-pooled vectors (feature extraction, logistic regression).
Feature-extraction rows use the ``logreg`` head: on these pooled vectors it beat the
default ``fc`` head (word2vec: 0.698 vs 0.660 accuracy) and fits in seconds.
* ``--finetune``: also glove under a BiLSTM (fine-tune), slow on a shared CPU.

Prints one markdown row per run and rewrites this script's rows in BENCHMARKS.md's
"## Text zoo (issue 4)" table (other rows, e.g. elmo/ulmfit from bench_lstm.py, stay).

    .venv/bin/python bench/bench_text.py --out /tmp/bench-text [--only glove,word2vec] [--finetune]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Text zoo (issue 4)"
TABLE_HEAD = ["| model | strategy | pretraining | test accuracy | macro-F1 | seconds |", "|---|---|---|---|---|---|"]
MINE = ("bert (all-MiniLM-L6-v2)", "glove (6B-50d)", "word2vec", "fasttext")
DATA, LIMIT, SEED = "rotten-tomatoes", 3000, 0


def run(name: str, out: Path, sets: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    from tlzoo.engine.config import RunConfig
    from tlzoo.facade import Engine

    cfg = RunConfig()
    cfg.data.path, cfg.data.limit, cfg.seed = DATA, LIMIT, SEED
    cfg.progress = False
    for key, value in sets.items():
        cfg.set(key, value)
    cfg.apply_overrides(list(overrides))
    cfg.out = str(out / name)
    shutil.rmtree(cfg.out, ignore_errors=True)
    log_path = out / f"{name}.log"
    with log_path.open("w") as log:
        result = Engine(log=lambda m: print(m, file=log, flush=True)).run(cfg)
    return result.metrics


def unlabelled_corpus() -> list[str]:
    """Every snippet of the file that is not in the benchmark's stratified 3,000 (labels dropped)."""
    from tlzoo.api.interfaces import DataOptions
    from tlzoo.engine.data import stratified_limit
    from tlzoo.plugins.data.builtin import RottenTomatoes

    full = RottenTomatoes().load(DATA, DataOptions())
    used = set(stratified_limit(full, LIMIT, SEED).ids)
    return [text for ident, text in zip(full.ids, full.examples) if ident not in used]


def pretrain(plugin: str, out: Path, epochs: int) -> dict[str, Any]:
    from tlzoo.commands.pretraining import pretrain as do_pretrain

    folder = out / f"pretrained-{plugin}"
    shutil.rmtree(folder, ignore_errors=True)
    log_path = out / f"pretrain-{plugin}.log"
    with log_path.open("w") as log:
        summary = do_pretrain(
            plugin,
            unlabelled_corpus(),
            folder,
            {},
            epochs=epochs,
            seed=SEED,
            log=lambda m: print(m, file=log, flush=True),
        )
    return summary


def row(model: str, strategy: str, pretraining: str, metrics: dict[str, Any], seconds: float) -> str:
    t = metrics["test"]
    return f"| {model} | {strategy} | {pretraining} | {t['accuracy']:.4f} | {t['macro_f1']:.4f} | {seconds:.0f} |"


def update_benchmarks(rows: list[str], notes: list[str]) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text()
    if HEADING not in text:
        text = text.rstrip() + f"\n\n{HEADING}\n"
    start = text.index(HEADING) + len(HEADING)
    nxt = re.search(r"^## ", text[start:], flags=re.M)
    end = start + nxt.start() if nxt else len(text)
    section = text[start:end]

    def key(ln: str) -> tuple[str, str]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        return cells[0], cells[1].split(" ")[0] if len(cells) > 1 else ""

    new = {key(r) for r in rows}
    old = [
        ln
        for ln in section.splitlines()
        if ln.startswith("| ") and not ln.startswith(TABLE_HEAD[0]) and not ln.startswith("|---")
    ]
    mine_kept = [ln for ln in old if key(ln)[0] in MINE and key(ln) not in new]
    others = [ln for ln in old if key(ln)[0] not in MINE]
    order = {(m, s): i for i, (m, s) in enumerate((m, s) for m in MINE for s in ("feature-extraction", "fine-tune"))}
    rows = sorted(rows + mine_kept, key=lambda ln: order.get(key(ln), 99))
    prose = [
        ln for ln in section.splitlines() if not ln.startswith("|") and ln.strip() and not ln.startswith("<!-- text:")
    ]
    body = [
        "",
        "",
        "<!-- text: rows below from bench/bench_text.py; elmo/ulmfit rows from bench/bench_lstm.py -->",
        *notes,
        "",
        *TABLE_HEAD,
        *rows,
        *others,
        "",
    ]
    kept = [ln for ln in prose if ln not in notes]
    if kept:
        body += kept + [""]
    path.write_text(text[:start] + "\n".join(body) + "\n" + text[end:].lstrip("\n"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/bench-text")
    ap.add_argument("--only", default="bert-fe,bert-ft,glove,word2vec,fasttext")
    ap.add_argument("--finetune", action="store_true", help="also glove + BiLSTM fine-tuning (slow)")
    ap.add_argument("--bert-ft-epochs", type=int, default=1)
    ap.add_argument("--vector-epochs", type=int, default=10, help="word2vec/fasttext pretraining epochs")
    ap.add_argument("--no-write", action="store_true", help="print rows, leave BENCHMARKS.md alone")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    if args.finetune:
        only.add("glove-ft")
    rows: list[str] = []
    results: dict[str, Any] = {}
    notes = [
        "Data: built-in `rotten-tomatoes`, `--limit 3000` (stratified), seed 0, runner split 2,100 / 450 / 450, "
        "classes fresh / rotten / plot. Produced by `bench/bench_text.py` (bert, glove, word2vec, fasttext) and "
        "`bench/bench_lstm.py` (elmo, ulmfit). Seconds = the whole `tl run` (plus `tl pretrain` where listed) on "
        "2 shared CPU cores, so they are loose; the bert fine-tune run found its head-phase features in the cache "
        "the feature-extraction run wrote."
    ]

    def record(key: str, model: str, strategy: str, pretraining: str, metrics: dict[str, Any], seconds: float) -> None:
        results[key] = {"metrics": metrics, "seconds": seconds, "pretraining": pretraining}
        rows.append(row(model, strategy, pretraining, metrics, seconds))
        print(rows[-1], flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        if not args.no_write:  # after every row, so a long run that is stopped keeps what it measured
            update_benchmarks(rows, notes)

    if "glove" in only:
        m = run("glove-fe", out, {"model.plugin": "glove", "head.name": "logreg"})
        record(
            "glove",
            MINE[1],
            "feature-extraction (mean of word vectors, logreg head)",
            "packaged GloVe 6B-50d",
            m,
            m["seconds"],
        )
    for plugin in ("word2vec", "fasttext"):
        if plugin not in only:
            continue
        started = time.perf_counter()
        summary = pretrain(plugin, out, args.vector_epochs)
        pre_s = time.perf_counter() - started
        m = run(f"{plugin}-fe", out, {"model.plugin": plugin, "model.weights": summary["out"], "head.name": "logreg"})
        oov = m.get("oov", {})
        record(
            plugin,
            plugin,
            "feature-extraction (mean of word vectors, logreg head)",
            f"`tl pretrain` on the 10,891 snippets outside the subset, {args.vector_epochs} epochs, dim 100 "
            f"({pre_s:.0f} s; OOV {oov.get('oov_rate', 0):.1%}, <unk> {oov.get('unk_rate', 0):.1%})",
            m,
            m["seconds"] + pre_s,
        )
    if "bert-fe" in only:
        m = run("bert-fe", out, {"model.plugin": "bert", "head.name": "logreg"})
        record(
            "bert-fe",
            MINE[0],
            "feature-extraction (mean pooling, logreg head)",
            "packaged weights (sentence-transformers)",
            m,
            m["seconds"],
        )
    if "bert-ft" in only:
        m = run(
            "bert-ft",
            out,
            {
                "model.plugin": "bert",
                "train.strategy": "fine-tune",
                "train.head_epochs": 5,
                "train.epochs": args.bert_ft_epochs,
                "train.unfreeze": 2,
                "train.finetune_lr": 1e-4,
            },
        )
        record(
            "bert-ft",
            MINE[0],
            f"fine-tune (head 5 epochs, then top 2 layers {args.bert_ft_epochs} epoch(s), lr 1e-4)",
            "packaged weights (sentence-transformers)",
            m,
            m["seconds"],
        )
    if "glove-ft" in only:
        m = run(
            "glove-ft",
            out,
            {
                "model.plugin": "glove",
                "train.strategy": "fine-tune",
                "train.head_epochs": 5,
                "train.epochs": 3,
                "train.finetune_lr": 2e-3,
                "train.unfreeze": 1,
            },
        )
        record(
            "glove-ft",
            MINE[1],
            "fine-tune (BiLSTM 128 over frozen vectors, 3 epochs, lr 2e-3)",
            "packaged GloVe 6B-50d",
            m,
            m["seconds"],
        )
    print(f"done; rows in {ROOT / 'BENCHMARKS.md'}" if not args.no_write else "done", file=sys.stderr)


if __name__ == "__main__":
    main()
