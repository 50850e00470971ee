"""``--val-fraction 0`` runs end to end and says what validation's absence changes (issue 17 §1)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("head", ["logreg", "fc"])
def test_a_run_without_validation_trains_and_says_so(
    run_cli, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path, head: str
) -> None:
    out = tmp_path / "run"
    res = run_cli(
        "run", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", text_csv, "--val-fraction", "0",
        "--head", head, "--epochs", "2", "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res
    assert "validation 0 /" in res.output and "no validation split (--val-fraction 0)" in res.output
    assert "Traceback" not in res.output and (out / "model.safetensors").is_file()
