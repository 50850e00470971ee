"""CSV/JSONL corpora and labelled tables are read by the same code: quoted newlines survive."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import DataOptions
from tlzoo.engine.corpus import CorpusOptions, read_corpus
from tlzoo.plugins.data.files import CSVSource

TEXTS = ["first line\nsecond line of the same review", "a plain one", 'quote "inside", and a comma']


def _write_csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i, t in enumerate(TEXTS):
            w.writerow([t, "ab"[i % 2]])
    return path


def test_corpus_and_dataset_keep_quoted_newlines(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "t.csv")
    assert read_corpus(str(path), CorpusOptions()) == TEXTS
    assert CSVSource().load(str(path), DataOptions()).examples == TEXTS


def test_jsonl_corpus_rejects_a_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps(["not", "an", "object"]) + "\n")
    with pytest.raises(TlzooError, match="line 2 is not a JSON object"):
        read_corpus(str(path), CorpusOptions())
