"""A second run on cached features builds no backbone (issue 10, goal 4), checked by behaviour.

Features of a backbone whose factory names its weight files (bert: the checkpoint folder) are keyed
by the request and a digest of those files; a later run whose every split is cached stands an
``UnbuiltBackbone`` in.  Random weights are keyed by their fingerprint and never share an entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def _config(text_csv: Path, weights: Path, out: Path, *extra: str) -> Any:
    from tlzoo.engine.config import RunConfig

    cfg = RunConfig()
    cfg.apply_overrides(
        [
            f"data.path={text_csv}",
            "model.plugin=bert",
            f"model.weights={weights}",
            "model.max_length=32",
            "train.epochs=2",
            f"out={out}",
            "progress=false",
            *extra,
        ]
    )
    return cfg


def test_a_second_run_with_another_head_builds_no_backbone(
    tiny_bert_dir: Path, text_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlzoo.engine.features import FeatureCache
    from tlzoo.facade import Engine
    from tlzoo.plugins.text import bert

    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))
    built: list[str] = []
    real = bert.TransformerBackbone.__init__

    def counting(self: Any, request: Any) -> None:
        built.append(request.model)
        real(self, request)

    monkeypatch.setattr(bert.TransformerBackbone, "__init__", counting)
    first_log: list[str] = []
    Engine(log=first_log.append).run(_config(text_csv, tiny_bert_dir, tmp_path / "a", "head.name=logreg"))
    assert len(built) == 1
    log: list[str] = []
    second = Engine(log=log.append).run(_config(text_csv, tiny_bert_dir, tmp_path / "b", "head.name=fc"))
    assert len(built) == 1, "the second run built the backbone"
    assert any("not built, every split's features are cached" in line for line in log), log
    assert sum("read from cache" in line for line in log) == 3
    assert 0 <= second.metrics["test"]["accuracy"] <= 1
    entries = list((FeatureCache().root).glob("*/manifest.json"))
    assert len(entries) == 3  # train, val, test: shared by both runs

    # the saved run predicts without the digest of other files: same weights, no fingerprint needed
    out = Engine(log=None).predict(tmp_path / "b", ["a charming film"])
    assert out[0]["label"] in out[0]["probabilities"]

    # random weights: keyed by their fingerprint, built every time, never the pretrained entries
    scratch: list[str] = []
    Engine(log=scratch.append).run(
        _config(text_csv, tiny_bert_dir, tmp_path / "c", "head.name=logreg", "model.pretrained=false")
    )
    assert len(built) == 3 and not any("read from cache" in line for line in scratch)  # predict built one
    assert len(list(FeatureCache().root.glob("*/manifest.json"))) == 6


def test_changed_weight_files_miss_the_cache(
    tiny_bert_dir: Path, text_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from tlzoo.facade import Engine

    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))
    weights = tmp_path / "weights"
    shutil.copytree(tiny_bert_dir, weights)
    Engine(log=None).run(_config(text_csv, weights, tmp_path / "a", "head.name=logreg"))
    config = weights / "config.json"
    config.write_text(config.read_text() + "\n")  # same weights, but another file: the digest changes
    log: list[str] = []
    Engine(log=log.append).run(_config(text_csv, weights, tmp_path / "b", "head.name=logreg"))
    assert not any("read from cache" in line for line in log), "a changed weight file still hit the cache"


def test_a_fine_tune_run_and_an_ignored_option_reuse_the_entries(
    tiny_bert_dir: Path, text_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fine-tuning's head phase reads the features a feature-extraction run cached (the same frozen
    backbone), and an option the text backbone ignores (--image-size) does not key a new entry."""
    from tlzoo.engine.features import FeatureCache
    from tlzoo.facade import Engine

    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))
    Engine(log=None).run(_config(text_csv, tiny_bert_dir, tmp_path / "a", "head.name=logreg"))
    assert len(list(FeatureCache().root.glob("*/manifest.json"))) == 3
    log: list[str] = []
    Engine(log=log.append).run(
        _config(text_csv, tiny_bert_dir, tmp_path / "b", "head.name=logreg", "model.image_size=64")
    )
    assert sum("read from cache" in line for line in log) == 3, log
    log.clear()
    Engine(log=log.append).run(
        _config(text_csv, tiny_bert_dir, tmp_path / "c", "train.strategy=fine-tune", "train.epochs=1")
    )
    assert sum("read from cache" in line for line in log) >= 1, log
    assert len(list(FeatureCache().root.glob("*/manifest.json"))) == 3
