"""``tl run --runtime onnx`` logs that ONNX Runtime ran the extraction and what it cost (issue 17 §2)."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")


def test_a_run_with_runtime_onnx_logs_it(run_cli, tiny_bert_dir, text_csv, tmp_path) -> None:
    res = run_cli(
        "run", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", text_csv, "--head", "logreg",
        "--runtime", "onnx", "--out", tmp_path / "run",
    )  # fmt: skip
    assert res.exit_code == 0, res
    (line,) = [x for x in res.output.splitlines() if "runtime onnx:" in x]
    assert "ONNX Runtime served" in line and "ms each" in line and "export and session build" in line
