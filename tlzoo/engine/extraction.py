"""Feature extraction: a backbone over a dataset, in ordered chunks and prefetched batches, streamed
into the cache (:mod:`tlzoo.engine.features`) or kept in memory; under torchrun each rank extracts
a part and rank 0 publishes the entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tlzoo.api.backbone import Member
from tlzoo.api.interfaces import Backbone, Dataset, FittableBackbone
from tlzoo.engine import distributed
from tlzoo.engine.features import (
    FeatureCache,
    _CacheRefused,
    _hash,
    _labels,
    _write_entry,
    feature_spec,
    key_parts,
)
from tlzoo.engine.loaders import example_loader
from tlzoo.engine.training import to_device


@dataclass
class _Job:
    """How an extraction runs and what its log lines call it (``label``: the split, part of the key)."""

    batch_size: int
    device: torch.device
    num_workers: int
    progress: bool
    log: Callable[[str], None]
    label: str
    name: str = ""
    reports: dict[str, str] | None = None

    def what(self, dataset: Dataset) -> str:
        return f"{self.name or self.label or dataset.name} ({len(dataset)} examples)"

    def report(self, text: str, dataset: Dataset) -> str:
        """A backbone's :meth:`~Backbone.input_report` for ``dataset`` (see :func:`say_input_report`);
        returned for the cache entry."""
        say_input_report(self.name or self.label or dataset.name, text, self.log, self.reports)
        return text

    def blocks(self, backbone: Backbone, dataset: Dataset) -> Any:
        return _blocks(backbone, dataset, self.batch_size, self.device, self.num_workers, self.progress, self.label)


def say_input_report(where: str, text: str, log: Callable[[str], None], reports: dict[str, str] | None) -> None:
    """An input report (:meth:`Backbone.input_report`), if any: a warning in the log, kept in ``reports``
    under ``where`` (the split, or the fused input)."""
    if text:
        log(f"  warning: {where}: {text}")
        if reports is not None:
            reports[where] = text


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
    name: str = "",
    reports: dict[str, str] | None = None,
) -> np.ndarray:
    """Pooled features for every example, from the cache when possible.

    With a cache, blocks go straight to disk shards (never all held in memory while
    the backbone runs) and the result is read back from the published entry.  ``spec``
    (:func:`backbone_spec`) keys the entry by the request and the weight files instead of
    the fingerprint; the entry then also describes the backbone, so a later run with every
    split cached can leave it unbuilt (:func:`cached_splits`).  A backbone made of others
    (:meth:`Backbone.feature_members`, a fused run's) is extracted member by member, each under the key
    a run of that member alone uses, and joined.  ``name``: what the log lines call the dataset.
    ``reports``: filled with :meth:`Backbone.input_report` by what the log calls the dataset (from the
    cache entry on a hit), each also logged as a warning.
    """
    if not len(dataset):  # an empty split (--val-fraction 0): nothing for the backbone to run on
        return np.zeros((0, backbone.num_features), np.float32)
    job = _Job(batch_size, device, num_workers, progress, log, label, name, reports)
    if cache is None:
        job.report(backbone.input_report(dataset.examples), dataset)
        return _uncached(backbone, dataset, job)
    if backbone.feature_members():
        return _extract_members(backbone, dataset, cache, job, fingerprint)
    cache.tidy()
    parts = key_parts(backbone, dataset, label, fingerprint, spec)
    key = _hash(parts)
    info = {**parts, **_labels(backbone, dataset)}
    if spec is not None:
        from tlzoo.api.backbone import UnbuiltBackbone

        info["unbuilt"] = UnbuiltBackbone.describe(backbone, fingerprint or backbone.fingerprint())
    if distributed.active():
        return _extract_sharded(backbone, dataset, info, key, cache, job)
    hit = cache.load(key)
    if hit is not None:
        log(f"  features for {job.what(dataset)} read from cache {key}")
        job.report(str((cache.manifest(key) or {}).get("input_report", "")), dataset)
        return hit
    info["input_report"] = job.report(backbone.input_report(dataset.examples), dataset)
    return _extract_into(backbone, dataset, cache, key, info, job)


def _uncached(backbone: Backbone, dataset: Dataset, job: _Job) -> np.ndarray:
    blocks = list(job.blocks(backbone, dataset))
    return np.concatenate(blocks) if blocks else np.zeros((0, backbone.num_features), np.float32)


def _extract_into(
    backbone: Backbone, dataset: Dataset, cache: FeatureCache, key: str, info: dict[str, Any], job: _Job
) -> np.ndarray:
    """Extract and stream the features into the entry ``key``; in memory when the cache refuses them."""
    blocks = job.blocks(backbone, dataset)
    try:
        _write_entry(cache, key, info, blocks, backbone.num_features)
    except _CacheRefused as refused:
        if refused.done is None:  # the written shards cannot even be read back: start again in memory
            blocks.close()
            return _uncached(backbone, dataset, job)
        return _in_memory(blocks, refused.done, backbone, cache, refused.error, job.log)
    feats = cache.load(key)
    if feats is None:  # the disk refused the entry (full, read-only): still give the caller features
        job.log(f"  warning: could not cache features under {cache.root}; computing them again in memory")
        return _uncached(backbone, dataset, job)
    job.log(f"  features for {job.what(dataset)} extracted and cached as {key}")
    return feats


def _extract_members(
    backbone: Backbone, dataset: Dataset, cache: FeatureCache, job: _Job, fingerprint: str | None
) -> np.ndarray:
    """A backbone made of others: each member's features on its view of ``dataset``, keyed exactly as a
    run of that member alone keys them (its weight files and request, or its fingerprint; the caller's
    autocast suffix, ``/autocast-bfloat16``, carried over), then joined by the backbone."""
    suffix = "".join((fingerprint or "").partition("/")[1:])
    parts = []
    for member in backbone.feature_members():
        spec = member_spec(member, suffix.removeprefix("/autocast-"))
        parts.append(
            extract(
                member.backbone,
                member.view(dataset),
                batch_size=job.batch_size,
                device=job.device,
                num_workers=job.num_workers,
                cache=cache,
                progress=job.progress,
                log=job.log,
                label=job.label,
                fingerprint=member.backbone.fingerprint() + suffix,
                spec=spec,
                name=f"{job.label or dataset.name} [{member.name or member.backbone.name}]",
                reports=job.reports,
            )
        )
    feats = np.asarray(backbone.join_features(parts, dataset), dtype=np.float32)
    want = (len(dataset), int(backbone.num_features))
    if feats.shape != want:
        raise ValueError(f"{type(backbone).__name__}.join_features gave features of shape {feats.shape}, not {want}")
    return feats


def member_spec(member: Member, autocast: str = "") -> dict[str, Any] | None:
    """What keys a member's features: :func:`feature_spec` of the factory and request that built it, as a
    run of it alone computes it (None for a fitted member, or one without weight files: its fingerprint)."""
    if member.factory is None or member.request is None or isinstance(member.backbone, FittableBackbone):
        return None
    spec = feature_spec(member.factory, member.request)
    if spec is not None and autocast:
        spec = {**spec, "autocast": autocast}
    return spec


def _extract_sharded(
    backbone: Backbone, dataset: Dataset, info: dict[str, Any], key: str, cache: FeatureCache, job: _Job
) -> np.ndarray:
    """``extract`` on every rank of a process group: one cache entry, the same as one process writes."""
    what, log = job.what(dataset), job.log
    hit = cache.load(key) if distributed.is_main() else None
    if distributed.broadcast_object(hit is not None):  # rank 0 decides: a hit for one is a hit for all
        log(f"  features for {what} read from cache {key}")
        if distributed.is_main():
            job.report(str((cache.manifest(key) or {}).get("input_report", "")), dataset)
        return _everywhere(hit, cache, key, len(dataset))
    if distributed.is_main():
        info["input_report"] = job.report(backbone.input_report(dataset.examples), dataset)
    shards = distributed.batch_shards(len(dataset), job.batch_size)
    lo, hi = shards[distributed.rank()]
    blocks = list(job.blocks(backbone, dataset.subset(range(lo, hi))))
    width = distributed.max_all(blocks[0].shape[1] if blocks else 0) or backbone.num_features
    mine = np.concatenate(blocks) if blocks else np.zeros((0, width), np.float32)
    rows = distributed.gather_rows(mine, shards, width)
    if rows is None:  # not rank 0: the published entry, or rank 0's rows
        return _everywhere(None, cache, key, len(dataset))
    feats = _publish(cache, key, info, rows, job.batch_size, log)
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
        for rows in _forward(backbone, examples, batch_size, device, num_workers):
            yield rows
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
            yield from _in_given_order(backbone, chunk, order, run, batch_size)
    finally:
        bar.close()


def _forward(backbone: Backbone, examples: list[Any], batch_size: int, device: torch.device, num_workers: int) -> Any:
    """The backbone's features of ``examples``, one block per batch, in the given order."""
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
        yield backbone(to_device(batch, device)).float().cpu().numpy()


def _in_given_order(
    backbone: Backbone, chunk: list[Any], order: Any, run: Callable[[list[Any]], Any], batch_size: int
) -> Any:
    """``chunk`` run in the backbone's ``order``, its rows put back in the chunk's order, in batch-sized blocks."""
    index = np.asarray(range(len(chunk)) if order is None else order, dtype=np.int64)
    if sorted(index.tolist()) != list(range(len(chunk))):
        raise ValueError(f"{type(backbone).__name__}.extraction_order did not return a permutation")
    rows = np.concatenate(list(run([chunk[i] for i in index])))
    block = np.empty_like(rows)
    block[index] = rows  # back to the dataset's order
    for start in range(0, len(block), batch_size):  # batch-sized blocks, as in the given order
        yield block[start : start + batch_size]


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
