"""Issue 10, goal 7: peak memory of ``tl run`` when the data grows 10x.

Each row runs ``tl run`` twice as a subprocess, on a small and a 10x larger dataset, each in a
fresh ``TLZOO_HOME`` (so both extract their features: the cold path, the heavier one), and
reads each child's own peak RSS from ``os.wait4`` (``ru_maxrss``).  The figure is the growth
``peak(10x) / peak(1x) - 1``; the bar is at most 0.20.

* texts: Rotten Tomatoes snippets (the built-in copy), repeated with a counter word to the
  wanted count, written to a CSV; ``--plugin glove`` (the packaged GloVe 6B-50d), default fc
  head, 2 head epochs, batch 256.  Full: 20,000 vs 200,000 texts; quick: 5,000 vs 50,000.
* images: the built-in digits (8x8 grey), repeated to the wanted count and written as PNG
  files in class folders (an ``image-folder`` dataset: the examples are paths, decoded as
  they are read), ``--plugin efficientnet`` (efficientnet_lite0) at 64 px, fc head, 2 head
  epochs, batch 256.  Full: 2,000 vs 20,000 images; quick: 500 vs 5,000.

    .venv/bin/python bench/peers_memory.py [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
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
BAR = 0.20


def _texts(n: int, path: Path) -> Path:
    from tlzoo.api.interfaces import DataOptions
    from tlzoo.plugins.data.builtin import RottenTomatoes

    ds = RottenTomatoes().load("rotten-tomatoes", DataOptions())
    pairs = list(zip(ds.examples, ds.labels))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            text, label = pairs[i % len(pairs)]
            w.writerow([f"{text} copy{i // len(pairs)}" if i >= len(pairs) else text, label])
    return path


def _images(n: int, folder: Path) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = (d.images * (255 / 16)).astype("uint8")
    for i in range(n):
        j = i % len(imgs)
        cls = folder / str(d.target[j])
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(imgs[j]).save(cls / f"{i:06d}.png")
    return folder


def peak_rss_mb(args: list[str], home: Path, log: Path) -> tuple[float, float]:
    """(peak RSS of the ``tl`` child in MiB, wall seconds); raises if the run fails."""
    env = {**os.environ, "TLZOO_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([TL, "run", *args, "--quiet"], stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"tl run {' '.join(args)} failed ({proc.returncode}); see {log}")
    return usage.ru_maxrss / 1024, seconds  # Linux: kilobytes


def _case(name: str, sizes: tuple[int, int], make: Any, run_args: list[str], work: Path) -> dict[str, Any]:
    peaks, secs = [], []
    for n in sizes:
        data = make(n, work / f"{name}-{n}")
        home = work / f"home-{name}-{n}"
        peak, seconds = peak_rss_mb(
            [*run_args, "--data", str(data), "--out", str(work / f"run-{name}-{n}")], home, work / f"{name}-{n}.log"
        )
        shutil.rmtree(home, ignore_errors=True)  # the features, before the next size writes its own
        peaks.append(peak)
        secs.append(seconds)
    growth = peaks[1] / peaks[0] - 1
    return {
        "goal": "7",
        "what": f"peak RSS of tl run, {name}, {sizes[0]:,} vs {sizes[1]:,} examples",
        "tlzoo": round(peaks[1], 1),
        "peer": round(peaks[0], 1),
        "unit": "MiB (10x data vs 1x)",
        "ratio": round(growth, 3),
        "bar": f"<= {BAR} (growth of the peak)",
        "met": growth <= BAR,
        "note": f"peaks {peaks[0]:.0f} -> {peaks[1]:.0f} MiB; runs {secs[0]:.0f} s and {secs[1]:.0f} s (cold cache)",
    }


def measure(quick: bool = False, keep: Path | None = None) -> list[dict[str, Any]]:
    work = keep or Path(tempfile.mkdtemp(prefix="tlzoo-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    common = ["--epochs", "2", "--batch-size", "256", "--seed", "0"]
    text_sizes = (5_000, 50_000) if quick else (20_000, 200_000)
    image_sizes = (500, 5_000) if quick else (2_000, 20_000)
    try:
        rows = [
            _case(
                "glove texts",
                text_sizes,
                lambda n, p: _texts(n, p.with_suffix(".csv")),
                ["--plugin", "glove", *common],
                work,
            ),
            _case(
                "efficientnet_lite0 64 px images",
                image_sizes,
                _images,
                ["--plugin", "efficientnet", "--model", "efficientnet_lite0", "--image-size", "64", *common],
                work,
            ),
        ]
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    keys = ["goal", "what", "tlzoo", "peer", "unit", "ratio", "bar", "met", "note"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5,000 vs 50,000 texts, 500 vs 5,000 images")
    p.add_argument("--keep", type=Path, help="keep the data, logs and runs in this folder")
    args = p.parse_args()
    print(_table(measure(args.quick, args.keep)))
