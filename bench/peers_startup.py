"""Issue 10, goal 5: start-up of the listing commands, and `tl predict` against loading the backbone.

Listing: `tl list`, `tl data list`, `tl heads`, `tl strategies`, `tl plugins` and `tl --help`, each
a fresh process (wall clock: interpreter, imports, plugins, output), with only the built-in
plugins (``TLZOO_PLUGINS``; an installed plugin's hooks add their own imports, shown in one extra
row with every installed plugin).  The commands are interleaved round by round, best of N each.
The bar is 0.5 s; ratio = seconds / 0.5 (at most 1).

Predict: `tl predict RUN "text"` on a bert run (packaged all-MiniLM-L6-v2, logreg head) against a
process that only builds the same backbone through tlzoo's factory (the interpreter, torch,
transformers and the weights: what any prediction must pay), interleaved, best of N.  The bar
is 1.5; ratio = predict / backbone alone.

    .venv/bin/python bench/peers_startup.py [--quick]
"""

from __future__ import annotations

import argparse
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
LIMIT_S = 0.5
PREDICT_BAR = 1.5
COMMANDS = [["list"], ["data", "list"], ["heads"], ["strategies"], ["plugins"], ["--help"]]

# what "loading the backbone alone" runs: the factory tl predict uses, nothing else
LOAD_BACKBONE = (
    "from tlzoo.api.interfaces import BackboneRequest\n"
    "from tlzoo.engine.zoo import Zoo\n"
    "factory, model = Zoo().resolve_backbone('bert', '')\n"
    "backbone = factory.create(BackboneRequest(model)).eval()\n"
    "print(backbone.num_features)\n"
)


def _builtins_only(env: dict[str, str]) -> dict[str, str]:
    from tlzoo.engine.plugins import BUILTIN_PLUGINS

    return {**env, "TLZOO_PLUGINS": ",".join(BUILTIN_PLUGINS)}


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return took


def _listing(rounds: int, env: dict[str, str]) -> list[dict[str, Any]]:
    light = _builtins_only(env)
    best: dict[str, float] = {}
    every = "tl heads, every installed plugin"
    for _ in range(rounds):
        for args in COMMANDS:  # interleaved: one of each per round
            name = "tl " + " ".join(args)
            best[name] = min(best.get(name, 1e9), _timed([TL, *args], light))
        best[every] = min(best.get(every, 1e9), _timed([TL, "heads"], env))
    rows = []
    for name, seconds in best.items():
        note = (
            "installed plugins included (tlzoo-example, whose hooks module registers without torch too)"
            if name == every
            else "built-in plugins only; no torch, timm, transformers, scikit-learn or gensim imported "
            "(tests/system/test_startup.py)"
        )
        rows.append(
            {
                "goal": "5",
                "what": f"start-up: `{name.split(',')[0]}`" + (" (every installed plugin)" if name == every else ""),
                "tlzoo": round(seconds, 3),
                "peer": LIMIT_S,
                "unit": "s (wall, best of rounds; peer = the 0.5 s bound)",
                "ratio": round(seconds / LIMIT_S, 3),
                "bar": "<= 1.0 (under 0.5 s)",
                "met": seconds < LIMIT_S,
                "note": f"best of {rounds}; {note}",
            }
        )
    return rows


def _bert_run(work: Path, env: dict[str, str]) -> Path:
    out = work / "run"
    cmd = [TL, "run", "--plugin", "bert", "--data", "rotten-tomatoes", "--limit", "120", "--head", "logreg"]
    proc = subprocess.run([*cmd, "--offline", "-q", "--out", str(out)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the bert run for tl predict failed:\n{proc.stderr[-2000:]}")
    return out


def _predict(rounds: int, env: dict[str, str], work: Path) -> dict[str, Any]:
    light = _builtins_only(env)
    run = _bert_run(work, light)
    pred, load = 1e9, 1e9
    for _ in range(rounds):  # interleaved: predict, load alone, predict, ...
        pred = min(pred, _timed([TL, "predict", str(run), "a gripping, beautifully acted film", "--offline"], light))
        load = min(load, _timed([sys.executable, "-c", LOAD_BACKBONE], light))
    ratio = pred / load
    return {
        "goal": "5",
        "what": '`tl predict RUN "text"` vs building the backbone alone (bert, all-MiniLM-L6-v2)',
        "tlzoo": round(pred, 2),
        "peer": round(load, 2),
        "unit": "s (wall, fresh process each)",
        "ratio": round(ratio, 3),
        "bar": f"<= {PREDICT_BAR}",
        "met": ratio <= PREDICT_BAR,
        "note": f"best of {rounds}; peer = a process building the backbone through tlzoo's factory "
        "(interpreter, torch, transformers, weights)",
    }


def measure(quick: bool = False, rounds: int = 0) -> list[dict[str, Any]]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    work = Path(tempfile.mkdtemp(prefix="tlzoo-peers-startup-"))
    env["TLZOO_HOME"] = str(work / "home")
    try:
        rows = _listing(rounds or (3 if quick else 7), env)
        rows.append(_predict(rounds or (2 if quick else 4), env, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    keys = ["goal", "what", "tlzoo", "peer", "unit", "ratio", "bar", "met", "note"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds (same method)")
    p.add_argument("--rounds", type=int, default=0, help="rounds [7 listing, 4 predict; 3 and 2 with --quick]")
    a = p.parse_args()
    print(_table(measure(a.quick, a.rounds)))
