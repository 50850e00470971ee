"""What a fused run reads from its columns (issue 16 §1, §3): the label never as an input, image cells relative
to the data file with or without a suffix, an image backbone on a column without images, a picture over the
pixel cap."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import fused_run_args, one_line_error


def _gone(out: Path) -> bool:
    return not out.exists() and not out.with_name(out.name + ".incomplete").exists()


@pytest.mark.parametrize("how", [["--tabular-columns", "label"], ["--plugin", "label=bert"]])
def test_the_label_column_cannot_be_an_input(
    how: list[str], run_cli: Any, small_items: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["run", "-q", "--plugin", "title=bert", "--weights", f"title={tiny_bert_dir}", *how, "--data", small_items]
    one_line_error(run_cli(*args, "--out", out), "Column 'label' is the --label-column; it cannot also be an input")
    assert _gone(out)


def test_image_cells_are_read_relative_to_the_file_with_or_without_a_suffix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from tlzoo.api.interfaces import DataOptions
    from tlzoo.plugins.fusion.records import RecordsSource

    folder = tmp_path / "data"
    (folder / "pics").mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 0, 0)).save(folder / "pics" / "p0", format="PNG")  # no suffix
    Image.new("RGB", (8, 8), (0, 200, 0)).save(folder / "pics" / "p1.png")
    (folder / "notes").write_text("not a picture", encoding="utf-8")
    (folder / "items.csv").write_text("image,title,label\npics/p0,notes,a\npics/p1.png,a film,b\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    ds = RecordsSource().load(str(folder / "items.csv"), DataOptions(fields=("image", "title")))
    assert [ex["image"] for ex in ds.examples] == [str(folder / "pics" / "p0"), str(folder / "pics" / "p1.png")]
    assert ds.examples[0]["title"] == "notes"  # a text naming a file that is no picture stays a text
    assert not any("lacking" in note for note in ds.notes), ds.notes


def test_an_image_backbone_on_a_column_without_images_is_one_line(
    run_cli: Any, small_items: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    res = run_cli(
        "run", "-q", "--plugin", "title=lenet", "--no-pretrained", "--tabular-columns", "price", "--data", small_items,
        "--head", "logreg", "--out", out,
    )  # fmt: skip
    line = one_line_error(res, "Column 'title' holds no readable image in the")
    assert "--plugin title=bert" in line and _gone(out)


def test_a_picture_over_the_pixel_cap_is_a_counted_stand_in_and_fatal_when_strict(
    run_cli: Any, small_items: Path, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    data = tmp_path / "items"
    shutil.copytree(small_items.parent, data)
    Image.new("RGB", (100, 100), (9, 9, 9)).save(data / "3.png")  # 10,000 pixels: over a cap of 5,000
    monkeypatch.setenv("TLZOO_MAX_IMAGE_PIXELS", "5000")
    more = ["--plugin", "image=lenet", "--no-pretrained"]  # -q only for the one-line check
    res = run_cli(*fused_run_args(data / "items.csv", tiny_bert_dir, tmp_path / "run", *more))
    assert res.exit_code == 0, res
    lacking = next(line for line in res.stderr.splitlines() if "records lacking an input" in line)
    assert "image in 2" in lacking, lacking  # the corrupt 7.png and the big 3.png
    strict = run_cli(
        *fused_run_args(data / "items.csv", tiny_bert_dir, tmp_path / "strict", *more, "--strict-inputs", "-q")
    )
    line = one_line_error(strict, "over the 5,000-pixel cap")
    assert "3.png" in line and _gone(tmp_path / "strict")
