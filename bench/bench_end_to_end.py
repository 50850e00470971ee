"""The foundation's acceptance runs, end to end through the `tl` CLI, with wall times.

Each job is a plain `tl run ... --json` in a fresh TLZOO_HOME (so nothing is cached
unless a job says so), offline.  Prints test accuracy, macro-F1 and seconds.

    .venv/bin/python bench/bench_end_to_end.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TL = str(Path(sys.executable).with_name("tl"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=tempfile.mkdtemp(prefix="tlzoo-e2e-"))
    args = p.parse_args()
    out = Path(args.out)
    digits = out / "digits"
    subprocess.run([TL, "data", "export", "digits", str(digits)], check=True, capture_output=True)
    home = out / "home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TLZOO_HOME": str(home)}
    jobs = [
        ("bert feature-extraction, fc head", ["--plugin", "bert", "--data", "rotten-tomatoes", "--limit", "2000"]),
        (
            "bert feature-extraction, logreg head (cached features)",
            ["--plugin", "bert", "--data", "rotten-tomatoes", "--limit", "2000", "--head", "logreg"],
        ),
        (
            "bert fine-tune --epochs 2 (head phase on cached features)",
            [
                "--plugin",
                "bert",
                "--data",
                "rotten-tomatoes",
                "--limit",
                "2000",
                "--strategy",
                "fine-tune",
                "--epochs",
                "2",
            ],
        ),
        (
            "efficientnet_lite0 feature-extraction, digits PNGs",
            ["--plugin", "efficientnet", "--model", "efficientnet_lite0", "--data", str(digits)],
        ),
    ]
    print(f"{'job':<60} {'accuracy':>8} {'macro-F1':>8} {'seconds':>8}")
    for i, (name, argv) in enumerate(jobs):
        start = time.perf_counter()
        r = subprocess.run(
            [TL, "run", *argv, "--quiet", "--json", "--out", str(out / f"run{i}")],
            capture_output=True,
            text=True,
            env=env,
        )
        secs = time.perf_counter() - start
        if r.returncode != 0:
            print(f"{name:<60} FAILED: {r.stderr.strip().splitlines()[-1:]}")
            continue
        m = json.loads(r.stdout)["test"]
        print(f"{name:<60} {m['accuracy']:>8.4f} {m['macro_f1']:>8.4f} {secs:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
