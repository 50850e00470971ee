"""Soak: many short runs killed at random moments against one TLZOO_HOME, then a check.

Each round starts ``tl run --plugin glove --data rotten-tomatoes --limit 200`` (a fresh
``--out``) and, unless the round is a control, sends SIGKILL, SIGINT or SIGTERM after a
random delay drawn from [0, 1.2 x the median time of a full run].  Some SIGKILLed rounds
that left a checkpoint are resumed with ``tl run --resume``.  After every round the
invariants of issue 8 are checked:

* exit 130 (SIGINT) / 143 (SIGTERM) / 0 / -9 and nothing else; never a traceback;
* a finished run directory holds metrics.json, model.safetensors and predictions.csv;
* an interrupted run leaves ``<out>.incomplete`` only when it holds a checkpoint
  (SIGKILL cannot be handled, so a killed run may leave one without: counted apart);
* no lock file is left next to a run that ended.

At the end, one more run on the same data and TLZOO_HOME must give byte-identical
``predictions.csv`` to a clean run with an empty TLZOO_HOME, and ``tl cache ls --json``
must list no partial entry.  Not part of ``make test`` (it takes long):

    .venv/bin/python bench/soak.py              # 200 rounds, ~20-40 min on 2 cores
    .venv/bin/python bench/soak.py --rounds 20  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

TL = str(Path(sys.executable).with_name("tl"))
ARGS = ["run", "--plugin", "glove", "--data", "rotten-tomatoes", "--limit", "200", "--epochs", "5", "-q"]
SIGNALS = {"KILL": signal.SIGKILL, "INT": signal.SIGINT, "TERM": signal.SIGTERM}
# -2 / -15: the signal came while the interpreter was still starting, before tl's handlers
# were installed (the default action then ends the process); counted apart, not a failure
EXPECTED_RC = {"KILL": {-9, 0}, "INT": {130, 0, -2}, "TERM": {143, 0, -15}, "none": {0}}


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLZOO_")}
    env.update(TLZOO_HOME=str(home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TLZOO_OFFLINE="1")
    return env


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([TL, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_finished(out: Path) -> list[str]:
    missing = [
        f for f in ("metrics.json", "model.safetensors", "predictions.csv", "confusion.png") if not (out / f).is_file()
    ]
    return [f"{out} finished without {', '.join(missing)}"] if missing else []


def one_round(
    i: int, root: Path, env: dict[str, str], sig: str, delay: float, resume_p: float, rng: random.Random
) -> tuple[str, list[str]]:
    out = root / f"r{i:03d}"
    proc = start([*ARGS, "--out", str(out)], env)
    if sig != "none":
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(SIGNALS[sig])
    _, err = proc.communicate(timeout=600)
    rc = proc.returncode
    problems: list[str] = []
    if "Traceback" in err and rc >= 0:
        problems.append(f"round {i} ({sig}): traceback on stderr: {err[-400:]}")
    if rc not in EXPECTED_RC[sig]:
        problems.append(f"round {i} ({sig}): exit code {rc}: {err.strip()[-300:]}")
    incomplete = out.with_name(out.name + ".incomplete")
    outcome = "finished" if rc == 0 else f"stopped-{sig}" if rc > 0 else f"{sig}-during-start" if rc != -9 else "killed"
    if rc == 0 or out.exists():
        # a signal that lands after the final rename stops a run that is already complete:
        # <out> may exist whatever the exit code, but then it must hold every artifact
        problems += [f"round {i} ({sig}): {p}" for p in check_finished(out)]
        if rc != 0:
            outcome = f"{sig}-after-finish"
    if incomplete.exists():
        has_ckpt = (incomplete / "checkpoint.pt").is_file()
        if sig in ("INT", "TERM") and not has_ckpt:
            problems.append(f"round {i} ({sig}): {incomplete} left without a checkpoint")
        if sig == "KILL":
            outcome = "killed-left-checkpoint" if has_ckpt else "killed-left-partial"
            if has_ckpt and rng.random() < resume_p:
                res = subprocess.run([TL, "run", "--resume", str(out), "-q"], env=env, capture_output=True, text=True)
                if res.returncode != 0 or "Traceback" in res.stderr:
                    problems.append(f"round {i}: resume failed ({res.returncode}): {res.stderr.strip()[-300:]}")
                else:
                    problems += check_finished(out)
                    outcome = "killed-resumed"
            else:
                shutil.rmtree(incomplete, ignore_errors=True)  # a user would delete or resume it
        elif has_ckpt:
            outcome = f"stopped-{sig}-resumable"
            shutil.rmtree(incomplete, ignore_errors=True)
    for lock in root.glob(f"{out.name}*.lock"):
        if sig != "KILL":
            problems.append(f"round {i} ({sig}): lock file {lock} left behind")
        lock.unlink(missing_ok=True)
    return outcome, problems


def final_check(root: Path, env: dict[str, str]) -> list[str]:
    problems = []
    shared = root / "final-shared"
    clean_home = Path(tempfile.mkdtemp(prefix="tlzoo-soak-clean-"))
    clean = root / "final-clean"
    for out, e in ((shared, env), (clean, env_for(clean_home))):
        res = subprocess.run([TL, *ARGS, "--out", str(out)], env=e, capture_output=True, text=True)
        if res.returncode != 0:
            problems.append(f"final run {out.name} failed: {res.stderr.strip()[-300:]}")
    if not problems:
        a, b = (shared / "predictions.csv").read_bytes(), (clean / "predictions.csv").read_bytes()
        if a != b:
            problems.append("predictions.csv of the run on the soaked cache differs from a clean run's")
    ls = subprocess.run([TL, "cache", "ls", "--json"], env=env, capture_output=True, text=True)
    entries = json.loads(ls.stdout or "[]")
    partial = [e["key"] for e in entries if not e.get("complete", True)]
    if partial:
        problems.append(f"tl cache ls lists partial entries: {partial}")
    shutil.rmtree(clean_home, ignore_errors=True)
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--control", type=float, default=0.1, help="share of rounds left to finish")
    ap.add_argument("--resume", type=float, default=0.3, help="share of killed-with-checkpoint rounds resumed")
    ap.add_argument("--json", type=Path, default=Path("bench/out/soak.json"))
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="tlzoo-soak-"))
    home, root = work / "home", work / "runs"
    root.mkdir(parents=True)
    env = env_for(home)
    started = time.perf_counter()
    # three full runs give the time scale for the random delays (the first fills the cache)
    durations = []
    for k in range(3):
        t0 = time.perf_counter()
        res = subprocess.run([TL, *ARGS, "--out", str(root / f"warm{k}")], env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"warm-up run failed:\n{res.stderr[-2000:]}")
        durations.append(time.perf_counter() - t0)
    scale = statistics.median(durations)
    print(
        f"full run: median {scale:.1f}s (first, filling the cache: {durations[0]:.1f}s); {a.rounds} rounds", flush=True
    )
    outcomes: Counter[str] = Counter()
    signals: Counter[str] = Counter()
    problems: list[str] = []
    for i in range(a.rounds):
        sig = "none" if rng.random() < a.control else rng.choice(list(SIGNALS))
        delay = rng.uniform(0.0, 1.2 * scale)
        outcome, bad = one_round(i, root, env, sig, delay, a.resume, rng)
        signals[sig] += 1
        outcomes[outcome] += 1
        problems += bad
        if bad:
            print("\n".join(bad), flush=True)
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{a.rounds}: {dict(outcomes)}; problems {len(problems)}", flush=True)
        for p in root.glob(f"r{i:03d}"):  # keep the disk flat: the check above has read it
            shutil.rmtree(p, ignore_errors=True)
    problems += final_check(root, env)
    summary = {
        "rounds": a.rounds,
        "signals": dict(signals),
        "outcomes": dict(outcomes),
        "problems": problems,
        "full_run_seconds": round(scale, 2),
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "final_predictions_identical": not any("differs" in p for p in problems),
    }
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
