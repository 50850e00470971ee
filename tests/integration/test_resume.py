"""Checkpoints and resume: a fine-tune killed with SIGKILL mid-run, then resumed, ends
exactly where the uninterrupted run with the same seed ends."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tlzoo.engine.config import RunConfig
from tlzoo.facade import Engine

# Killed from inside its own log callback, right after "fine-tune epoch 2/3" was logged and
# appended to history.csv but before that epoch's checkpoint was written: the nastiest moment.
KILLER = textwrap.dedent("""
    import os, signal, sys
    from tlzoo.engine.config import RunConfig
    from tlzoo.facade import Engine

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
        if "fine-tune epoch 2/" in msg:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = RunConfig.from_toml(sys.argv[1])
    Engine(log=log).run(cfg)
""")


def _config(tiny_bert_dir: Path, text_csv: Path, out: Path) -> RunConfig:
    cfg = RunConfig()
    cfg.model.plugin, cfg.model.weights, cfg.model.max_length = "bert", str(tiny_bert_dir), 32
    cfg.data.path = str(text_csv)
    cfg.train.strategy, cfg.train.head_epochs, cfg.train.joint_epochs, cfg.train.unfreeze = "fine-tune", 2, 3, 2
    cfg.train.batch_size, cfg.train.device, cfg.train.finetune_lr = 16, "cpu", 1e-3
    cfg.head.params = {"hidden": [16], "dropout": 0.2}  # dropout: the torch RNG must be restored too
    cfg.seed, cfg.progress, cfg.out = 7, False, str(out)
    return cfg


def _history(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "history.csv").open() as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_sigkill_then_resume_matches_uninterrupted_run(tiny_bert_dir: Path, text_csv: Path, tmp_path: Path) -> None:
    reference = Engine(log=None).run(_config(tiny_bert_dir, text_csv, tmp_path / "reference"))

    out = tmp_path / "killed"
    config_file = tmp_path / "killed.toml"
    config_file.write_text(_config(tiny_bert_dir, text_csv, out).to_toml())
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(config_file)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    incomplete = out.with_name(out.name + ".incomplete")
    assert incomplete.is_dir() and not out.exists()
    assert (incomplete / "checkpoint.pt").is_file()
    assert len(_history(incomplete)) == 4  # head 1-2, fine-tune 1-2; the checkpoint only holds fine-tune 1

    resumed = Engine(log=None).resume(out)  # the final path is accepted as well as the .incomplete one

    assert resumed.run_dir == out and out.is_dir() and not incomplete.exists()
    assert not (out / "checkpoint.pt").exists()
    assert resumed.metrics["test"]["accuracy"] == reference.metrics["test"]["accuracy"]
    assert resumed.metrics["test"]["confusion_matrix"] == reference.metrics["test"]["confusion_matrix"]
    assert _history(out) == _history(reference.run_dir)  # same losses, epoch by epoch, no duplicate row
    assert (out / "predictions.csv").read_text() == (reference.run_dir / "predictions.csv").read_text()
    run = json.loads((out / "metrics.json").read_text())["run"]
    assert run["weights_fingerprint"] and {"tlzoo", "torch", "plugin"} <= set(run["versions"])


def test_resume_errors_are_one_line(run_cli, tmp_path: Path) -> None:
    res = run_cli("run", "--resume", tmp_path / "nothing-here")
    assert res.exit_code == 2 and "No interrupted run" in res.stderr and "Traceback" not in res.output
    res = run_cli("run", "--resume", tmp_path / "x", "--epochs", "3")
    assert res.exit_code == 2 and "drop --epochs" in res.stderr
    done = tmp_path / "done"
    done.mkdir()
    (done / "metrics.json").write_text("{}")
    res = run_cli("run", "--resume", done)
    assert res.exit_code == 2 and "already finished" in res.stderr


def test_resume_without_checkpoint_restarts_training(tiny_bert_dir: Path, text_csv: Path, tmp_path: Path) -> None:
    """Killed before any epoch ended (e.g. during feature extraction): resume trains from the start."""
    out = tmp_path / "early"
    cfg = _config(tiny_bert_dir, text_csv, out)
    cfg.train.head_epochs, cfg.train.joint_epochs, cfg.train.unfreeze = 1, 1, 1
    folder = out.with_name("early.incomplete")
    folder.mkdir()
    (folder / "config.toml").write_text(cfg.to_toml())
    result = Engine(log=None).resume(folder)
    assert [r["phase"] for r in _history(result.run_dir)] == ["head", "fine-tune"]
    assert 0 <= result.accuracy <= 1


@pytest.mark.parametrize("patience", [1])
def test_early_stopping_stops_patience_epochs_after_the_best(
    tiny_bert_dir: Path, text_csv: Path, tmp_path: Path, patience: int
) -> None:
    cfg = _config(tiny_bert_dir, text_csv, tmp_path / "es")
    cfg.train.strategy, cfg.train.head_epochs, cfg.train.lr = "feature-extraction", 40, 0.5  # lr high: val loss rises
    cfg.train.patience = patience
    result = Engine(log=None).run(cfg)
    rows = _history(result.run_dir)
    losses = [float(r["val_loss"]) for r in rows]
    best = losses.index(min(losses))
    assert len(rows) < 40, "early stopping never triggered"
    assert len(rows) == best + 1 + patience  # stopped `patience` epochs after the best one


@pytest.mark.transfer
def test_fine_tune_prints_plan_and_keeps_frozen_batchnorm_fixed(image_folder: Path, tmp_path: Path) -> None:
    """EfficientNet-Lite0 (packaged ImageNet weights): only the top group's BatchNorm statistics move."""
    import torch

    from tlzoo.api.interfaces import BackboneRequest
    from tlzoo.engine.runner import Run
    from tlzoo.engine.zoo import Zoo

    cfg = RunConfig()
    cfg.model.plugin, cfg.model.image_size, cfg.data.path = "efficientnet", 32, str(image_folder)
    cfg.train.strategy, cfg.train.head_epochs, cfg.train.joint_epochs, cfg.train.unfreeze = "fine-tune", 1, 1, 1
    cfg.train.device, cfg.progress, cfg.out = "cpu", False, str(tmp_path / "ft")
    cfg.data.val_fraction = 0.0  # no validation: the fine-tuned weights are kept, never the head phase's
    logs: list[str] = []
    run = Run(cfg, Zoo(), log=logs.append)
    pristine = run.zoo.backbones.get("efficientnet").create(BackboneRequest(model="efficientnet_lite0", image_size=32))
    before = {k: v.clone() for k, v in pristine.state_dict().items()}
    run.execute()
    after = run.backbone.state_dict()
    plan = [m for m in logs if m.strip().startswith("phase ")]
    assert len(plan) == 2 and "none (backbone frozen)" in plan[0] and "top 1 of 9" in plan[1]
    assert all("trainable" in m and "/" in m for m in plan)
    trainable, total = (
        int(s.replace(",", "")) for s in plan[1].split("trainable ")[1].split(" parameters")[0].split(" / ")
    )
    assert 0 < trainable < total
    frozen = [k for k in after if "running_mean" in k and not k.startswith("model.bn2")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # eval mode: statistics fixed
    assert not torch.equal(before["model.bn2.running_mean"], after["model.bn2.running_mean"])  # the top group learned


def test_a_new_run_refuses_to_overwrite_an_interrupted_one(run_cli, tmp_path: Path) -> None:
    folder = tmp_path / "r.incomplete"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"epochs worth keeping")
    res = run_cli("run", "--plugin", "bert", "--data", "rotten-tomatoes", "--out", tmp_path / "r")
    assert res.exit_code == 2 and "tl run --resume" in res.stderr
    assert (folder / "checkpoint.pt").is_file()
