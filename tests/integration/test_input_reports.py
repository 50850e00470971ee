"""Issue 17 §2: texts cut at --max-length are counted in the log, metrics.json and the model card,
on the run that extracts them and again on a run that reads them from the cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _run(run_cli: Any, bert: Path, data: Path, out: Path, *extra: Any) -> Any:
    args = ["run", "--plugin", "bert", "--weights", bert, "--data", data, "--head", "logreg", "--out", out]
    res = run_cli(*args, *extra)
    assert res.exit_code == 0, res
    return res


def test_texts_cut_at_max_length_are_counted_and_said_again_from_the_cache(
    run_cli: Any, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))
    first = _run(run_cli, tiny_bert_dir, text_csv, tmp_path / "a", "--max-length", "8")
    lines = [line for line in first.stderr.splitlines() if "longer than --max-length 8 tokens" in line]
    assert [line.split(":")[0].strip() for line in lines] == ["warning", "warning", "warning"], first.stderr
    assert all("--set model.options.truncation=tail" in line for line in lines)
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    reports = metrics["input_reports"]
    assert set(reports) == {"train", "val", "test"}
    assert reports["train"].split(" of ")[1].startswith(f"{metrics['run']['n_train']} texts")
    assert f"Inputs (train): {reports['train']}" in (tmp_path / "a" / "README.md").read_text()

    again = _run(run_cli, tiny_bert_dir, text_csv, tmp_path / "b", "--max-length", "8")  # every split cached
    assert "not built, every split's features are cached" in again.stderr
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["input_reports"] == reports
    assert sum("longer than --max-length 8 tokens" in line for line in again.stderr.splitlines()) == 3

    short = tmp_path / "short.csv"
    short.write_text("text,label\n" + "".join(f"good film {i},pos\nbad film {i},neg\n" for i in range(20)))
    roomy = _run(run_cli, tiny_bert_dir, short, tmp_path / "c", "--max-length", "16")
    assert "longer than --max-length" not in roomy.stderr
    assert "input_reports" not in json.loads((tmp_path / "c" / "metrics.json").read_text())
