"""What each step of a run cost is in its metrics.json, and `tl` exits without the interpreter's last
garbage collection (issue 17 §8: the per-step table of BENCHMARKS.md, bench/peers_wholerun.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tlzoo.api.steps import STEPS


def test_metrics_json_holds_the_seconds_of_every_step_and_of_the_report(
    run_cli, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    res = run_cli("run", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", text_csv, "--head", "logreg",
                  "--out", out)  # fmt: skip
    assert res.exit_code == 0, res
    metrics = json.loads((out / "metrics.json").read_text())
    timings = metrics["timings"]
    assert list(timings) == [*STEPS, "report"]  # the steps in the order they ran, then the report
    assert all(isinstance(s, float) and s >= 0 for s in timings.values())
    assert timings["train"] > 0 and (out / "report.html").is_file()
    steps = sum(timings[name] for name in STEPS)
    assert steps <= metrics["seconds"] + 0.01  # "seconds" is the run up to the report: the steps fit in it


def test_tl_freezes_the_garbage_collector_at_exit() -> None:
    # a handler registered before main() runs after main's (atexit is last in, first out)
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "sys.argv = ['tl', '--help']\n"
        "from tlzoo.cli import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout and proc.stdout.rstrip().endswith("frozen True")
