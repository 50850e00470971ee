"""``tl lr-find``: an exponential learning-rate sweep with a suggestion, a plot and the weights restored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from tlzoo.api.errors import TlzooError
from tlzoo.commands.lr_find import suggest, sweep


def _task(n: int = 256, d: int = 8, classes: int = 3, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of a learnable task (the class is the argmax of a fixed linear map), one-hot targets."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, classes, generator=g)).argmax(1)
    t = torch.nn.functional.one_hot(y, classes).float()
    return [(x[i : i + 32], t[i : i + 32]) for i in range(0, n, 32)]


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits, target)


def test_the_sweep_records_the_curve_suggests_a_rate_inside_it_and_restores_the_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = [{"params": list(model.parameters()), "lr": 1e-3}]
    result = sweep(model, groups, _task(), _loss, torch.device("cpu"), start_lr=1e-6, end_lr=10, steps=80)
    n = len(result.lrs)
    assert 10 < n <= 80 and len(result.losses) == len(result.smoothed) == len(result.ema) == n
    # the plotted curve is a centred average of the raw losses (no EMA lag)
    assert result.smoothed[10] == pytest.approx(float(np.mean(result.losses[6:15])))
    assert result.lrs[0] == pytest.approx(1e-6) and all(b > a for a, b in zip(result.lrs, result.lrs[1:]))
    assert result.lrs[-1] <= 10
    ratios = np.diff(np.log(result.lrs))
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # exponential: a constant factor per step
    # weights and BatchNorm statistics are exactly as before
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    rate, method, steepest, minimum = suggest(result.lrs, result.smoothed)
    assert result.lrs[0] <= rate <= result.lrs[-1]
    assert method in ("steepest descent", "minimum / 10") and rate <= minimum
    # the loss does fall on this task before it blows up: the curve's minimum is below its start
    assert min(result.smoothed) < result.smoothed[0]


def test_the_sweep_stops_when_the_loss_diverges() -> None:
    torch.manual_seed(1)
    model = nn.Linear(8, 3)
    groups = [{"params": list(model.parameters()), "lr": 1.0}]
    result = sweep(model, groups, _task(), _loss, torch.device("cpu"), start_lr=1e-4, end_lr=1e6, steps=100)
    assert len(result.lrs) < 100
    assert "4x its best" in result.stopped or "finite" in result.stopped
    assert max(result.ema[:-1]) <= 4 * min(result.ema) or "finite" in result.stopped  # the EMA stops it


def test_discriminative_rates_keep_their_ratio() -> None:
    """Each group's rate is the swept rate times its ratio to the first group's (the head's)."""
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 3))
    groups = [{"params": list(model[1].parameters()), "lr": 1e-2}, {"params": list(model[0].parameters()), "lr": 5e-3}]
    seen: list[list[float]] = []
    hook = register_optimizer_step_pre_hook(lambda opt, args, kwargs: seen.append([g["lr"] for g in opt.param_groups]))
    try:
        result = sweep(model, groups, _task(), _loss, torch.device("cpu"), start_lr=1e-5, end_lr=1e-1, steps=12)
    finally:
        hook.remove()
    assert len(seen) == len(result.lrs) == 12
    for (head, lower), lr in zip(seen, result.lrs):
        assert head == pytest.approx(lr) and lower == pytest.approx(lr / 2)


def test_suggest_falls_back_to_the_minimum_over_10_without_a_descent() -> None:
    lrs = list(np.logspace(-6, 0, 30))
    rising = list(np.linspace(1.0, 3.0, 30))  # minimum at the very start: no descending stretch
    rate, method, steepest, minimum = suggest(lrs, rising)
    assert method == "minimum / 10" and steepest is None and rate == pytest.approx(lrs[0])
    # a broad valley: the loss falls fastest a decade and more below its minimum (at 0.1)
    broad = [2.0 - np.exp(-(((np.log10(lr) + 1) / 1.5) ** 2)) for lr in lrs]
    rate, method, steepest, minimum = suggest(lrs, broad)
    assert minimum == pytest.approx(0.1, rel=0.3) and method == "steepest descent"
    assert 3e-3 < rate < minimum / 10 and rate == steepest
    # a narrow one: the steepest point lies within a decade of the minimum, so minimum / 10 wins
    narrow = [2.0 - np.exp(-((np.log10(lr) + 1) ** 2) * 4) for lr in lrs]
    rate, method, steepest, minimum = suggest(lrs, narrow)
    assert method == "minimum / 10" and steepest is not None and minimum / 10 < steepest < minimum
    assert rate == pytest.approx(minimum / 10)


def test_bad_ranges_are_refused() -> None:
    model = nn.Linear(8, 3)
    with pytest.raises(TlzooError, match="--start-lr"):
        sweep(model, [{"params": list(model.parameters()), "lr": 1}], _task(), _loss, torch.device("cpu"), start_lr=20)


def test_tl_lr_find_writes_a_plot_and_prints_the_run_command(
    run_cli, word_bert_dir: Path, topics_csv: Path, tmp_path: Path
) -> None:
    from PIL import Image

    out = tmp_path / "lr"
    res = run_cli(
        "lr-find",
        "--plugin",
        "bert",
        "--weights",
        word_bert_dir,
        "--data",
        topics_csv,
        "--max-length",
        "16",
        "--device",
        "cpu",
        "--batch-size",
        "16",
        "--out",
        out,
    )
    assert res.exit_code == 0, res
    data = json.loads((out / "lr_find.json").read_text())
    assert len(data["lrs"]) == len(data["losses"]) >= 10
    assert data["lrs"][0] <= data["suggestion"] <= data["lrs"][-1]
    assert "head on cached" in data["target"] and data["option"] == "--lr"
    assert f"suggested learning rate {data['suggestion']:.2g}" in res.stdout
    command = next(line.strip() for line in res.stdout.splitlines() if line.strip().startswith("tl run"))
    assert f"--lr {data['suggestion']:.2g}" in command and "--max-length 16" in command
    assert "--batch-size 16" in command and "--out" not in command and "--steps" not in command
    with Image.open(out / "lr_find.png") as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 300
        img.verify()


def test_lr_find_sweeps_the_trainable_layers_of_a_first_phase_that_trains_them(
    run_cli, word_bert_dir: Path, topics_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ft"
    args = ["--plugin", "bert", "--weights", word_bert_dir, "--data", topics_csv, "--max-length", "16"]
    args += [
        "--device",
        "cpu",
        "--strategy",
        "fine-tune",
        "--head-epochs",
        "0",
        "--steps",
        "20",
        "--out",
        out,
        "--json",
    ]
    res = run_cli("lr-find", *args)
    assert res.exit_code == 0, res
    data = json.loads(res.stdout)
    assert "layer groups training" in data["target"] and len(data["lrs"]) >= 2
    assert data["option"] == "--finetune-lr" and Path(data["png"]).is_file()


def test_fitted_heads_have_no_learning_rate(run_cli, topics_csv: Path, tmp_path: Path) -> None:
    res = run_cli("lr-find", "--plugin", "bert", "--data", topics_csv, "--head", "logreg", "--out", tmp_path / "x")
    assert res.exit_code == 2, res
    assert "no learning rate" in res.stderr and "--head fc" in res.stderr and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
