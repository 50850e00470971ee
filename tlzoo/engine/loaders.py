"""DataLoaders over raw examples: transforms run in workers, batches collate lazily."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset as TorchDataset

from tlzoo.api.interfaces import Backbone


class _Examples(TorchDataset):
    def __init__(
        self, examples: Sequence[Any], backbone: Backbone, train: bool, targets: np.ndarray | None = None
    ) -> None:
        self.examples, self.backbone, self.train, self.targets = examples, backbone, train, targets

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Any:
        x = self.backbone.transform(self.examples[i], self.train)
        if self.targets is None:
            return x
        return x, self.targets[i]


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator, the same on every torchrun rank: other ranks
    # move to a stream of their own (rank 0 and one process keep torch's seed), as seed_everything does
    from tlzoo.engine import distributed

    if distributed.rank():
        torch.manual_seed(distributed.rank_seed(torch.initial_seed()) % 2**63)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)


def example_loader(
    examples: Sequence[Any],
    backbone: Backbone,
    *,
    train: bool,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = False,
    targets: np.ndarray | None = None,
    seed: int = 0,
    device: torch.device | None = None,
) -> DataLoader:
    """Batches of ``backbone.transform``-ed examples (with their ``targets`` rows when given).

    ``device``: where the batches go; for a GPU the batches are collated into pinned memory,
    so that the copy to the GPU (``non_blocking=True`` in the training loop) overlaps the work."""

    def collate(items: list[Any]) -> Any:
        if targets is None:
            return backbone.collate(items)
        xs, ys = zip(*items)
        return backbone.collate(list(xs)), torch.as_tensor(np.stack(ys))

    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        _Examples(examples, backbone, train, targets),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate,
        worker_init_fn=_seed_worker,
        generator=g,
        persistent_workers=False,
        pin_memory=pin_memory(device),
    )


def pin_memory(device: torch.device | None) -> bool:
    """Pinned (page-locked) host memory pays only for copies to a CUDA device."""
    return device is not None and device.type == "cuda" and torch.cuda.is_available()
