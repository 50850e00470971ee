"""Fused runs in every command (issue 16 goals 3 and 5): per-input cache keys shared with single-input runs,
--seeds, lr-find, and a corrupt image counted as a missing input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import fused_run_args as _fused


def _text(items: Path, bert: Path, out: Path) -> list[Any]:
    return ["run", "--plugin", "bert", "--weights", bert, "--text-column", "title", "--data", items,
            "--head", "logreg", "--device", "cpu", "--out", out]  # fmt: skip


def _lines(res: Any, what: str) -> list[str]:
    return [line for line in res.output.splitlines() if what in line]


@pytest.mark.parametrize("text_first", [True, False], ids=["text-then-fused", "fused-then-text"])
def test_a_fused_run_shares_the_text_features_of_a_text_run(
    text_first: bool,
    small_items: Path,
    tiny_bert_dir: Path,
    run_cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The title's features are cached under the key a text run uses: extracted once, whichever runs first."""
    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))  # a cache of its own: counts start at zero
    text, fused = _text(small_items, tiny_bert_dir, tmp_path / "t"), _fused(small_items, tiny_bert_dir, tmp_path / "f")
    first, second = (text, fused) if text_first else (fused, text)
    a, b = run_cli(*first), run_cli(*second)
    assert a.exit_code == 0 and b.exit_code == 0, (a, b)
    text_res, fused_res = (a, b) if text_first else (b, a)
    made = [line for line in _lines(a, "extracted and cached") if "[tabular]" not in line]
    assert len(made) == 3, a.output  # train, val, test of the title: once
    reused = _lines(b, "read from cache")
    assert len(reused) == 3, b.output
    if text_first:  # the fused run reads the title, extracts only the tabular encoder's features
        assert all("[title]" in line for line in reused)
        assert all("[tabular]" in line for line in _lines(b, "extracted and cached"))
    else:  # the text run needs nothing but the cached features: the backbone is not even built
        assert not _lines(b, "extracted and cached") and _lines(b, "not built, every split's features are cached")
    keys = {line.split()[-1] for line in _lines(text_res, "features for")}
    assert keys and keys <= {line.split()[-1] for line in _lines(fused_res, "[title]")}
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["test"]["n"] > 0


def test_a_corrupt_image_is_a_counted_placeholder(
    small_items: Path, tiny_bert_dir: Path, run_cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "img"
    res = run_cli(*_fused(small_items, tiny_bert_dir, out, "--plugin", "image=lenet", "--no-pretrained"))
    assert res.exit_code == 0, res
    lacking = _lines(res, "records lacking an input")
    assert lacking and "image in 1 of 48" in lacking[0], res.output


def test_seeds_on_a_fused_run_extract_once(
    small_items: Path, tiny_bert_dir: Path, run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))
    out = tmp_path / "seeds"
    res = run_cli(*_fused(small_items, tiny_bert_dir, out, "--seeds", "2"))
    assert res.exit_code == 0, res
    summary = json.loads((out / "seeds.json").read_text())
    assert len(summary["runs"]) == 2, summary
    assert len(_lines(res, "[title]") and _lines(res, "extracted and cached")) == 6  # title + tabular, 3 splits


def test_lr_find_on_a_fused_run(small_items: Path, tiny_bert_dir: Path, run_cli: Any, tmp_path: Path) -> None:
    args = _fused(small_items, tiny_bert_dir, tmp_path / "unused")[:-2]
    args = ["lr-find", *[a for a in args[1:] if a not in ("--head", "logreg")], "--out", tmp_path / "lr"]
    res = run_cli(*args)
    assert res.exit_code == 0, res
    found = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert found["suggestion"] > 0, found
