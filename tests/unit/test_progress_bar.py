"""The progress bar of a training phase (issue 16/17 loose ends): one loader iterator per epoch, and the
same seeded batch orders as when the bar wrapped the loader: its tqdm.auto started and dropped
an iterator of its own every epoch (with --num-workers N, a second set of worker processes)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tlzoo.api.interfaces import Phase
from tlzoo.engine.loop.callbacks import draw_as_a_dropped_iterator
from tlzoo.engine.training import History, Trainer, soft_cross_entropy


class Rows(Dataset):
    """Row i: features (i, 1, 1, 1) and a one-hot class, so a batch tells which rows it holds."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor([float(i), 1.0, 1.0, 1.0]), torch.eye(2)[i % 2]


class CountingLoader(DataLoader):
    """A DataLoader that counts the iterators made of it."""

    made = 0

    def __iter__(self) -> Any:
        CountingLoader.made += 1
        return super().__iter__()


class Seen(nn.Module):
    """A linear model that records the rows of every training batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.rows: list[list[int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.rows.append([int(v) for v in x[:, 0]])
        return self.linear(x)


def _loader(cls: type[DataLoader] = DataLoader, workers: int = 0, seeded: bool = True) -> DataLoader:
    generator = torch.Generator().manual_seed(7) if seeded else None
    return cls(Rows(), batch_size=8, shuffle=True, generator=generator, num_workers=workers)


def _orders_with_a_dropped_iterator(loader: DataLoader, epochs: int) -> list[list[int]]:
    """Each epoch's batch rows as the wrapping bar drew them: an iterator made and dropped, then the epoch's."""
    out = []
    for _ in range(epochs):
        iter(loader)
        out += [[int(v) for v in x[:, 0]] for x, _ in loader]
    return out


def test_a_phase_makes_one_loader_iterator_per_epoch_and_draws_the_same_batches() -> None:
    CountingLoader.made = 0
    torch.manual_seed(0)
    model = Seen()
    trainer = Trainer(device=torch.device("cpu"), loss=soft_cross_entropy(0.0), history=History(None), progress=False)
    loader = _loader(CountingLoader)
    trainer.run_phase(model, Phase("head", 3, 0.01), [{"params": list(model.parameters()), "lr": 0.01}], loader, None)
    assert CountingLoader.made == 3  # before: 6, two per epoch
    assert model.rows == _orders_with_a_dropped_iterator(_loader(), 3)


@pytest.mark.parametrize(
    "workers, seeded", [(0, True), (0, False), (1, True)], ids=["generator", "global-rng", "one-worker"]
)
def test_the_draws_of_a_dropped_iterator_are_made_without_one(workers: int, seeded: bool) -> None:
    """Same orders and the same generator (or global RNG) state after, also where a worker prefetches indices."""
    torch.manual_seed(3)
    before = _orders_with_a_dropped_iterator(_loader(workers=workers, seeded=seeded), 2)
    old_state = torch.get_rng_state()
    torch.manual_seed(3)
    loader = _loader(workers=workers, seeded=seeded)
    now = []
    for _ in range(2):
        draw_as_a_dropped_iterator(loader)
        now += [[int(v) for v in x[:, 0]] for x, _ in loader]
    assert now == before
    assert torch.equal(torch.get_rng_state(), old_state)


def test_other_iterables_still_get_an_iterator_made_and_dropped() -> None:
    made = []

    class Batches:
        def __iter__(self) -> Any:
            made.append(1)
            return iter([])

    draw_as_a_dropped_iterator(Batches())
    draw_as_a_dropped_iterator([1, 2])
    assert made == [1]
