"""``parametrize_with_checks`` and ``checks_for``: one test per object and check, as scikit-learn does.

Objects of every kind go in one list; each becomes a *case* (:class:`BackboneCase`,
:class:`HeadCase`, :class:`StrategyCase`, :class:`DataSourceCase`, :class:`PretrainerCase`)
that knows how to supply its checks' arguments, and every check of its kind becomes one
pytest test with the id ``<case id>-<check name>``::

    @parametrize_with_checks([BackboneCase("my-plugin", BackboneRequest("my-model", pretrained=False)),
                              MyHead, MyStrategy(), DataSourceCase(MySource(), "tests/data/tiny.csv")])
    def test_contract(case, check):
        check(case)

:func:`uncovered` is the completeness guard: what a zoo (or one plugin) registers that
no case checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tlzoo.api import interfaces
from tlzoo.api.interfaces import (
    Backbone,
    BackboneFactory,
    BackboneRequest,
    DataSource,
    Pretrainer,
    Strategy,
)

from ._rules import Check, default_zoo
from .backbones import BackboneCase
from .commands import COMMAND_CHECKS, EXTRA_KINDS, CommandCase, registered_extras
from .data_sources import DataSourceCase
from .heads import HeadCase
from .pretrainers import PretrainerCase
from .strategies import StrategyCase

Case = BackboneCase | HeadCase | StrategyCase | DataSourceCase | PretrainerCase | CommandCase
CASE_TYPES = (BackboneCase, HeadCase, StrategyCase, DataSourceCase, PretrainerCase, CommandCase)


def _head_classes() -> tuple[type, ...]:
    return tuple(
        t for t in (getattr(interfaces, n, None) for n in ("Head", "TorchHead", "FittedHead")) if isinstance(t, type)
    )


def _unwrap(obj: Any) -> tuple[Any, Any, str | None]:
    """(object, marks, id) of a ``pytest.param(obj, ...)``; (obj, (), None) for anything else."""
    if type(obj).__name__ == "ParameterSet" and type(obj).__module__.partition(".")[0] in ("pytest", "_pytest"):
        if len(obj.values) != 1:
            raise TypeError(f"pytest.param must wrap exactly one object, got {len(obj.values)}")
        return obj.values[0], obj.marks, obj.id
    return obj, (), None


def as_case(obj: Any) -> Case:
    """The case for ``obj``.

    Accepted: a case; a built :class:`Backbone`; a :class:`BackboneFactory` (its default
    model, random init) or a ``(factory, BackboneRequest)`` pair; a head class; a
    :class:`Strategy`; a ``(DataSource, location)`` pair; a :class:`Pretrainer` (default
    options: give a :class:`PretrainerCase` with tiny ones to keep it fast).
    """
    if isinstance(obj, CASE_TYPES):
        return obj
    if isinstance(obj, Backbone):
        return BackboneCase(backbone=obj)
    if isinstance(obj, BackboneFactory):
        return BackboneCase(obj)
    if isinstance(obj, type) and issubclass(obj, _head_classes()):
        return HeadCase(obj)
    if isinstance(obj, Strategy):
        return StrategyCase(obj)
    if isinstance(obj, Pretrainer):
        return PretrainerCase(obj)
    if isinstance(obj, tuple) and len(obj) == 2:
        first, second = obj
        if isinstance(first, DataSource):
            return DataSourceCase(first, second)
        if isinstance(second, BackboneRequest) or callable(second):
            return BackboneCase(first, second)
    raise TypeError(
        f"don't know which checks apply to {obj!r}: give a backbone, a (factory, request) pair, "
        "a head class, a strategy, a (data source, location) pair, a pretrainer, or a *Case"
    )


def checks_for(obj: Any) -> Iterator[tuple[Case, Check]]:
    """Every ``(case, check)`` that applies to ``obj`` (see :func:`as_case`); ``check(case)`` runs one.

    ``check.__name__`` names the rule; a failure raises an AssertionError whose message
    starts with it, a check that cannot apply raises :class:`unittest.SkipTest`.
    """
    case = as_case(obj)
    for check in case.checks():
        yield case, check


def parametrize_with_checks(objects: Iterable[Any]) -> Any:
    """A pytest decorator: one test per object and check, with the id ``<case id>-<check name>``.

    The decorated test takes ``case`` and ``check`` and calls ``check(case)``.  An object
    may be wrapped in ``pytest.param(obj, marks=..., id=...)``: the marks apply to every
    check of it, the id replaces the case's.  Cases are built lazily, when their first
    check runs, so collecting the tests stays cheap.
    """
    import pytest

    params = []
    for given in objects:
        obj, marks, given_id = _unwrap(given)
        case = as_case(obj)
        if given_id:
            case.id = given_id
        for _, check in checks_for(case):
            params.append(pytest.param(case, check, id=f"{case.id}-{check.__name__}", marks=marks))
    return pytest.mark.parametrize(("case", "check"), params)


def _covered_name(case: Case) -> tuple[str, str] | None:
    """(kind, registered name) a case checks, if it checks something registered."""
    if isinstance(case, CommandCase):
        return "commands", case.path
    if isinstance(case, BackboneCase):
        f = case.factory
        if isinstance(f, str) and ":" not in f:
            return "backbones", f
        if isinstance(f, BackboneFactory):
            return "backbones", f.name
        return None
    field, kind = {
        HeadCase: ("head", "heads"),
        StrategyCase: ("strategy", "strategies"),
        DataSourceCase: ("source", "data_sources"),
        PretrainerCase: ("pretrainer", "pretrainers"),
    }[type(case)]
    obj = getattr(case, field)
    return kind, obj if isinstance(obj, str) else str(getattr(obj, "name", ""))


def _models(case: Case) -> set[str]:
    """The catalogued model names a backbone case builds (its request's model, or a model named as its factory)."""
    if not isinstance(case, BackboneCase):
        return set()
    names = {case.factory} if isinstance(case.factory, str) else set()
    request = getattr(case, "request", None)
    if isinstance(request, BackboneRequest) and request.model:
        names.add(request.model)
    return names


def uncovered(
    objects: Iterable[Any], zoo: Any = None, plugin: str | None = None, exempt: Iterable[str] = ()
) -> dict[str, list[str]]:
    """What the zoo registers and no case checks, by kind: ``backbones``, ``heads``, ``strategies``,
    ``data_sources``, ``pretrainers``, and what plugins add besides: ``commands`` (``tl`` paths,
    covered by a :class:`CommandCase`), ``catalogue`` (model names, covered by a
    :class:`BackboneCase` of that model) and ``step_wrappers`` (``plugin:function``: a wrapper runs only
    in a run, so a test of yours runs it and ``exempt`` names it); each a sorted list, possibly empty.

    ``plugin`` limits it to what one plugin registered (a third-party suite guards its own
    plugin); ``exempt`` names things deliberately left out.  Objects may be wrapped in
    ``pytest.param``.
    """
    zoo = zoo or default_zoo()
    kinds = ("backbones", "heads", "strategies", "data_sources", "pretrainers", *EXTRA_KINDS)
    covered: dict[str, set[str]] = {k: set(exempt) for k in kinds}
    for obj in objects:
        case = as_case(_unwrap(obj)[0])
        got = _covered_name(case)
        if got:
            covered[got[0]].add(got[1])
        covered["catalogue"].update(_models(case))

    def owned(registry: Any, name: str) -> bool:
        return plugin is None or registry.owner.get(name) == plugin

    registered: dict[str, list[str]] = {
        kind: [n for n in getattr(zoo, kind) if owned(getattr(zoo, kind), n)]
        for kind in ("backbones", "heads", "strategies", "pretrainers")
    }
    registered["data_sources"] = [
        s.name for s in zoo.data_sources if plugin is None or zoo.source_plugin.get(id(s)) == plugin
    ]
    registered.update(registered_extras(zoo, plugin))
    return {kind: sorted(set(names) - covered[kind]) for kind, names in registered.items()}


def all_checks() -> dict[str, tuple[Callable[..., None], ...]]:
    """Every check of the kit by kind (``backbones``, ``heads``, ...), in the order they run."""
    from .backbones import BACKBONE_CHECKS, check_backbone_factory, check_rebuild
    from .data_sources import DATA_SOURCE_CHECKS
    from .heads import HEAD_CHECKS
    from .pretrainers import PRETRAINER_CHECKS
    from .strategies import STRATEGY_CHECKS

    return {
        "backbones": (*BACKBONE_CHECKS, check_rebuild, check_backbone_factory),
        "heads": HEAD_CHECKS,
        "strategies": STRATEGY_CHECKS,
        "data_sources": DATA_SOURCE_CHECKS,
        "pretrainers": PRETRAINER_CHECKS,
        "commands": COMMAND_CHECKS,
    }
