"""``--runtime onnx`` says in the log that ONNX Runtime ran, and what it cost (issue 17 §2)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")

from tlzoo.lib.runtime import OnnxForward, onnx_report  # noqa: E402


def test_the_forward_counts_its_batches_and_the_report_says_what_they_cost() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 4), nn.Tanh()).eval()
    forward = OnnxForward(module, module, ("x",), {"x": [0]})
    backbone = SimpleNamespace(runtime="onnx", _onnx=forward)
    assert onnx_report(backbone) is not None and "ran no batch" in str(onnx_report(backbone))
    with torch.inference_mode():
        for n in (3, 5, 2):
            x = torch.randn(n, 6)
            assert torch.allclose(forward(x), module(x), atol=1e-5)
    stats = forward.stats
    assert stats["batches"] == 3 and stats["builds"] == 1 and stats["build_s"] > 0 and stats["run_s"] > 0
    assert stats["torch_batch_s"] > 0 and stats["onnx_batch_s"] > 0  # PyTorch timed on one of the batches
    line = str(onnx_report(backbone))
    assert line.startswith("  runtime onnx: ONNX Runtime served 3 batches") and "in PyTorch (" in line
    assert "export and session build" in line
    assert onnx_report(SimpleNamespace(runtime="torch", _onnx=forward)) is None  # torch runs say nothing
