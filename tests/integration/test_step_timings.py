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


def test_a_small_fitted_head_fits_with_one_blas_thread_and_a_large_one_keeps_the_librarys() -> None:
    import numpy as np
    from threadpoolctl import threadpool_info

    from tlzoo.plugins.heads.fitted import ONE_BLAS_THREAD_BELOW, blas_threads_for

    def blas() -> set[int]:
        return {int(p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas"}

    before = blas()
    with blas_threads_for(np.zeros((1400, 384))):  # the rt2k logreg: 16 s with two threads under load, 0.3 s with one
        assert blas() == {1}
    assert blas() == before  # restored after the fit
    with blas_threads_for(np.zeros((ONE_BLAS_THREAD_BELOW // 64, 64))):
        assert blas() == before
