"""Feature extraction with an on-disk cache.

Features for (backbone weights + preprocessing, dataset content) are computed once,
streamed to disk in shards under ``$TLZOO_HOME/features/<key>/`` and read back by any
later run that needs the same features.  A manifest written last marks an entry as
complete, so an interrupted extraction is detected and rebuilt, never half-used.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .interfaces import Backbone, Dataset
from .loaders import example_loader

SHARD_ROWS = 4096


def tlzoo_home() -> Path:
    """``$TLZOO_HOME``, else ``$XDG_CACHE_HOME/tlzoo``, else ``~/.cache/tlzoo``."""
    if os.environ.get("TLZOO_HOME"):
        return Path(os.environ["TLZOO_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tlzoo"


def cache_key(backbone: Backbone, dataset: Dataset) -> str:
    h = hashlib.sha256()
    h.update(backbone.fingerprint().encode())
    h.update(json.dumps(backbone.preprocessing(), sort_keys=True, default=str).encode())
    h.update(dataset.fingerprint().encode())
    return h.hexdigest()[:24]


class FeatureCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or tlzoo_home()) / "features"

    def path(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> np.ndarray | None:
        folder = self.path(key)
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            if folder.exists():  # partial entry from an interrupted run
                shutil.rmtree(folder, ignore_errors=True)
            return None
        try:
            meta = json.loads(manifest.read_text())
            parts = [np.load(folder / name, mmap_mode="r") for name in meta["shards"]]
            feats = np.concatenate(parts) if parts else np.zeros((0, meta["width"]), np.float32)
            if feats.shape != (meta["rows"], meta["width"]):
                raise ValueError("shape mismatch")
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)  # corrupt: rebuild
            return None
        os.utime(manifest)  # last use, for `cache clear --older-than`
        return np.asarray(feats, dtype=np.float32)

    def writer(self, key: str, info: dict[str, Any]) -> "_ShardWriter":
        return _ShardWriter(self.path(key), info)


class _ShardWriter:
    def __init__(self, folder: Path, info: dict[str, Any]) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder, self.info = folder, info
        self.buffer: list[np.ndarray] = []
        self.shards: list[str] = []
        self.rows = 0
        self.width = 0

    def add(self, block: np.ndarray) -> None:
        self.buffer.append(block.astype(np.float32, copy=False))
        if sum(len(b) for b in self.buffer) >= SHARD_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        block = np.concatenate(self.buffer)
        self.buffer = []
        name = f"shard-{len(self.shards):05d}.npy"
        np.save(self.folder / name, block)
        self.shards.append(name)
        self.rows += len(block)
        self.width = block.shape[1]

    def close(self) -> None:
        self._flush()
        meta = {**self.info, "rows": self.rows, "width": self.width, "shards": self.shards,
                "created": time.time()}
        tmp = self.folder / "manifest.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(self.folder / "manifest.json")


@torch.inference_mode()
def extract(backbone: Backbone, dataset: Dataset, *, batch_size: int, device: torch.device,
            num_workers: int = 0, cache: FeatureCache | None = None,
            progress: bool = True, log: Callable[[str], None] = print, label: str = "") -> np.ndarray:
    """Pooled features for every example, from the cache when possible."""
    key = cache_key(backbone, dataset) if cache is not None else ""
    if cache is not None:
        hit = cache.load(key)
        if hit is not None:
            log(f"  features for {label or dataset.name} ({len(dataset)} examples) read from cache {key}")
            return hit
    backbone.eval().to(device)
    loader = example_loader(dataset.examples, backbone, train=False, batch_size=batch_size,
                            num_workers=num_workers, shuffle=False)
    writer = cache.writer(key, {"backbone": backbone.name, "plugin": backbone.plugin,
                                "dataset": dataset.name, "split": label}) if cache else None
    blocks: list[np.ndarray] = []
    from tqdm.auto import tqdm

    for batch in tqdm(loader, desc=f"extract {label}".strip(), unit="batch", leave=False,
                      disable=None if progress else True, mininterval=1.0):
        feats = backbone(_to(batch, device)).float().cpu().numpy()
        blocks.append(feats)
        if writer:
            writer.add(feats)
    if writer:
        writer.close()
    return np.concatenate(blocks) if blocks else np.zeros((0, backbone.num_features), np.float32)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch
