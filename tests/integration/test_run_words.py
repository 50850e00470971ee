"""What a run says, in its log, model card and report.html (loose ends of issues 16 and 17): figures of a
run without a test split called cross-validated, never "test"; the rows a fitted head learnt from; which
head the ablation fits; `tl predict` on a fused run's table that lacks an input column; --strict-inputs.
Tiny BERT and LeNet from random weights, seconds each."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import fused_run_args as _fused, one_line_error


def _text_run(run_cli: Any, bert: Path, data: Path, out: Path, *args: Any) -> Any:
    res = run_cli(
        "run", "--plugin", "bert", "--weights", bert, "--data", data, "--out", out, "--max-length", "16",
        "--device", "cpu", "--head", "logreg", *args,
    )  # fmt: skip
    assert res.exit_code == 0, res
    return res


def _page_text(path: Path) -> str:
    """report.html's words: no style sheet, no data: URIs, no tags."""
    page = re.sub(r"<style>.*?</style>", "", path.read_text(encoding="utf-8"), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"data:image/png;base64,[^\"]+", "", page)))


def test_a_run_without_a_test_split_calls_its_figures_cross_validated(
    run_cli: Any, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cv0"
    res = _text_run(run_cli, tiny_bert_dir, text_csv, out, "--cv", "3", "--test-fraction", "0")
    card, page = (out / "README.md").read_text(encoding="utf-8"), _page_text(out / "report.html")
    for text in (res.output, card, page):
        assert "untouched" not in text and "test accuracy" not in text and "held-out test set" not in text
    assert 'split: "cross-validation (3 folds)"' in card
    assert 'name: "cross-validated (3 folds) accuracy, 95% CI' in card
    assert "trained with tlzoo: cross-validated (3 folds) accuracy" in card
    assert "Cross-validated (3 folds) on all 150 examples: there is no test split" in card
    assert "on 150 cross-validated examples" in card and "| class |" not in card  # no empty per-class table
    assert "cross-validated (3 folds) accuracy" in page and "cross-validated examples 150" in page
    assert "No test example was confused" not in page and "no confusion matrix" in page
    assert "test examples per class none (no test split" in page
    # the fitted head learnt from all 150 rows (train + validation), and the log says so
    assert "fitted logreg on 150 examples" in res.output, res.output


def test_a_fitted_head_on_train_and_validation_logs_the_rows_it_learnt_from(
    run_cli: Any, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lr"
    res = _text_run(run_cli, tiny_bert_dir, text_csv, out)
    m = json.loads((out / "metrics.json").read_text())
    learnt = m["run"]["n_train"] + m["run"]["n_val"]
    assert m["trained_on"]["rows"] == learnt
    line = next(x for x in res.output.splitlines() if "fitted logreg on" in x)
    assert f"fitted logreg on {learnt} examples" in line and line.endswith("(the test split stays untouched)"), line
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "split: test" in card and "trained with tlzoo: test accuracy" in card  # a test split: test figures


def test_ablation_lines_name_their_head_and_predict_names_the_missing_input(
    small_items: Path, tiny_bert_dir: Path, run_cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "fused"
    res = run_cli(*_fused(small_items, tiny_bert_dir, out))
    assert res.exit_code == 0, res
    ablation = [line for line in res.output.splitlines() if line.startswith("  ablation")]
    assert ablation and all("logreg" in line for line in ablation), ablation
    assert any(line.strip().startswith("ablation (logreg) title") for line in ablation), ablation
    # tl predict on a table without one of the run's input columns: the columns the run reads, and the fix
    table = tmp_path / "new.csv"
    table.write_text("id,title\nn1,a funny film\n", encoding="utf-8")
    line = one_line_error(run_cli("predict", out, "--data", table), f"'{table}' has no column 'price'")
    assert "this run reads the input columns title, price" in line and "leaving a cell empty" in line
    # the fix works: the column there, its cell empty
    table.write_text("id,title,price\nn1,a funny film,\n", encoding="utf-8")
    ok = run_cli("predict", out, "--data", table)
    assert ok.exit_code == 0 and "price in 1 of 1" in ok.output, ok


def test_strict_inputs_makes_an_unreadable_image_fatal_in_one_line(
    small_items: Path, tiny_bert_dir: Path, run_cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "strict"
    image = ["-q", "--plugin", "image=lenet", "--no-pretrained", "--strict-inputs"]
    res = run_cli(*_fused(small_items, tiny_bert_dir, out, *image))
    line = one_line_error(res, "Cannot read image", "7.png", "record r7, column image", "--strict-inputs", out=out)
    assert "leave --strict-inputs out" in line


def test_strict_inputs_reads_every_image_and_counts_the_bad_ones(tmp_path: Path) -> None:
    from PIL import Image

    from tlzoo.api.errors import TlzooError
    from tlzoo.api.interfaces import Dataset
    from tlzoo.engine.run.strict_inputs import refuse_unreadable_images

    good, cut = tmp_path / "good.png", tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(good)
    Image.effect_noise((64, 64), 50).save(cut)
    cut.write_bytes(cut.read_bytes()[:-40])  # truncated: its header still opens
    ds = Dataset([str(good), str(good)], ["a", "b"], modality="vision", ids=["g1", "g2"])
    refuse_unreadable_images(ds)  # nothing to refuse
    bad = Dataset([str(good), str(cut), str(tmp_path / "gone.png")], ["a", "b", "a"], modality="vision")
    with pytest.raises(TlzooError) as info:
        refuse_unreadable_images(bad)
    assert str(info.value).startswith(f"Cannot read image '{cut}'") and "(and 1 more unreadable image)" in str(
        info.value
    )
    texts = Dataset(["a photo.png of a cat"], ["a"], modality="text")
    refuse_unreadable_images(texts)  # a text that looks like a file name is no image
