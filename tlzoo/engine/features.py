"""Feature extraction with an on-disk cache.

Features for (backbone, weights fingerprint, preprocessing incl. layer and pooling,
dataset content fingerprint, split) are computed once, streamed to disk in shards under
``$TLZOO_HOME/features/<key>/`` and read back by any later run that needs the same
features: another head, another seed for the head.  An entry is written into a private
``<key>.tmp-<pid>`` folder and renamed into place only after its manifest (rows, width,
a CRC-32 per shard) is written, so an interrupted extraction never looks complete; a
corrupt or truncated entry fails its check on load and is rebuilt.  A ``.tmp-<pid>``
folder whose process is gone (killed mid-extraction) is removed by the next cache use.
When the cache cannot be written (a full disk, a read-only or forbidden TLZOO_HOME),
extraction goes on in memory with a warning: the cache is an optimisation, never a
reason for a run to fail.

Under torchrun (see ``distributed.py``) each rank extracts a contiguous part of a split,
cut at batch boundaries; rank 0 gathers the parts, writes the entry exactly as one process
would (same key, same shards) and publishes it; then the other ranks read it, or receive
the rows from rank 0 where they cannot (a cache that is not on a shared file system).
Rank 0 alone checks the cache and tidies it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.api.interfaces import Backbone, BackboneFactory, BackboneRequest, Dataset
from tlzoo.engine import distributed
from tlzoo.engine.cache import remove_orphans
from tlzoo.infra.lifecycle import tlzoo_home  # noqa: F401  (re-exported: plugins import it from here)

SHARD_ROWS = 4096
CACHE_FORMAT = 2


# Request fields that never change a frozen backbone's features: augmentation applies to training
# examples only, train_backbone to later phases (declaring weights_files promises that), assets to
# tl predict; and the other modality's fields, which the backbone ignores.
NOT_FEATURES = ("augment", "train_backbone", "assets")
OTHER_MODALITY = {"text": ("image_size",), "vision": ("pooling", "max_length")}


def backbone_spec(plugin: str, request: BackboneRequest, weights_digest: str, modality: str = "") -> dict[str, Any]:
    """What decides the features of a backbone whose factory names its weight files
    (``BackboneFactory.weights_files``): the request and a digest of those files.  Known before
    the backbone is built, so a run whose every split is cached need not build it.  A
    feature-extraction run and a fine-tune run (whose head phase reads the same frozen features)
    share the entry, as do a text run given ``--image-size`` and one without it."""
    ignored = (*NOT_FEATURES, *OTHER_MODALITY.get(modality, ()))
    return {
        "backbone": f"{plugin}/{request.model}",
        "request": {k: v for k, v in request.to_json().items() if k not in ignored},
        "weights_files": weights_digest,
    }


def feature_spec(factory: BackboneFactory, request: BackboneRequest) -> dict[str, Any] | None:
    """:func:`backbone_spec` for ``request`` when its factory names the weight files and they are
    there (digested once per file version, ``tlzoo.infra.weights_digest``); None otherwise: random
    init, weights from the hub, or a factory without ``weights_files``, keyed by the fingerprint."""
    if factory.weights_files is None or not request.pretrained:
        return None
    files = factory.weights_files(request)
    if not files:
        return None
    from tlzoo.infra.weights_digest import digest

    try:
        return backbone_spec(factory.name, request, digest(files), factory.modality)
    except OSError:  # not readable here: building the backbone will say why
        return None


def key_parts(
    backbone: Backbone | None,
    dataset: Dataset,
    split: str = "",
    fingerprint: str | None = None,
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything that decides the features; the cache key is a hash of it.

    ``spec`` (:func:`backbone_spec`): the request and the digest of the weight files stand for
    the backbone (which may then be None).  Otherwise the backbone's ``fingerprint()`` (a hash of
    every weight tensor, and the fitted state of a FittableBackbone) and ``preprocessing()`` do;
    ``fingerprint``: that value when the caller already computed it.  Random-init backbones and
    those whose weights come from the hub always key this way, so the two kinds never collide.
    """
    if spec is not None:
        return {"format": CACHE_FORMAT, **spec, "dataset": dataset.fingerprint(), "split": split}
    assert backbone is not None, "key_parts needs a backbone or a spec"
    return {
        "format": CACHE_FORMAT,
        "backbone": f"{backbone.plugin}/{backbone.name}",
        "weights": fingerprint or backbone.fingerprint(),  # the weights themselves, not just their name
        "preprocessing": backbone.preprocessing(),  # resize/normalise, tokenizer, layer, pooling ...
        "num_features": backbone.num_features,
        "dataset": dataset.fingerprint(),  # content and ids of exactly these examples
        "split": split,
    }


def _labels(backbone: Backbone, dataset: Dataset) -> dict[str, Any]:
    """What ``tl cache ls`` shows beside the key: the model, the dataset, where the weights came from."""
    return {
        "plugin": backbone.plugin,
        "model": backbone.name,
        "dataset_name": dataset.name,
        "weights_source": backbone.weights_source,  # "random init" too
    }


class _CacheRefused(Exception):
    """The cache refused a write (full, read-only, forbidden): ``error``, and ``done``, the rows
    written before it (None when they cannot be read back)."""

    def __init__(self, error: OSError, done: list[np.ndarray] | None) -> None:
        super().__init__(str(error))
        self.error, self.done = error, done


def _write_entry(cache: FeatureCache, key: str, info: dict[str, Any], blocks: Any, width: int) -> None:
    """Stream feature ``blocks`` into the entry ``key`` and publish it (``width`` when there are no
    rows); :class:`_CacheRefused` when the disk refuses, nothing half-written left behind."""
    try:
        writer = cache.writer(key, info)
    except OSError as exc:
        raise _CacheRefused(exc, []) from None
    try:
        for block in blocks:
            writer.add(block)
        if writer.width == 0:
            writer.width = width
        writer.close()
    except OSError as exc:
        try:
            done: list[np.ndarray] | None = writer.recover()
        except OSError:
            done = None
        writer.abort()
        raise _CacheRefused(exc, done) from None
    except BaseException:
        writer.abort()
        raise


def cache_key(
    backbone: Backbone | None,
    dataset: Dataset,
    split: str = "",
    fingerprint: str | None = None,
    spec: dict[str, Any] | None = None,
) -> str:
    return _hash(key_parts(backbone, dataset, split, fingerprint, spec))


def cached_splits(cache: FeatureCache, spec: dict[str, Any], splits: dict[str, Dataset]) -> CachedSplits | None:
    """Every split's features from the cache, keyed by ``spec``, and what stands in for the backbone
    (``UnbuiltBackbone``), or None unless every split is there, whole, with that description."""
    cache.tidy()
    features: dict[str, np.ndarray] = {}
    keys: dict[str, str] = {}
    reports: dict[str, str] = {}
    info: dict[str, Any] | None = None
    for split, dataset in splits.items():
        key = keys[split] = cache_key(None, dataset, split, spec=spec)
        meta = cache.manifest(key)
        described = meta.get("unbuilt") if meta else None
        if not isinstance(described, dict):
            return None
        feats = cache.load(key)
        if feats is None:
            return None
        features[split], info = feats, described
        if meta and meta.get("input_report"):
            reports[split] = str(meta["input_report"])
    if info is None:
        return None
    return CachedSplits(features, keys, info, reports)


class CachedSplits:
    """What :func:`cached_splits` found: features and cache key per split, the backbone's description, and
    its input reports per split (``Backbone.input_report`` when the entry was written)."""

    def __init__(
        self,
        features: dict[str, np.ndarray],
        keys: dict[str, str],
        backbone: dict[str, Any],
        reports: dict[str, str] | None = None,
    ) -> None:
        self.features, self.keys, self.backbone = features, keys, backbone
        self.reports = reports or {}


def _hash(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _crc(path: Path) -> int:
    crc = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def _read_shards(folder: Path, meta: dict[str, Any]) -> np.ndarray:
    """An entry's rows in one array, read shard by shard through a read-only memory map into their
    place (the rows are held once; the old concatenation of the mapped shards held them twice at
    its peak, and at most one shard is mapped at a time here).

    The mapping itself is not returned: its touched pages count in the resident memory just as a
    copy does, and a cache file damaged in place while a run holds it would change that run's
    features under it (or end it with SIGBUS when truncated)."""
    rows, width = int(meta["rows"]), int(meta["width"])
    feats = np.empty((rows, width), np.float32)
    at = 0
    for shard in meta["shards"]:
        part = np.load(folder / shard["name"], mmap_mode="r", allow_pickle=False)
        if part.ndim != 2 or part.shape[1] != width or at + len(part) > rows:
            raise ValueError("shape mismatch")
        feats[at : at + len(part)] = part
        at += len(part)
        del part  # unmapped here, before the next shard is mapped
    if at != rows:
        raise ValueError("shape mismatch")
    return feats


class FeatureCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or tlzoo_home()) / "features"
        self._tidied = False

    def tidy(self) -> list[Path]:
        """Remove what killed extractions left (once per cache object; rank 0 alone in a process group:
        another node's live writer would look dead here)."""
        if self._tidied or not distributed.is_main():
            return []
        self._tidied = True
        return remove_orphans(self.root)

    def path(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> np.ndarray | None:
        """The cached features (read as :func:`_read_shards` says), or None (missing, partial or
        corrupt: removed, to be rebuilt)."""
        folder = self.path(key)
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            if folder.exists():  # partial entry (older layout, or a crash mid-rename)
                shutil.rmtree(folder, ignore_errors=True)
            return None
        try:
            meta = json.loads(manifest.read_text())
            for shard in meta["shards"]:
                path = folder / shard["name"]
                if path.stat().st_size != shard["bytes"] or _crc(path) != shard["crc32"]:
                    raise ValueError(f"shard {shard['name']} is damaged")
            feats = _read_shards(folder, meta)
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)  # corrupt: rebuild
            return None
        try:
            os.utime(manifest)  # last use, for `tl cache clear --older-than`
        except OSError:  # a read-only cache still serves its features
            pass
        return feats

    def manifest(self, key: str) -> dict[str, Any] | None:
        """The entry's manifest (what it holds and how it was made), or None when there is none."""
        try:
            meta = json.loads((self.path(key) / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def writer(self, key: str, info: dict[str, Any]) -> _ShardWriter:
        return _ShardWriter(self.path(key), info)


class _ShardWriter:
    """Streams feature blocks to ``.npy`` shards; ``close()`` publishes the entry atomically."""

    def __init__(self, folder: Path, info: dict[str, Any]) -> None:
        self.final = folder
        self.folder = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.info = info
        self.buffer: list[np.ndarray] = []
        self.shards: list[dict[str, Any]] = []
        self.rows = 0
        self.width = 0

    def add(self, block: np.ndarray) -> None:
        self.buffer.append(block.astype(np.float32, copy=False))
        self.width = block.shape[1]
        if sum(len(b) for b in self.buffer) >= SHARD_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        block = np.concatenate(self.buffer)
        path = self.folder / f"shard-{len(self.shards):05d}.npy"
        self._write_shard(path, block)
        self.shards.append({"name": path.name, "rows": len(block), "bytes": path.stat().st_size, "crc32": _crc(path)})
        self.buffer = []  # only now: a failed write keeps the rows for recover()
        self.rows += len(block)

    def _write_shard(self, path: Path, block: np.ndarray) -> None:
        np.save(path, block)

    def recover(self) -> list[np.ndarray]:
        """Every row added so far (shards already written, then the buffer), after a failed write."""
        blocks = [np.load(self.folder / s["name"], allow_pickle=False) for s in self.shards]
        return blocks + self.buffer

    def close(self) -> None:
        self._flush()
        meta = {**self.info, "rows": self.rows, "width": self.width, "shards": self.shards, "created": time.time()}
        (self.folder / "manifest.json").write_text(json.dumps(meta, indent=1, default=str))
        shutil.rmtree(self.final, ignore_errors=True)  # a stale or damaged entry under our key
        try:
            self.folder.rename(self.final)
        except OSError:  # another process published the same features first: keep theirs
            shutil.rmtree(self.folder, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
