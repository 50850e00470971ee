"""Feature extraction: a backbone over a dataset, in ordered chunks and prefetched batches, streamed
into the cache (:mod:`tlzoo.engine.features`) or kept in memory; under torchrun each rank extracts
a part and rank 0 publishes the entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tlzoo.api.interfaces import Backbone, Dataset
from tlzoo.engine import distributed
from tlzoo.engine.features import FeatureCache, _CacheRefused, _hash, _labels, _write_entry, key_parts
from tlzoo.engine.loaders import example_loader


@torch.inference_mode()
def extract(
    backbone: Backbone,
    dataset: Dataset,
    *,
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
    cache: FeatureCache | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    label: str = "",
    fingerprint: str | None = None,
    spec: dict[str, Any] | None = None,
) -> np.ndarray:
    """Pooled features for every example, from the cache when possible.

    With a cache, blocks go straight to disk shards (never all held in memory while
    the backbone runs) and the result is read back from the published entry.  ``spec``
    (:func:`backbone_spec`) keys the entry by the request and the weight files instead of
    the fingerprint; the entry then also describes the backbone, so a later run with every
    split cached can leave it unbuilt (:func:`cached_splits`).
    """
    if not len(dataset):  # an empty split (--val-fraction 0): nothing for the backbone to run on
        return np.zeros((0, backbone.num_features), np.float32)
    if cache is None:
        blocks = [b for b in _blocks(backbone, dataset, batch_size, device, num_workers, progress, label)]
        return np.concatenate(blocks) if blocks else np.zeros((0, backbone.num_features), np.float32)
    cache.tidy()
    parts = key_parts(backbone, dataset, label, fingerprint, spec)
    key = _hash(parts)
    info = {**parts, **_labels(backbone, dataset)}
    if spec is not None:
        from tlzoo.api.backbone import UnbuiltBackbone

        info["unbuilt"] = UnbuiltBackbone.describe(backbone, fingerprint or backbone.fingerprint())
    if distributed.active():
        return _extract_sharded(
            backbone,
            dataset,
            info,
            key,
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            cache=cache,
            progress=progress,
            log=log,
            label=label,
        )
    hit = cache.load(key)
    if hit is not None:
        log(f"  features for {label or dataset.name} ({len(dataset)} examples) read from cache {key}")
        return hit

    def in_memory() -> np.ndarray:  # the cache failed us: the same extraction, without it
        return extract(
            backbone,
            dataset,
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            cache=None,
            progress=progress,
            log=log,
            label=label,
        )

    blocks = _blocks(backbone, dataset, batch_size, device, num_workers, progress, label)
    try:
        _write_entry(cache, key, info, blocks, backbone.num_features)
    except _CacheRefused as refused:
        if refused.done is None:  # the written shards cannot even be read back: start again in memory
            blocks.close()
            return in_memory()
        return _in_memory(blocks, refused.done, backbone, cache, refused.error, log)
    feats = cache.load(key)
    if feats is None:  # the disk refused the entry (full, read-only): still give the caller features
        log(f"  warning: could not cache features under {cache.root}; computing them again in memory")
        return in_memory()
    log(f"  features for {label or dataset.name} ({len(dataset)} examples) extracted and cached as {key}")
    return feats


def _extract_sharded(
    backbone: Backbone,
    dataset: Dataset,
    info: dict[str, Any],
    key: str,
    *,
    batch_size: int,
    device: torch.device,
    num_workers: int,
    cache: FeatureCache,
    progress: bool,
    log: Callable[[str], None],
    label: str,
) -> np.ndarray:
    """``extract`` on every rank of a process group: one cache entry, the same as one process writes."""
    what = f"{label or dataset.name} ({len(dataset)} examples)"
    hit = cache.load(key) if distributed.is_main() else None
    if distributed.broadcast_object(hit is not None):  # rank 0 decides: a hit for one is a hit for all
        log(f"  features for {what} read from cache {key}")
        return _everywhere(hit, cache, key, len(dataset))
    shards = distributed.batch_shards(len(dataset), batch_size)
    lo, hi = shards[distributed.rank()]
    blocks = list(_blocks(backbone, dataset.subset(range(lo, hi)), batch_size, device, num_workers, progress, label))
    width = distributed.max_all(blocks[0].shape[1] if blocks else 0) or backbone.num_features
    mine = np.concatenate(blocks) if blocks else np.zeros((0, width), np.float32)
    rows = distributed.gather_rows(mine, shards, width)
    if rows is None:  # not rank 0: the published entry, or rank 0's rows
        return _everywhere(None, cache, key, len(dataset))
    feats = _publish(cache, key, info, rows, batch_size, log)
    if feats is not None:
        log(f"  features for {what} extracted by {distributed.world_size()} processes and cached as {key}")
    return _everywhere(rows if feats is None else feats, cache, key, len(dataset), published=feats is not None)


def _publish(
    cache: FeatureCache, key: str, info: dict[str, Any], rows: np.ndarray, batch_size: int, log: Callable[[str], None]
) -> np.ndarray | None:
    """Write ``rows`` as the entry ``key`` in batch-sized blocks (the shards one process writes);
    the entry read back, or None when the cache refused it (the caller keeps ``rows``)."""
    try:
        blocks = (rows[i : i + batch_size] for i in range(0, len(rows), batch_size))
        _write_entry(cache, key, info, blocks, rows.shape[1])
    except _CacheRefused as refused:
        exc = refused.error
        log(
            f"  warning: cannot write the feature cache under {cache.root} ({exc.strerror or exc}); "
            "continuing in memory, features will not be cached"
        )
        return None
    feats = cache.load(key)
    if feats is None:
        log(f"  warning: could not cache features under {cache.root}; keeping them in memory")
    return feats


def _everywhere(feats: np.ndarray | None, cache: FeatureCache, key: str, n: int, published: bool = True) -> np.ndarray:
    """Rank 0's features (``feats`` there; ``published``: whether they are in the cache) on every
    rank: the others read the published entry, or receive the rows from rank 0."""
    published = distributed.broadcast_object(published)  # also the barrier: rank 0 has published by now
    if not distributed.is_main():
        feats = cache.load(key) if published else None
    width = distributed.broadcast_object(feats.shape[1] if feats is not None and distributed.is_main() else 0)
    if distributed.max_all(int(feats is None)):  # someone cannot read the entry (no shared file system)
        sent = distributed.broadcast_rows(feats, (n, width))
        if feats is None:
            feats = sent
    assert feats is not None
    return feats


def _in_memory(
    blocks: Any,
    done: list[np.ndarray],
    backbone: Backbone,
    cache: FeatureCache,
    exc: OSError,
    log: Callable[[str], None],
) -> np.ndarray:
    """Finish an extraction in memory after the cache refused a write, keeping the rows already done."""
    log(
        f"  warning: cannot write the feature cache under {cache.root} ({exc.strerror or exc}); "
        "continuing in memory, features will not be cached"
    )
    rest = list(blocks)
    parts = done + rest
    return np.concatenate(parts) if parts else np.zeros((0, backbone.num_features), np.float32)


SORT_CHUNK = 4096  # examples a backbone orders at a time (extraction_order): bounded memory, little padding


def _blocks(
    backbone: Backbone,
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    num_workers: int,
    progress: bool,
    label: str,
) -> Any:
    """Feature blocks in the dataset's order.

    A backbone whose ``extraction_order`` returns an order (text: longest first, so each batch
    pads little) runs ``SORT_CHUNK`` examples at a time in that order, and each chunk's rows are
    put back in the dataset's order before they are yielded.  Without ``num_workers`` the next
    batch is decoded / tokenised in a thread while the backbone runs on the current one.
    """
    from tqdm.auto import tqdm

    backbone.eval().to(device)
    bar = tqdm(
        total=-(-len(dataset) // batch_size),
        desc=f"extract {label}".strip(),
        unit="batch",
        leave=False,
        disable=None if progress else True,
        mininterval=1.0,
    )

    def run(examples: list[Any]) -> Any:
        loader = example_loader(
            examples,
            backbone,
            train=False,
            batch_size=batch_size,
            num_workers=num_workers,
            shuffle=False,
            device=device,  # pinned batches for a GPU
        )
        for batch in loader if num_workers else _prefetched(loader):
            yield backbone(_to(batch, device)).float().cpu().numpy()
            bar.update()

    try:
        order = backbone.extraction_order(dataset.examples[:SORT_CHUNK])
        if order is None:  # the given order: one pass, one loader (its workers start once)
            yield from run(dataset.examples)
            return
        for lo in range(0, len(dataset), SORT_CHUNK):
            chunk = dataset.examples[lo : lo + SORT_CHUNK]
            if lo:
                order = backbone.extraction_order(chunk)
            index = np.asarray(range(len(chunk)) if order is None else order, dtype=np.int64)
            if sorted(index.tolist()) != list(range(len(chunk))):
                raise ValueError(f"{type(backbone).__name__}.extraction_order did not return a permutation")
            rows = np.concatenate(list(run([chunk[i] for i in index])))
            block = np.empty_like(rows)
            block[index] = rows  # back to the dataset's order
            for start in range(0, len(block), batch_size):  # batch-sized blocks, as in the given order
                yield block[start : start + batch_size]
    finally:
        bar.close()


def _prefetched(batches: Any, depth: int = 2) -> Any:
    """``batches`` produced in a thread, up to ``depth`` ahead: decoding and tokenising overlap the
    forward pass (PIL, the tokenizers and torch release the GIL while they work)."""
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        q.put(("batch", batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(("error", exc))

    thread = threading.Thread(target=produce, name="tlzoo-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)  # from pinned memory: overlaps; the .cpu() after it syncs
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):  # a fused backbone's inputs: one batch per input
        return type(batch)(_to(v, device) for v in batch)
    return batch
