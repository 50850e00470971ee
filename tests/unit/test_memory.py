"""Flat memory as the data grows (issue 10, goal 7): cached features come back whole and owned
from several shards, the head's loader gathers one batch of rows at a time in the order the old
TensorDataset loader gave, and the allocator settings apply (glibc) or do nothing (elsewhere)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.engine import features as feat
from tlzoo.engine.features import FeatureCache
from tlzoo.engine.run.fit import FeatureRows, _as_batch
from tlzoo.infra import memory


def _entry(cache: FeatureCache, key: str, rows: np.ndarray, shard_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feat, "SHARD_ROWS", shard_rows)
    writer = cache.writer(key, {"what": "test"})
    for start in range(0, len(rows), 5):
        writer.add(rows[start : start + 5])
    writer.close()


def test_several_shards_come_back_as_one_owned_array(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = np.random.default_rng(0).normal(size=(47, 6)).astype(np.float32)
    cache = FeatureCache(tmp_path)
    _entry(cache, "k", rows, 10, monkeypatch)
    assert len(list(cache.path("k").glob("shard-*.npy"))) == 5
    got = cache.load("k")
    assert got is not None
    np.testing.assert_array_equal(got, rows)
    assert got.dtype == np.float32 and type(got) is np.ndarray and got.flags.owndata and got.flags.writeable
    # the entry damaged in place afterwards: the features already read do not change under the run
    shard = cache.path("k") / "shard-00000.npy"
    raw = bytearray(shard.read_bytes())
    raw[-4:] = b"\x00\x00\x80\x7f"
    shard.write_bytes(bytes(raw))
    np.testing.assert_array_equal(got, rows)


def test_one_shard_and_no_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FeatureCache(tmp_path)
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    _entry(cache, "one", rows, 4096, monkeypatch)
    np.testing.assert_array_equal(cache.load("one"), rows)
    writer = cache.writer("none", {})
    writer.width = 3
    writer.close()
    empty = cache.load("none")
    assert empty is not None and empty.shape == (0, 3)


def test_a_shard_of_the_wrong_width_is_a_damaged_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FeatureCache(tmp_path)
    _entry(cache, "k", np.ones((20, 4), np.float32), 10, monkeypatch)
    import json

    manifest = cache.path("k") / "manifest.json"
    meta = json.loads(manifest.read_text())
    meta["width"] = 5  # the shards hold 4 columns: refused, removed, rebuilt by the caller
    manifest.write_text(json.dumps(meta))
    assert cache.load("k") is None and not cache.path("k").exists()


def test_feature_rows_give_the_tensordataset_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(1).normal(size=(70, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(70) % 3]
    gathered: list[int] = []
    real_take = np.take

    def counting_take(a, index, axis=None):  # type: ignore[no-untyped-def]
        gathered.append(len(index))
        return real_take(a, index, axis=axis)

    monkeypatch.setattr(np, "take", counting_take)

    def loader(ds: torch.utils.data.Dataset, **kw: object) -> torch.utils.data.DataLoader:
        g = torch.Generator()
        g.manual_seed(5)
        return torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, generator=g, **kw)  # type: ignore[arg-type]

    new = list(loader(FeatureRows(x, y), collate_fn=_as_batch))
    old = list(loader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))))
    assert len(new) == len(old) == 5
    for (a, b), (c, d) in zip(new, old):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert gathered == [16, 16, 16, 16, 6]  # one batch of rows copied at a time, never the whole array
    assert _as_batch([(torch.ones(2), torch.zeros(1))] * 3)[0].shape == (3, 2)  # one-index samplers


def test_a_read_only_memory_map_trains_without_a_copy_or_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "f.npy"
    np.save(path, np.ones((8, 2), np.float32))
    mapped = np.load(path, mmap_mode="r")
    ds = FeatureRows(mapped, np.zeros((8, 2), np.float32))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a non-writable array handed to from_numpy
        xb, yb = ds.__getitems__([0, 3, 5])
        x1, _ = ds[2]
    assert xb.shape == (3, 2) and x1.shape == (2,)


def test_allocator_settings_apply_on_glibc_and_never_fail() -> None:
    applied = memory.fix_mmap_threshold()
    memory.trim()
    if sys.platform.startswith("linux") and memory._libc() is not None:
        assert applied
    else:
        assert not applied


# --------------------------------------------------------------------------- image size and batch memory (issue 17 §9)
def test_image_size_is_bounded_in_its_declaration(run_cli) -> None:
    from helpers import one_line_error

    res = run_cli("run", "--plugin", "mobilenet", "--data", "digits", "--image-size", "100000")
    one_line_error(res, "--image-size", "from 1 to 1024", "got 100000")
    from tlzoo.engine.config import RunConfig

    cfg = RunConfig()
    cfg.model.image_size = 1024
    cfg.validate()  # the largest real models still run


def test_a_batch_that_cannot_fit_is_refused_before_any_work(run_cli, tmp_path: Path, monkeypatch) -> None:
    from helpers import one_line_error

    monkeypatch.setattr(memory, "available_bytes", lambda: 2 * 10**9)
    out = tmp_path / "run"
    res = run_cli(
        "run", "--plugin", "mobilenet", "--data", "digits", "--image-size", "1024", "--batch-size", "512", "-q",
        "--out", out,
    )  # fmt: skip
    line = one_line_error(res, "--batch-size", "--image-size", "2.0 GB is available", out=out)
    assert "at most 39 at this size" in line  # 2e9 // (3 * 1024**2 * 4 bytes * 4 copies)


def test_image_batch_bytes_and_the_check() -> None:
    assert memory.image_batch_bytes(2, 10) == 2 * 3 * 100 * 4 * memory.COPIES_PER_BATCH
    memory.check_image_batch(32, 224, 10**10)  # 77 MB: fits
    memory.check_image_batch(10**6, 1024, None)  # unknown memory (not Linux): never refused
    with pytest.raises(TlzooError, match="lower --batch-size"):
        memory.check_image_batch(1000, 1024, 10**9)
