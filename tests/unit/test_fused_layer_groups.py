"""A fused backbone's layer groups line its inputs up from the top (issue 16: each backbone fine-tunes under
the same plan with its own discriminative learning rates)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from torch import nn

from tlzoo.api.strategies import Phase
from tlzoo.engine.training import TransferModel, param_groups, set_trainable
from tlzoo.plugins.fusion.fused import FusedBackbone


class Member(nn.Module):
    def __init__(self, depth: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(2, 2) for _ in range(depth))

    def layer_groups(self) -> list[nn.Module]:
        return list(self.blocks)


def fused(*depths: int) -> tuple[nn.Module, list[Member]]:
    members = [Member(d) for d in depths]
    holder = nn.Module()
    holder.members = nn.ModuleList(members)
    holder.layer_groups = lambda: FusedBackbone.layer_groups(SimpleNamespace(_backbones=lambda: members))  # type: ignore[assignment]
    return holder, members


def test_groups_are_aligned_from_each_inputs_top() -> None:
    holder, (deep, shallow) = fused(3, 1)
    groups = holder.layer_groups()
    assert len(groups) == 3
    top = {id(p) for p in groups[-1].parameters()}
    assert top == {id(p) for p in [*deep.blocks[2].parameters(), *shallow.blocks[0].parameters()]}
    assert {id(p) for p in groups[0].parameters()} == {id(p) for p in deep.blocks[0].parameters()}
    every = [id(p) for g in groups for p in g.parameters()]
    assert sorted(every) == sorted(id(p) for p in holder.parameters())  # disjoint and complete


@pytest.mark.parametrize("unfreeze", [1, 2])
def test_unfreezing_top_groups_trains_each_backbones_top_with_its_own_ladder(unfreeze: int) -> None:
    holder, (deep, shallow) = fused(3, 2)
    live = set_trainable(holder, unfreeze)  # type: ignore[arg-type]
    model = TransferModel(holder, nn.Linear(2, 2))  # type: ignore[arg-type]
    phase = Phase(name="joint", epochs=1, lr=1e-3, lr_decay=0.1, train_groups=unfreeze)
    lr_of = {id(p): g["lr"] for g in param_groups(model, live, phase) for p in g["params"]}
    for member in (deep, shallow):
        top = member.blocks[-1]
        assert all(lr_of[id(p)] == pytest.approx(1e-3) for p in top.parameters())
        if unfreeze == 2:
            assert all(lr_of[id(p)] == pytest.approx(1e-4) for p in member.blocks[-2].parameters())
    assert not any(id(p) in lr_of for p in deep.blocks[0].parameters())
