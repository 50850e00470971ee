"""The feature cache: keyed by everything that decides the features, streamed in shards,
published atomically, damaged entries rebuilt; ``tl cache ls`` / ``tl cache clear``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import BackboneRequest, Dataset
from tlzoo.engine import features as feat
from tlzoo.engine.cache import cache_entries, clear_cache, parse_age
from tlzoo.engine.extraction import extract
from tlzoo.engine.features import FeatureCache, cache_key


@pytest.fixture(scope="module")
def backbone(tiny_bert_dir: Path):
    from tlzoo.engine.zoo import Zoo

    factory, model = Zoo().resolve_backbone("bert", "")
    b = factory.create(BackboneRequest(model=model, weights=str(tiny_bert_dir), max_length=16))
    b.plugin = "bert"
    return b


def _texts(n: int, tag: str = "") -> Dataset:
    words = "good bad film story plot funny dull love".split()
    texts = [" ".join(words[(i * k) % len(words)] for k in range(1, 6)) + tag for i in range(n)]
    return Dataset(texts, [str(i % 2) for i in range(n)], modality="text", name="toy")


def _extract(backbone, ds: Dataset, cache: FeatureCache, label: str = "train", logs: list[str] | None = None):
    return extract(
        backbone,
        ds,
        batch_size=4,
        device=torch.device("cpu"),
        cache=cache,
        progress=False,
        log=(logs.append if logs is not None else (lambda m: None)),
        label=label,
    )


def test_features_stream_to_shards_and_come_back_identical(backbone, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(feat, "SHARD_ROWS", 8)  # 30 rows -> 4 shards, written while the backbone runs
    cache = FeatureCache(tmp_path)
    ds = _texts(30)
    plain = extract(backbone, ds, batch_size=4, device=torch.device("cpu"), cache=None, progress=False)
    cached = _extract(backbone, ds, cache)
    np.testing.assert_array_equal(plain, cached)
    entry = cache.path(cache_key(backbone, ds, "train"))
    meta = json.loads((entry / "manifest.json").read_text())
    assert [s["rows"] for s in meta["shards"]] == [8, 8, 8, 6] and meta["rows"] == 30
    assert meta["split"] == "train" and meta["model"] == backbone.name


def test_second_read_never_runs_the_backbone(backbone, tmp_path: Path, monkeypatch) -> None:
    cache = FeatureCache(tmp_path)
    ds = _texts(12)
    first = _extract(backbone, ds, cache)
    calls = []
    monkeypatch.setattr(
        type(backbone),
        "forward",
        lambda self, batch: calls.append(1) or (_ for _ in ()).throw(AssertionError("the backbone ran")),
    )
    logs: list[str] = []
    again = _extract(backbone, ds, cache, logs=logs)
    np.testing.assert_array_equal(first, again)
    assert not calls and "read from cache" in logs[0]


def test_key_covers_split_dataset_pooling_and_weights(backbone, tiny_bert_dir: Path) -> None:
    from tlzoo.engine.zoo import Zoo

    ds = _texts(6)
    base = cache_key(backbone, ds, "train")
    assert cache_key(backbone, ds, "val") != base  # same examples, other split
    assert cache_key(backbone, _texts(6, " again"), "train") != base  # other content
    factory, model = Zoo().resolve_backbone("bert", "")
    cls_pool = factory.create(BackboneRequest(model=model, weights=str(tiny_bert_dir), max_length=16, pooling="cls"))
    cls_pool.plugin = "bert"
    assert cache_key(cls_pool, ds, "train") != base  # another pooling
    same = factory.create(BackboneRequest(model=model, weights=str(tiny_bert_dir), max_length=16))
    same.plugin = "bert"
    assert cache_key(same, ds, "train") == base  # rebuilt identically: same key
    with torch.no_grad():
        next(same.parameters()).add_(0.01)  # changed weights, same name
    assert cache_key(same, ds, "train") != base


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-manifest", "bad-json"])
def test_damaged_entries_are_rebuilt(backbone, tmp_path: Path, damage: str) -> None:
    cache = FeatureCache(tmp_path)
    ds = _texts(10)
    good = _extract(backbone, ds, cache)
    entry = cache.path(cache_key(backbone, ds, "train"))
    shard = entry / "shard-00000.npy"
    if damage == "flip":
        raw = bytearray(shard.read_bytes())
        raw[-5] ^= 0xFF  # one float's bits, same size: only the checksum notices
        shard.write_bytes(bytes(raw))
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-40])
    elif damage == "no-manifest":
        (entry / "manifest.json").unlink()
    else:
        (entry / "manifest.json").write_text("{not json")
    assert cache.load(cache_key(backbone, ds, "train")) is None and not entry.exists()
    logs: list[str] = []
    rebuilt = _extract(backbone, ds, cache, logs=logs)
    np.testing.assert_array_equal(good, rebuilt)
    assert "extracted and cached" in logs[0]


def test_interrupted_extraction_leaves_no_entry(backbone, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    ds = Dataset(["good film"] * 5 + [None] * 3, ["a"] * 8, modality="text", name="toy")  # type: ignore[list-item]

    class Boom(Exception):
        pass

    real = backbone.transform

    def transform(example, train):
        if example is None:
            raise Boom
        return real(example, train)

    backbone.transform = transform
    backbone.input_report = lambda examples: ""  # its own transform call would raise before extraction starts
    try:
        with pytest.raises(Boom):
            _extract(backbone, ds, cache)
    finally:
        del backbone.transform, backbone.input_report
    assert not any(cache.root.iterdir())  # neither an entry nor a .tmp folder is left


def test_cache_ls_and_clear(backbone, tmp_path: Path, monkeypatch, run_cli) -> None:
    monkeypatch.setenv("TLZOO_HOME", str(tmp_path))
    cache = FeatureCache()
    old, new = _texts(6), _texts(7)
    _extract(backbone, old, cache)
    _extract(backbone, new, cache, label="test")
    partial = cache.root / "feedbeef.tmp-999999999"  # an interrupted writer that no longer runs
    partial.mkdir()
    stale = cache.path(cache_key(backbone, old, "train")) / "manifest.json"
    past = time.time() - 3 * 86400
    os.utime(stale, (past, past))

    res = run_cli("cache", "ls")
    assert res.exit_code == 0, res
    assert "test" in res.stdout and "train" in res.stdout
    assert "removed 1 partial entry" in res.stderr and not partial.exists()  # its writer is gone: ls tidies it
    assert len(json.loads(run_cli("cache", "ls", "--json").stdout)) == 2

    partial.mkdir()  # clear removes a dead writer's folder too, whatever its age
    res = run_cli("cache", "clear", "--older-than", "2d")
    assert res.exit_code == 0 and "removed 2 entries" in res.stdout  # the 3-day-old one and the partial one
    left = cache_entries()
    assert [e.split for e in left] == ["test"] and left[0].rows == 7

    assert run_cli("cache", "clear", "--older-than", "soon").exit_code == 2
    assert clear_cache() and cache_entries() == []


def test_parse_age() -> None:
    assert parse_age("90s") == 90 and parse_age("30m") == 1800 and parse_age("12h") == 43200
    assert parse_age("7d") == parse_age("1w") == parse_age("7") == 7 * 86400
    with pytest.raises(TlzooError, match="e.g. 30m"):
        parse_age("3 days")
