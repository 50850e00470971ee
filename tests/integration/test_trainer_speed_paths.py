"""The training loop's speed paths (issue 10, goals 6 and 9) and their CPU fallbacks: bf16 autocast
only on a GPU that supports it and only when wanted (--no-amp, train.amp), pinned memory only for
CUDA, a GPU batch size only when the user set none, channels_last training that learns the same
as the usual layout, and running sums that give the same history as per-step Python floats."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tlzoo.api.interfaces import Phase
from tlzoo.engine import training
from tlzoo.engine.config import RunConfig
from tlzoo.engine.loaders import example_loader, pin_memory
from tlzoo.engine.training import (
    History,
    Trainer,
    amp_dtype,
    autocast,
    inference_batch_size,
    is_convolutional,
    soft_cross_entropy,
)

CPU = torch.device("cpu")


def test_no_autocast_on_cpu_by_default() -> None:
    assert amp_dtype(CPU) is None and amp_dtype(CPU, amp=True) is None
    with autocast(CPU):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_amp_off_means_no_autocast_even_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = torch.device("cuda")
    assert amp_dtype(gpu, amp=True) == torch.bfloat16
    assert amp_dtype(gpu, amp=False) is None
    assert isinstance(autocast(gpu, amp=False), contextlib.nullcontext)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # an older GPU: float32
    assert amp_dtype(gpu, amp=True) is None


def test_amp_option_parses() -> None:
    cfg = RunConfig()
    assert cfg.train.amp is True and not cfg.given("train.amp")
    cfg.apply_overrides(["train.amp=false"])
    assert cfg.train.amp is False and cfg.given("train.amp")
    assert "amp = false" in cfg.to_toml()
    from tlzoo.cli import _run_config

    off = _run_config(None, (), True, None, None, {"amp": False})
    assert off.train.amp is False
    on = _run_config(None, (), True, None, None, {"amp": None})
    assert on.train.amp is True


def test_no_amp_flag_reaches_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tlzoo import cli

    seen: dict[str, Any] = {}

    class FakeEngine:
        def __init__(self, **kwargs: Any) -> None:
            pass

        def run(self, cfg: RunConfig) -> Any:
            seen["amp"] = cfg.train.amp
            raise KeyboardInterrupt  # stop here: the config is what this test is about

    import tlzoo.facade as facade

    monkeypatch.setattr(facade, "Engine", FakeEngine)
    CliRunner().invoke(cli.cli, ["run", "--plugin", "glove", "--data", str(tmp_path), "--no-amp"])
    assert seen == {"amp": False}


def test_loaders_pin_memory_only_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    backbone = _Tiny()
    examples = [np.zeros((1, 4, 4), np.float32)] * 4
    assert not pin_memory(None) and not pin_memory(CPU)
    assert not example_loader(examples, backbone, train=False, batch_size=2, device=CPU).pin_memory
    assert not example_loader(examples, backbone, train=False, batch_size=2).pin_memory
    assert not pin_memory(torch.device("cuda")) or torch.cuda.is_available()  # no GPU here: nothing to pin for
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    loader = example_loader(examples, backbone, train=False, batch_size=2, device=torch.device("cuda"))
    assert loader.pin_memory


def test_gpu_batch_size_only_when_the_user_set_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert inference_batch_size(CPU, 32) == 32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    class Props:
        total_memory = 80 * 2**30

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props())
    gpu = torch.device("cuda")
    assert inference_batch_size(gpu, 32) == 256
    Props.total_memory = 4 * 2**30
    assert inference_batch_size(gpu, 32) == 32  # a small GPU keeps the default

    from tlzoo.engine.run.model import _inference_batch_size
    from tlzoo.engine.runner import Run

    Props.total_memory = 80 * 2**30
    run = Run.__new__(Run)
    run.device = gpu
    run.config = RunConfig()
    assert _inference_batch_size(run) == 256  # not set: chosen for the GPU
    run.config.set("train.batch_size", 32)
    assert _inference_batch_size(run) == 32  # set, even to the default value: kept
    saved = tmp_path / "config.toml"
    saved.write_text(RunConfig().to_toml())  # a resumed run: its config.toml names the batch size
    run.config = RunConfig.from_toml(saved)
    assert _inference_batch_size(run) == 32
    run.device, run.config = CPU, RunConfig()
    assert _inference_batch_size(run) == 32  # the CPU keeps the default


class _Tiny(nn.Module):
    """A small image backbone: conv, BatchNorm, pooled features (the parts channels_last changes); no conv bias
    before BatchNorm, as in real CNNs (its gradient is rounding noise that AdamW would amplify)."""

    modality = "vision"
    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        return torch.as_tensor(example)

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(items)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3))


def _train(channels_last: bool, epochs: int = 2) -> tuple[list[dict[str, Any]], nn.Module]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 1, 8, 8)).astype(np.float32)
    labels = (x.mean((1, 2, 3)) > 0).astype(int)
    targets = np.eye(2, dtype=np.float32)[labels]
    torch.manual_seed(0)
    model = nn.Sequential(_Tiny(), nn.Linear(8, 2))
    history = History(None)
    trainer = Trainer(
        device=CPU,
        loss=soft_cross_entropy(0.0),
        history=history,
        progress=False,
        log=lambda m: None,
        channels_last=channels_last,
    )
    loader = example_loader(list(x), model[0], train=False, batch_size=16, shuffle=True, targets=targets, seed=0)
    val = example_loader(list(x), model[0], train=False, batch_size=16, targets=targets)
    trainer.run_phase(
        model,
        Phase("p", epochs, 0.05, schedule="constant"),
        [{"params": list(model.parameters()), "lr": 0.05}],
        loader,
        val,
    )
    return history.rows, model


def test_channels_last_training_learns_the_same_and_leaves_the_usual_layout() -> None:
    assert is_convolutional(nn.Sequential(_Tiny())) and not is_convolutional(nn.Linear(2, 2))
    rows_nhwc, model = _train(True)
    rows_nchw, reference = _train(False)
    for a, b in zip(rows_nhwc, rows_nchw):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), key
    conv = model[0].conv[0].weight
    assert conv.is_contiguous()  # back to NCHW after the phase: export and hashing see the usual tensors
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p, q, atol=1e-4)


def test_running_sums_match_per_step_python_floats(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sums kept on the device give the very rows the per-step float() version gave."""
    losses: list[tuple[float, int]] = []
    real = soft_cross_entropy(0.0)

    def recording(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = real(logits, target)
        if torch.is_grad_enabled():
            losses.append((float(loss.detach()), len(target)))
        return loss

    monkeypatch.setattr(training, "soft_cross_entropy", lambda smoothing: recording)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 1, 8, 8)).astype(np.float32)
    targets = np.eye(2, dtype=np.float32)[(x.mean((1, 2, 3)) > 0).astype(int)]
    torch.manual_seed(0)
    model = nn.Sequential(_Tiny(), nn.Linear(8, 2))
    history = History(None)
    trainer = Trainer(device=CPU, loss=recording, history=history, progress=False, log=lambda m: None)
    loader = example_loader(list(x), model[0], train=False, batch_size=16, shuffle=True, targets=targets, seed=0)
    trainer.run_phase(model, Phase("p", 1, 0.01), [{"params": list(model.parameters()), "lr": 0.01}], loader, None)
    total = 0.0
    for value, n in losses:
        total += value * n
    assert history.rows[0]["train_loss"] == round(total / 40, 5)
