"""One ``tl run`` as several processes: torchrun, a process group, DistributedDataParallel.

``torchrun --nproc-per-node N -m tlzoo run ...`` (or ``torchrun --no-python tl run ...``)
starts N copies of the same command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` set; several nodes join through torchrun's rendezvous.
``session()``, around each run, turns those variables into a process group (joined by the
first run, left at exit by ``teardown``): gloo on CPU, gloo for CPU tensors and NCCL for
GPU tensors with ``--device cuda`` (each process then uses the GPU of its ``LOCAL_RANK``).
Where ``WORLD_SIZE`` is absent or 1, nothing here does anything and a run is exactly the
one-process run.

Who does what in a run of N processes:

* feature extraction: each rank extracts a contiguous, batch-aligned part of every split;
  rank 0 gathers the parts and publishes the one cache entry (same key, same shards as a
  single process would write); the others read that entry, or receive the rows from
  rank 0 when the cache is not on a file system they share;
* training: DDP; every batch a one-process run forms (same seed, same shuffled order) is
  cut into one piece per rank and the losses weighted so that the averaged gradients are
  the whole batch's: ``--batch-size`` is the global batch and a run takes the same steps
  on any number of processes; training and validation sums are all-reduced, so every
  rank takes the same early-stopping / best-epoch decision;
* rank 0 alone: the ``--out`` lock, the run folder and everything in it (config.toml,
  checkpoints, history, plots, model, predictions, report, metrics), fitted
  (scikit-learn) heads, the test predictions; its metrics reach every rank at the end.

Errors that rank 0 meets while the others wait on it reach them as :class:`RelayedError`,
which the CLI does not print again.  Everything that needs torch imports it lazily, so the
CLI can ask ``is_main()`` without importing torch.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from tlzoo.api.errors import TlzooError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

T = TypeVar("T")

#: seconds a rank waits on the others (rank 0 may fit a large scikit-learn head alone meanwhile)
DEFAULT_TIMEOUT_S = 3600
_JOINED = False  # whether session() joined the process group (and teardown leaves it)


class RelayedError(TlzooError):
    """Raised on the other ranks when rank 0 failed at a point where they were waiting on it."""

    tlzoo_relayed = True


# --------------------------------------------------------------------------- where am I
def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def requested() -> bool:
    """Whether torchrun (or a launcher like it) asked for more than one process."""
    return _env_int("WORLD_SIZE", 1) > 1


def active() -> bool:
    """Whether a process group of more than one process is up (never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    dist = torch.distributed
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def rank() -> int:
    if active():
        import torch.distributed as dist

        return dist.get_rank()
    return _env_int("RANK", 0) if requested() else 0


RANK_SEED_STRIDE = 1_000_003  # under torchrun, rank r draws from seed + r * this: its own augmentation and dropout


def rank_seed(seed: int) -> int:
    """``seed`` on rank 0 (and in one process), a stream of its own on each other torchrun rank."""
    return seed + RANK_SEED_STRIDE * rank()


def world_size() -> int:
    if active():
        import torch.distributed as dist

        return dist.get_world_size()
    return max(1, _env_int("WORLD_SIZE", 1))


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0) if requested() else 0


def is_main() -> bool:
    """Rank 0, or the only process: the one that speaks and writes."""
    return rank() == 0


def is_relayed(exc: BaseException) -> bool:
    """An error rank 0 already reported (the CLI stays quiet on the other ranks)."""
    return bool(getattr(exc, "tlzoo_relayed", False))


# --------------------------------------------------------------------------- the process group
def _timeout() -> Any:
    from datetime import timedelta

    return timedelta(seconds=max(60, _env_int("TLZOO_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))


@contextmanager
def session(device: str = "auto") -> Iterator[None]:
    """Be in torchrun's process group for one run; nothing for one process.

    The group is joined by the first run of a process and kept for the next ones (a
    group destroyed and created again at once can meet the old one's rendezvous keys
    in torchrun's store); it is left when the process exits (``teardown``).  A run that
    ends well ends with a barrier, so no rank leaves while another still receives.
    A group the caller set up already is used as it is.
    """
    if not requested():
        yield
        return
    if not active():
        _join(device)
    yield
    barrier()


def _join(device: str) -> None:
    global _JOINED
    import atexit

    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise TlzooError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run one process.")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise TlzooError(
            f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set; start tl through torchrun "
            "(torchrun --nproc-per-node N -m tlzoo run ...)."
        )
    backend = "gloo"
    if (device.startswith("cuda") or device == "auto") and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if local_rank() >= count:
            raise TlzooError(
                f"LOCAL_RANK {local_rank()} but only {count} GPU(s) are visible; "
                f"use --nproc-per-node {count} or fewer on this node."
            )
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"  # collectives of CPU tensors (features, sums) stay on gloo
    # DistributedDataParallel imports torch.distributed.nn.functional, whose functions default to
    # ``group=group.WORLD``, read at import: imported once the group is up, they hold it for good, so
    # teardown's destroy_process_group could not free it, and the gloo worker threads ended during the
    # interpreter's shutdown, which now and then aborted a finished rank (SIGABRT, "terminate called
    # without an active exception").  Imported first, the defaults are None.
    import torch.distributed.nn.functional  # noqa: F401

    dist.init_process_group(backend, timeout=_timeout())
    _JOINED = True
    atexit.register(teardown)


def teardown() -> None:
    """Leave the process group this module joined (at exit; no barrier: a peer may be gone)."""
    global _JOINED
    if not _JOINED:
        return
    _JOINED = False
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """``cuda`` without an index becomes this process's GPU (its LOCAL_RANK) in a group."""
    if device.type == "cuda" and device.index is None and active():
        import torch

        return torch.device("cuda", local_rank())
    return device


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


# --------------------------------------------------------------------------- exchanging values
def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` as rank ``src`` holds it, on every rank (pickled)."""
    if not active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def run_on_main(fn: Callable[[], T]) -> T:
    """Rank 0 runs ``fn``; its result reaches every rank, and so does its failure.

    The other ranks raise :class:`RelayedError` with rank 0's message instead of waiting
    forever; rank 0 raises the original exception.
    """
    if not active():
        return fn()
    if is_main():
        try:
            value = fn()
        except BaseException as exc:
            message = str(exc) if isinstance(exc, TlzooError) else f"rank 0 stopped: {type(exc).__name__}: {exc}"
            try:
                broadcast_object(("error", message))
            except Exception:  # the others are gone already: rank 0's own error is what matters
                pass
            raise
        broadcast_object(("ok", value))
        return value
    try:
        reply: tuple[str, Any] = broadcast_object(("", None))  # rank 0's ("ok", value) or ("error", message)
    except Exception:  # rank 0 died without a word (SIGKILL): it, or torchrun, says why
        raise RelayedError("rank 0 stopped; see its message.") from None
    kind, value = reply
    if kind == "error":
        raise RelayedError(str(value))
    return value


def sum_all(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks (float64), the same on every rank."""
    if not active():
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def max_all(value: int) -> int:
    """The largest ``value`` over the ranks."""
    if not active():
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


# --------------------------------------------------------------------------- sharding rows
def batch_shards(n: int, batch_size: int, world: int | None = None) -> list[tuple[int, int]]:
    """Each rank's contiguous rows ``[lo, hi)`` of ``n``, cut at batch boundaries.

    Every batch a rank forms is then a batch one process forms too, so the rows come out
    as a single process computes them.
    """
    world = world or world_size()
    batches = math.ceil(n / batch_size) if n else 0
    out = []
    for r in range(world):
        lo, hi = r * batches // world, (r + 1) * batches // world
        out.append((min(n, lo * batch_size), min(n, hi * batch_size)))
    return out


def gather_rows(mine: np.ndarray, shards: list[tuple[int, int]], width: int) -> np.ndarray | None:
    """Every rank's rows in rank order, on rank 0 (``None`` elsewhere); ``mine``: ``(hi - lo, width)``."""
    import numpy as np
    import torch
    import torch.distributed as dist

    longest = max((hi - lo for lo, hi in shards), default=0)
    block = torch.zeros((longest, width), dtype=torch.float32)
    if len(mine):
        block[: len(mine)] = torch.from_numpy(np.ascontiguousarray(mine, dtype=np.float32))
    parts = [torch.empty_like(block) for _ in shards] if is_main() else None
    dist.gather(block, parts, dst=0)
    if parts is None:
        return None
    return np.concatenate([p[: hi - lo].numpy() for p, (lo, hi) in zip(parts, shards)]) if shards else block.numpy()


def broadcast_rows(rows: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Rank 0's ``rows`` (of ``shape``) on every rank."""
    import numpy as np
    import torch
    import torch.distributed as dist

    t = (
        torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        if is_main() and rows is not None
        else torch.empty(shape, dtype=torch.float32)
    )
    dist.broadcast(t, src=0)
    return t.numpy()


# --------------------------------------------------------------------------- training
class BatchShare:
    """This rank's piece of every batch a one-process run would form.

    It wraps the training loader's own batch sampler: every rank draws the same shuffled
    order from the same seeded generator (the one a one-process run uses, saved in its
    checkpoints), cuts each batch into ``world`` contiguous pieces and keeps piece
    ``rank``.  ``weight()`` tells the trainer, batch by batch, how many of the rows are
    real and how much its loss counts, so that the gradients DDP averages are those of
    the whole batch: a run takes the same steps on any number of processes.
    """

    def __init__(self, batches: Any, rank: int, world: int) -> None:
        from collections import deque

        self.batches, self.rank, self.world = batches, rank, world
        self.pending: Any = deque()  # (rows of ours, rows of the whole batch), in the order yielded

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        self.pending.clear()
        for batch in self.batches:
            batch = list(batch)
            lo, hi = self.rank * len(batch) // self.world, (self.rank + 1) * len(batch) // self.world
            self.pending.append((hi - lo, len(batch)))
            # a batch smaller than the group: a rank without rows still takes part, with weight 0
            yield batch[lo:hi] or batch[:1]

    def weight(self) -> tuple[float, int]:
        """(loss multiplier, real rows) of the next batch this rank trains on."""
        ours, whole = self.pending.popleft()
        return ours * self.world / whole, ours


def shard_loader(loader: DataLoader) -> DataLoader:
    """The training loader for this rank: its :class:`BatchShare` of ``loader``'s batches.

    Same dataset, collate function, workers and generator (so the shuffled order, the
    worker seeds and a checkpoint's generator state are a one-process run's); the share
    is reachable as ``loader.tlzoo_share``.
    """
    from torch.utils.data import DataLoader

    share = BatchShare(loader.batch_sampler, rank(), world_size())
    out = DataLoader(
        loader.dataset,
        batch_sampler=share,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
        persistent_workers=loader.persistent_workers,
    )
    out.tlzoo_share = share
    return out


def eval_loader(loader: DataLoader) -> DataLoader:
    """This rank's share of an evaluation loader: every ``world``-th example, nothing repeated."""
    from torch.utils.data import DataLoader, Subset

    part = Subset(loader.dataset, range(rank(), len(loader.dataset), world_size()))  # type: ignore[arg-type]
    return DataLoader(
        part,
        batch_size=loader.batch_size or 1,
        shuffle=False,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
    )


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` under DistributedDataParallel (its parameters stay the same objects).

    ``static_graph``: the set of parameters a forward uses never changes here, and it lets
    trainable parameters that the forward does not reach (a pooler with mean pooling, ...)
    be, without ``find_unused_parameters``' traversal of every backward.
    """
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else local_rank()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, static_graph=True)
