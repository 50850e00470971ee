"""The strategy contract: :data:`STRATEGY_CHECKS`, :class:`StrategyCase` and ``check_strategy``.

Every check takes ``(strategy, head_classes=None, train=None)``: the head classes to plan
for (default: every registered head) and the ``train`` config section (default:
``TrainConfig()``).  See :mod:`tlzoo.testing` for how a plugin's tests use them.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Plan, Strategy
from tlzoo.engine.training import lr_schedule

from ._rules import Check, default_zoo, defaults_of, rule
from .heads import is_trainable


def _default_head_classes() -> list[type]:
    return [cls for _, cls in default_zoo().heads.items()]


@rule
def check_strategy_attributes(
    strategy: Strategy, head_classes: Sequence[type] | None = None, train: Any = None
) -> None:
    """The strategy is a ``Strategy`` with a name, a description (``tl strategies`` shows both) and
    JSON-able ``defaults()``."""
    assert isinstance(strategy, Strategy), f"{type(strategy).__name__} must subclass tlzoo's Strategy"
    assert isinstance(strategy.name, str) and strategy.name, "Strategy.name must be set"
    assert isinstance(strategy.description, str) and strategy.description, (
        "Strategy.description must say what the strategy does"
    )
    try:
        json.dumps(defaults_of(strategy))
    except TypeError as exc:
        raise AssertionError(f"defaults() are not JSON-able ({exc})") from None


@rule
def check_strategy_plans(strategy: Strategy, head_classes: Sequence[type] | None = None, train: Any = None) -> None:
    """Plans for every head kind are well-formed and deterministic, and leave the config alone.

    A strategy may refuse a head (e.g. fine-tuning with a fitted head) with a one-line
    TlzooError, but not every head.  A trainable head gets at least one phase; a fitted
    head, or a feature-extraction plan, never trains backbone groups.
    """
    from tlzoo.engine.config import TrainConfig

    train = train if train is not None else TrainConfig()
    before = copy.deepcopy(train)
    heads = list(head_classes) if head_classes is not None else _default_head_classes()
    planned = 0
    for head_cls in heads:
        head = head_cls()
        try:
            plan = strategy.plan(head, train)
        except TlzooError as exc:
            assert str(exc) and "\n" not in str(exc).strip(), f"a refusal must be one line, got {str(exc)!r}"
            continue
        planned += 1
        assert isinstance(plan, Plan), f"plan() must return a Plan, got {type(plan).__name__}"
        assert plan == strategy.plan(head, train), f"plan() is not deterministic (head '{head.name}')"
        trainable = is_trainable(head_cls)
        if trainable:
            assert plan.phases, f"no phases planned for the trainable head '{head.name}'"
        extract = bool(getattr(plan, "extract_features", False))
        for ph in plan.phases:
            assert ph.name and ph.epochs >= 0 and ph.lr > 0 and math.isfinite(ph.lr), f"bad phase {ph}"
            assert isinstance(ph.train_groups, int) and ph.train_groups >= -1, f"bad train_groups in {ph}"
            assert 0 <= ph.warmup_fraction < 1 and ph.lr_decay > 0, f"bad warm-up or decay in {ph}"
            try:
                lr_schedule(ph.schedule, 100, int(100 * ph.warmup_fraction))
            except TlzooError as exc:
                raise AssertionError(f"phase '{ph.name}' has an unknown schedule: {exc}") from None
            if extract:
                assert ph.train_groups == 0, "a feature-extraction plan may not train backbone groups"
            if not trainable:
                assert ph.train_groups == 0, f"a fitted head ('{head.name}') cannot train backbone groups"
        if hasattr(plan, "trains_backbone"):
            trains = any(ph.train_groups != 0 for ph in plan.phases)
            assert bool(plan.trains_backbone) == trains, (
                f"plan.trains_backbone is {plan.trains_backbone} but the phases {'do' if trains else 'do not'} "
                "train backbone groups"
            )
    assert planned, "the strategy refused every head"
    assert train == before, "plan() must not modify the train config"


STRATEGY_CHECKS: tuple[Callable[..., None], ...] = (check_strategy_attributes, check_strategy_plans)
"""Every strategy check, each called as ``check(strategy, head_classes=None, train=None)``."""


def check_strategy(strategy: Strategy, head_classes: Sequence[type] | None = None, train: Any = None) -> None:
    """Run every check in :data:`STRATEGY_CHECKS`."""
    for check in STRATEGY_CHECKS:
        check(strategy, head_classes, train)


@dataclass(eq=False)
class StrategyCase:
    """A strategy for the checks (the object or its registered name), the heads to plan for and a train config."""

    strategy: Any
    head_classes: Sequence[type] | None = None
    train: Any = None
    id: str = ""
    zoo: Any = None

    def __post_init__(self) -> None:
        if not self.id:
            self.id = (
                self.strategy
                if isinstance(self.strategy, str)
                else str(getattr(self.strategy, "name", "") or type(self.strategy).__name__)
            )

    def resolve(self) -> Strategy:
        """The strategy object."""
        if isinstance(self.strategy, str):
            return (self.zoo or default_zoo()).strategies.get(self.strategy)
        return self.strategy

    def heads(self) -> Sequence[type] | None:
        """The head classes to plan for: those given, else every head of the case's zoo."""
        if self.head_classes is not None or self.zoo is None:
            return self.head_classes
        return [cls for _, cls in self.zoo.heads.items()]

    def checks(self) -> Iterator[Check]:
        """Every strategy check bound to this case."""
        for fn in STRATEGY_CHECKS:
            yield Check(fn, _with_heads)


def _with_heads(case: StrategyCase, rule: Callable[..., Any]) -> Any:
    return rule(case.resolve(), case.heads(), case.train)
