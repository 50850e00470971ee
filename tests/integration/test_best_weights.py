"""The best validation weights across all phases are the ones a run ends with (issue 11 item 7).

A fine-tune phase made worse on purpose (a huge learning rate) must not replace the head
phase's weights: the run ends with the head phase's validation loss, says so in the log and
in metrics.json, and a run killed mid-fine-tune and resumed ends exactly the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tlzoo.engine.config import RunConfig
from tlzoo.engine.runner import Run
from tlzoo.engine.zoo import Zoo
from tlzoo.facade import Engine

KILLER = textwrap.dedent("""
    import os, signal, sys
    from tlzoo.engine.config import RunConfig
    from tlzoo.facade import Engine

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
        if "fine-tune epoch 2/" in msg:
            os.kill(os.getpid(), signal.SIGKILL)

    Engine(log=log).run(RunConfig.from_toml(sys.argv[1]))
""")


def _config(image_folder: Path, out: Path, finetune_lr: float) -> RunConfig:
    cfg = RunConfig()
    cfg.model.plugin, cfg.model.pretrained, cfg.data.path = "lenet", False, str(image_folder)
    cfg.train.strategy, cfg.train.head_epochs, cfg.train.joint_epochs, cfg.train.unfreeze = "fine-tune", 3, 3, 2
    cfg.train.lr, cfg.train.finetune_lr, cfg.train.device, cfg.train.batch_size = 0.01, finetune_lr, "cpu", 16
    cfg.seed, cfg.progress, cfg.out = 3, False, str(out)
    return cfg


def _phase_bests(rows: list[dict]) -> dict[str, float]:
    best: dict[str, float] = {}
    for r in rows:
        if r.get("val_loss") not in (None, ""):
            best[r["phase"]] = min(best.get(r["phase"], float("inf")), float(r["val_loss"]))
    return best


@pytest.mark.parametrize("finetune_lr", [5.0, 1e-3])
def test_run_ends_with_the_best_val_loss_of_all_phases(image_folder: Path, tmp_path: Path, finetune_lr: float) -> None:
    from tlzoo.engine.run.model import _raw_loader

    logs: list[str] = []
    run = Run(_config(image_folder, tmp_path / "ft", finetune_lr), Zoo(), logs.append)
    result = run.execute()
    bests = _phase_bests(run.history.rows)
    assert set(bests) == {"head", "fine-tune"}
    # the weights the run ended with, evaluated again on the validation split
    assert run.model is not None
    final, _ = run.trainer.evaluate(run.model, _raw_loader(run, "val"))
    assert final == pytest.approx(min(bests.values()), abs=1e-4)
    assert final <= bests["head"] + 1e-4  # never worse than an earlier phase
    kept = json.loads((result.run_dir / "metrics.json").read_text())["validation_kept"]
    winner = min(bests, key=bests.get)
    assert kept["phase"] == winner and kept["loss"] == pytest.approx(bests[winner])
    message = [m for m in logs if "did not beat" in m]
    if finetune_lr == 5.0:  # a learning rate that wrecks the backbone: the head phase must win
        assert winner == "head" and bests["fine-tune"] > bests["head"]
        assert (
            message
            and f"fine-tune phase did not beat the head phase (val loss {bests['fine-tune']:.4f} vs "
            f"{bests['head']:.4f}): keeping the head-phase weights"
            in message[0]
        )
    else:
        assert bool(message) == (winner == "head")


def test_resume_keeps_the_best_across_phases(image_folder: Path, tmp_path: Path) -> None:
    reference = Engine(log=None).run(_config(image_folder, tmp_path / "reference", 5.0))
    out = tmp_path / "killed"
    config_file = tmp_path / "killed.toml"
    config_file.write_text(_config(image_folder, out, 5.0).to_toml())
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(config_file)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out.with_name("killed.incomplete") / "checkpoint.pt").is_file()
    resumed = Engine(log=None).resume(out)
    assert resumed.metrics["validation_kept"] == reference.metrics["validation_kept"]
    assert resumed.metrics["validation_kept"]["phase"] == "head"
    assert resumed.metrics["test"]["confusion_matrix"] == reference.metrics["test"]["confusion_matrix"]
    assert (out / "predictions.csv").read_text() == (reference.run_dir / "predictions.csv").read_text()
