"""Regressions found by a newcomer's and a hostile user's sweep of issues 16 and 17: each test failed before its fix."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from helpers import one_line_error

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import DataOptions


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_data_export_writes_the_multimodal_sets_that_tl_data_list_shows(run_cli: Any, tmp_path: Path) -> None:
    """`tl data export flags DIR` said "Unknown dataset 'flags'" although `tl data list` lists it."""
    from tlzoo.plugins.fusion.flags import FlagRecords
    from tlzoo.plugins.fusion.records import RecordsSource

    listed = run_cli("data", "list")
    assert listed.exit_code == 0 and "flags " in listed.stdout
    res = run_cli("data", "export", "flags", tmp_path / "f", "--limit", "25")
    assert res.exit_code == 0, res
    table = tmp_path / "f" / "flags.csv"
    rows = _rows(table)
    assert list(rows[0]) == ["id", "image", "name", "label"] and 20 <= len(rows) <= 30
    assert all(r["image"].startswith("images/") and (table.parent / r["image"]).is_file() for r in rows)
    by_id = {i: (e["name"], label) for i, e, label in zip(*_flag_columns(FlagRecords()))}
    assert all(by_id[r["id"]] == (r["name"], r["label"]) for r in rows)  # the records, not made-up ones
    # the CSV reads back as a fused run's records, its image paths relative to the file
    ds = RecordsSource().load(str(table), DataOptions(fields=("image", "name")))
    assert [e["name"] for e in ds.examples] == [r["name"] for r in rows]
    assert all(Path(e["image"]).is_file() and Path(e["image"]).is_absolute() for e in ds.examples)


def _flag_columns(source: Any) -> tuple[list[str], list[dict[str, str]], list[str]]:
    ds = source.load("flags", DataOptions(fields=("image", "name")))
    return ds.ids, ds.examples, ds.labels


def test_data_export_copies_the_image_files_of_a_vision_view_and_names_typos(run_cli: Any, tmp_path: Path) -> None:
    """A vision set whose examples are image files (flags-images) is copied per class; a typo gets did-you-mean."""
    res = run_cli("data", "export", "flags-images", tmp_path / "img", "--limit", "15")
    assert res.exit_code == 0, res
    files = sorted((tmp_path / "img").glob("*/*.png"))
    continents = {"Africa", "Americas", "Asia", "Europe", "Oceania"}
    assert 10 <= len(files) <= 20 and {f.parent.name for f in files} <= continents
    text = run_cli("data", "export", "flags-names", tmp_path / "txt", "--limit", "15")
    assert text.exit_code == 0 and list(_rows(tmp_path / "txt" / "flags-names.csv")[0]) == ["id", "text", "label"]
    bad = run_cli("data", "export", "flgs", tmp_path / "x")
    one_line_error(bad, "Unknown dataset 'flgs'", "'flags'", "tl data list", out=tmp_path / "x")


def _image_csv(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "imgs.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "caption", "label"])
        for i in range(4):
            Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / f"{i}.png")
            w.writerow([f"{i}.png", f"caption {i}", "ab"[i % 2]])
    return path


def test_an_image_csv_refuses_a_text_column_it_lacks_and_names_unused_columns(tmp_path: Path) -> None:
    """`--text-column nosuchcol` on an image CSV was ignored silently, and so was its caption column."""
    from tlzoo.plugins.data.files import ImageCSVSource

    path = _image_csv(tmp_path)
    with pytest.raises(TlzooError, match=r"no column 'nosuchcol' \(--text-column names the image-path column"):
        ImageCSVSource().load(str(path), DataOptions(text_column="nosuchcol"))
    ds = ImageCSVSource().load(str(path), DataOptions())  # the default column name falls back to 'path'
    assert len(ds) == 4 and ds.examples[0].endswith("0.png")
    assert any(n.startswith("columns not used: caption ") for n in ds.notes), ds.notes
    named = ImageCSVSource().load(str(path), DataOptions(text_column="path"))
    assert named.examples == ds.examples


def test_tl_run_on_an_image_csv_with_a_missing_text_column_is_one_line_at_step_2(run_cli: Any, tmp_path: Path) -> None:
    path = _image_csv(tmp_path)
    out = tmp_path / "run"
    res = run_cli("run", "-q", "--plugin", "lenet", "--data", path, "--text-column", "nosuchcol", "--out", out)
    one_line_error(res, "no column 'nosuchcol'", "Columns: path, caption, label", "--text-column", out=out)
