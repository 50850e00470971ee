"""Feature-cache speed-up and a `tl compare` leaderboard, measured end to end.

For each job, with a fresh, empty TLZOO_HOME:
  1. `tl run` feature-extraction with head A: the backbone runs, features are cached;
  2. `tl run` on the same data with head B: features come from the cache.
Both are timed as whole processes (wall clock, imports included: what a user waits) and
by the run's own `seconds` in metrics.json.  Beside them, a raw baseline: the same
backbone forward over the same examples in a plain torch loop (what step 1 must pay).
Then `tl compare` over two text backbones and two heads prints its leaderboard.

    .venv/bin/python bench/bench_cache.py            # ~6 minutes on 2 CPU cores
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TL = str(Path(sys.executable).with_name("tl"))

JOBS = [
    # (label, tl run arguments, head A, head B)
    (
        "EfficientNet-Lite0 224 px, digits (600 images)",
        ["--plugin", "efficientnet", "--data", "digits", "--limit", "600"],
        "logreg",
        "knn",
    ),
    (
        "MiniLM-L6 (BERT), rotten-tomatoes (1,000 snippets)",
        ["--plugin", "bert", "--data", "rotten-tomatoes", "--limit", "1000"],
        "logreg",
        "knn",
    ),
]


def tl(args: list[str], env: dict[str, str]) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([TL, *args, "--json", "-q"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"tl {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout)


def raw_forward_seconds(plugin: str, data: str, limit: int) -> tuple[float, int]:
    """The backbone's forward over every example in a plain loop (no tlzoo loaders, no cache)."""
    import torch

    from tlzoo.api.interfaces import BackboneRequest, DataOptions
    from tlzoo.engine.data import stratified_limit
    from tlzoo.engine.zoo import Zoo

    zoo = Zoo()
    factory, model = zoo.resolve_backbone(plugin, "")
    backbone = factory.create(BackboneRequest(model=model, options={})).eval()
    ds = stratified_limit(zoo.data_source_for(data, factory.modality).load(data, DataOptions()), limit, 0)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(ds), 32):
            backbone(backbone.collate([backbone.transform(x, False) for x in ds.examples[i : i + 32]]))
    return time.perf_counter() - start, len(ds)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="bench-cache-home-"))
    env = {**os.environ, "TLZOO_HOME": str(home), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    work = Path(tempfile.mkdtemp(prefix="bench-cache-runs-"))
    print(f"torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')}, cores: {os.cpu_count()}")
    print(
        "\n| job | run 1: extract + head | run 2: cached + other head | speed-up (wall) | run seconds 1 / 2 | "
        "raw forward loop | accuracy 1 / 2 |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, args, head_a, head_b in JOBS:
        w1, m1 = tl(["run", *args, "--head", head_a, "--out", str(work / f"{head_a}-{args[1]}")], env)
        w2, m2 = tl(["run", *args, "--head", head_b, "--out", str(work / f"{head_b}-{args[1]}")], env)
        raw, n = raw_forward_seconds(args[1], args[3], int(args[5]))
        print(
            f"| {label} | {w1:.1f} s ({head_a}) | {w2:.1f} s ({head_b}) | {w1 / w2:.1f}x ({w2 / w1:.0%} of run 1) | "
            f"{m1['seconds']:.1f} / {m2['seconds']:.1f} s | {raw:.1f} s for {n} examples | "
            f"{m1['test']['accuracy']:.3f} / {m2['test']['accuracy']:.3f} |",
            flush=True,
        )

    print("\n`tl compare --plugins bert,glove --data rotten-tomatoes --limit 1000 --heads logreg,knn`:\n")
    start = time.perf_counter()
    proc = subprocess.run(
        [
            TL,
            "compare",
            "--plugins",
            "bert,glove",
            "--data",
            "rotten-tomatoes",
            "--limit",
            "1000",
            "--heads",
            "logreg,knn",
            "--out",
            str(work / "compare"),
            "-q",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    print("```\n" + proc.stdout.strip() + "\n```")
    print(f"(wall {time.perf_counter() - start:.1f} s; MiniLM features were already cached by the run above)")
    keep = Path("bench/out")
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "compare" / "leaderboard.png", keep / "compare_leaderboard.png")
    shutil.copy(work / "compare" / "leaderboard.csv", keep / "compare_leaderboard.csv")
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
