"""``check_strategy``: plans made from the default train config are well-formed for every head kind.

See :mod:`tlzoo.testing` for how a plugin's tests use it.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

from tlzoo.core.errors import TlzooError
from tlzoo.core.interfaces import Head, Plan, Strategy
from tlzoo.core.training import lr_schedule

def check_strategy(strategy: Strategy, head_classes: Sequence[type[Head]] | None = None,
                   train: Any = None) -> None:
    """A Strategy: plans made from the default train config are well-formed for every head kind.

    A strategy may refuse a head (e.g. fine-tune with a fitted head) with a TlzooError.
    """
    from tlzoo.core.config import TrainConfig

    assert isinstance(strategy.name, str) and strategy.name, "Strategy.name must be set"
    assert isinstance(strategy.description, str) and strategy.description, "Strategy.description must say what it does"
    train = train or TrainConfig()
    before = copy.deepcopy(train)
    heads = list(head_classes) if head_classes is not None else _default_head_classes()
    planned = 0
    for head_cls in heads:
        head = head_cls()
        try:
            plan = strategy.plan(head, train)
        except TlzooError as exc:
            assert str(exc) and "\n" not in str(exc).strip(), "a refusal must be one line"
            continue
        planned += 1
        assert isinstance(plan, Plan), f"plan() must return a Plan, got {type(plan).__name__}"
        assert plan == strategy.plan(head, train), "plan() is not deterministic"
        if head_cls.trainable:
            assert plan.phases, f"no phases planned for the trainable head '{head.name}'"
        for ph in plan.phases:
            assert ph.name and ph.epochs >= 0 and ph.lr > 0 and math.isfinite(ph.lr), f"bad phase {ph}"
            assert isinstance(ph.train_groups, int) and ph.train_groups >= -1, f"bad train_groups in {ph}"
            assert 0 <= ph.warmup_fraction < 1 and ph.lr_decay > 0, f"bad warm-up or decay in {ph}"
            lr_schedule(ph.schedule, 100, int(100 * ph.warmup_fraction))  # raises for unknown schedules
            if plan.extract_features:
                assert ph.train_groups == 0, "a feature-extraction plan may not train backbone groups"
            if not head_cls.trainable:
                assert ph.train_groups == 0, "a fitted head cannot train backbone groups"
    assert planned, "the strategy refused every head"
    assert train == before, "plan() must not modify the train config"


def _default_head_classes() -> list[type[Head]]:
    from tlzoo.core.zoo import Zoo

    return [cls for _, cls in Zoo().heads.items()]
