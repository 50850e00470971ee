"""How a backbone check gets its backbone: :class:`BackboneCase` (factory and request, or an
importable class) and the helpers the checks share (batches, features, rebuilding)."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import nn

from tlzoo.api import interfaces
from tlzoo.api.interfaces import Backbone, BackboneFactory, BackboneRequest, Dataset

from ._rules import (
    Check,
    default_zoo,
    skip,
)
from .inputs import examples_for, tiny_examples

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)
_HASH_PROBE = "tlzoo-hash-probe"
SUBPROCESS_TIMEOUT_S = 900  # a guard against a hung child, not a speed requirement


# --------------------------------------------------------------------------- helpers
def _batch(backbone: Backbone, examples: Sequence[Any], train: bool = False) -> Any:
    return backbone.collate([backbone.transform(ex, train) for ex in examples])


@contextmanager
def _preserved(backbone: Backbone, weights: bool = False) -> Iterator[None]:
    """Restore requires_grad flags, train/eval modes (and weights) after a check."""
    flags = [p.requires_grad for p in backbone.parameters()]
    modes = [m.training for m in backbone.modules()]
    state = copy.deepcopy(backbone.state_dict()) if weights else None
    try:
        yield
    finally:
        for p, f in zip(backbone.parameters(), flags):
            p.requires_grad_(f)
            p.grad = None
        for m, t in zip(backbone.modules(), modes):
            m.training = t
        if state is not None:
            backbone.load_state_dict(state)


def _features(backbone: Backbone, examples: Sequence[Any]) -> torch.Tensor:
    """Eval-mode features of ``examples`` in one batch, as float32 on the CPU."""
    with _preserved(backbone), torch.no_grad():
        backbone.eval()
        return backbone(_batch(backbone, examples)).detach().float().cpu()


def _reproducible_features(backbone: Backbone, examples: Sequence[Any]) -> torch.Tensor:
    """:func:`_features`, computed twice: a difference here is the root cause of any comparison a
    check makes later, so it fails pointing at the rules about it."""
    first, again = _features(backbone, examples), _features(backbone, examples)
    if not (first.shape == again.shape and torch.equal(first.nan_to_num(), again.nan_to_num())):
        raise AssertionError(
            "features differ between two eval-mode passes over the same examples in this "
            "process, so nothing else can be compared; see check_eval_determinism and "
            "check_eval_transform"
        )
    return first


def _param_ids(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


def _parameter_free(backbone: Backbone) -> bool:
    return not any(True for _ in backbone.parameters())


def _same(a: Any, b: Any) -> bool:
    """Whether two transform outputs are equal (tensors, arrays, dicts, sequences, scalars)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(torch.equal(a, b))
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an object without a usable ==: fall back to its repr
        return repr(a) == repr(b)


def _describe_row(examples: Sequence[Any], i: int) -> str:
    return f"example {i} ({repr(examples[i])[:40]})"


def _fittable(backbone: Any) -> bool:
    """Whether ``backbone`` learns state from the training split (``FittableBackbone``)."""
    kind = getattr(interfaces, "FittableBackbone", None)
    return isinstance(kind, type) and isinstance(backbone, kind)


def tiny_fit_data(modality: str, n: int = 8) -> Dataset:
    """The training split a :class:`~tlzoo.api.interfaces.FittableBackbone` is fitted on by default:
    ``n`` tiny examples with two alternating labels."""
    return Dataset(tiny_examples(modality, n), ["a" if i % 2 else "b" for i in range(n)], modality=modality)


def default_fit_data(backbone: Backbone, n: int = 8) -> Dataset:
    """:func:`tiny_fit_data` for ``backbone``: records of its fields when it declares them (a fused backbone)."""
    examples = examples_for(backbone, n)
    return Dataset(examples, ["a" if i % 2 else "b" for i in range(n)], modality=backbone.modality)


def _fit(backbone: Backbone, data: Dataset | Callable[[], Dataset] | None) -> Backbone:
    """Fit a FittableBackbone on ``data`` (default :func:`tiny_fit_data`); any other backbone as it is."""
    if _fittable(backbone):
        train = data() if callable(data) else data
        cast(Any, backbone).fit(train if train is not None else default_fit_data(backbone))
    return backbone


def _engine_request(request: BackboneRequest, **settings: Any) -> BackboneRequest:
    """``request`` with engine settings (``augment``, ``assets``) as typed fields where the
    request declares them, in ``options`` otherwise (as tlzoo 0.1 passed them)."""
    fields = {f.name for f in dataclasses.fields(request)}
    typed = {k: v for k, v in settings.items() if k in fields}
    options = {**request.options, **{k: v for k, v in settings.items() if k not in fields}}
    return dataclasses.replace(request, options=options, **typed)


# --------------------------------------------------------------------------- what to check, and how to rebuild it
_BUILT: OrderedDict[int, Backbone] = OrderedDict()  # the last few built cases: checks run case by case
_KEEP_BUILT = 2


def _import_path(obj: Any) -> str | None:
    """``module:qualname`` under which a fresh process finds ``obj``, or None."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception:  # noqa: BLE001 - whatever the import does, the answer is "not importable"
        return None
    return f"{module}:{qualname}" if found is obj else None


def _import(path: str) -> Any:
    module, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _no_argument_class(backbone: Backbone) -> str | None:
    """The import path of the backbone's class when ``cls()`` rebuilds it, else None."""
    cls = type(backbone)
    path = _import_path(cls)
    if path is None:
        return None
    try:
        inspect.signature(cls).bind()
    except (TypeError, ValueError):
        return None
    return path


def _create(factory: Any, request: BackboneRequest) -> Backbone:
    return factory.create(request) if isinstance(factory, BackboneFactory) else factory(request)


@dataclass(eq=False)
class BackboneCase:
    """A backbone for the checks, and how to build it again.

    ``factory`` is a registered plugin name (``"bert"``), an importable ``"module:attr"``
    (a :class:`~tlzoo.api.interfaces.BackboneFactory` or a callable taking a request),
    a ``BackboneFactory`` object or such a callable; ``request`` is a small offline
    :class:`~tlzoo.api.interfaces.BackboneRequest`, or a function returning one when
    it needs something made at test time (a weights folder from a fixture).  Or give
    ``backbone``, already built: the checks that rebuild it then need its class to be
    importable with a no-argument constructor, and skip otherwise.

    ``examples`` (a list, or a function returning one) default to
    :func:`~tlzoo.testing.tiny_examples` of the backbone's modality; ``seed`` seeds
    torch before each build; ``zoo`` resolves plugin names (default: every installed
    plugin).  A :class:`~tlzoo.api.interfaces.FittableBackbone` is fitted on ``fit_data``
    (a Dataset or a function returning one; default :func:`tiny_fit_data`) right after each
    build, as the runner does after the split, unless the request carries ``assets`` (then
    ``load_fitted(request.assets)`` restores it, as ``tl predict`` does); one given built
    must come fitted.  The
    built backbone is kept for the checks of this case (checks restore what they change)
    and released when later cases are built.
    """

    # (check, how it gets its backbone) pairs, installed by tlzoo.testing.backbones, where the checks live
    bound_checks: ClassVar[tuple[tuple[Callable[..., None], Callable[..., Any]], ...]] = ()
    factory_checks: ClassVar[tuple[tuple[Callable[..., None], Callable[..., Any]], ...]] = ()

    factory: Any = None
    request: BackboneRequest | Callable[[], BackboneRequest] | None = None
    backbone: Backbone | None = None
    examples: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    id: str = ""
    seed: int = 0
    zoo: Any = None
    fit_data: Dataset | Callable[[], Dataset] | None = None

    def __post_init__(self) -> None:
        if self.factory is None and self.backbone is None:
            raise TypeError("BackboneCase needs a factory (with a request) or a built backbone")
        if not self.id:
            self.id = self._default_id()

    def _default_id(self) -> str:
        if self.backbone is not None:
            return self.backbone.name or type(self.backbone).__name__
        if isinstance(self.request, BackboneRequest):
            return self.request.model
        if isinstance(self.factory, str):
            return self.factory.rpartition(":")[2]
        return str(getattr(self.factory, "name", "") or getattr(self.factory, "__name__", "backbone"))

    # ------------------------------------------------------------ building
    def resolve_factory(self) -> Any:
        """The factory object: a ``BackboneFactory`` or a callable taking a request."""
        if isinstance(self.factory, str):
            if ":" in self.factory:
                return _import(self.factory)
            return (self.zoo or default_zoo()).backbones.get(self.factory)
        return self.factory

    def make_request(self) -> BackboneRequest:
        """The request (called if given as a function); by default the factory's default model, random init."""
        if callable(self.request):
            return self.request()
        if self.request is not None:
            return self.request
        factory = self.resolve_factory()
        model = getattr(factory, "default_model", "") or self.id
        return BackboneRequest(model=model, pretrained=False)

    def build(
        self,
        check: str = "build",
        seed: int | None = None,
        assets: str | None = None,
        fit_data: Dataset | Callable[[], Dataset] | None = None,
    ) -> Backbone:
        """A freshly built backbone, torch seeded with ``seed`` (default: the case's); skips ``check``
        when it cannot be rebuilt.  A FittableBackbone is then fitted on ``fit_data`` (default: the
        case's), or, given ``assets`` (or a request carrying them) and no ``fit_data``, built with
        ``request.assets`` and restored with ``load_fitted(assets)``, as ``tl predict`` does."""
        seed = self.seed if seed is None else seed
        if self.factory is None:
            path = _no_argument_class(self.backbone)  # type: ignore[arg-type]
            if path is None:
                skip(check, self._why_not_rebuildable())
            torch.manual_seed(seed)
            backbone: Backbone = _import(path)()  # type: ignore[arg-type]
        else:
            factory = self.resolve_factory()
            request = self.make_request()
            if assets is not None:
                request = _engine_request(request, assets=assets)
            elif fit_data is None:  # a request that already carries fitted state: restore it, as tl predict does
                assets = getattr(request, "assets", None) or None
            torch.manual_seed(seed)
            backbone = _create(factory, request)
            if not backbone.plugin and isinstance(factory, BackboneFactory):
                backbone.plugin = factory.name
        if assets is not None and fit_data is None and _fittable(backbone):
            cast(Any, backbone).load_fitted(assets)
            return backbone
        return _fit(backbone, fit_data if fit_data is not None else self.fit_data)

    def get(self) -> Backbone:
        """The backbone under check: the given one, or one built once and kept while its checks run."""
        if self.backbone is not None:
            return self.backbone
        key = id(self)
        if key in _BUILT:
            _BUILT.move_to_end(key)
            return _BUILT[key]
        while len(_BUILT) >= _KEEP_BUILT:
            _BUILT.popitem(last=False)
        _BUILT[key] = self.build()
        return _BUILT[key]

    def get_examples(self) -> list[Any]:
        """The examples to check with."""
        if self.examples is None:
            return examples_for(self.get())
        return list(self.examples() if callable(self.examples) else self.examples)

    # ------------------------------------------------------------ rebuilding in another process
    def _why_not_rebuildable(self) -> str:
        what = type(self.backbone).__name__ if self.backbone is not None else repr(self.factory)
        return (
            f"{what} cannot be rebuilt: give BackboneCase(factory, request) with a registered plugin name "
            "or an importable 'module:attr' factory, or make the backbone class importable with a "
            "no-argument constructor"
        )

    def recipe(self, check: str) -> dict[str, Any]:
        """How a fresh Python process rebuilds this backbone (JSON-able); skips ``check`` if it cannot."""
        if self.factory is None:
            path = _no_argument_class(self.backbone)  # type: ignore[arg-type]
            if path is None:
                skip(check, self._why_not_rebuildable())
            return {"import": path, "request": None}
        request = json.loads(json.dumps(dataclasses.asdict(self.make_request()), default=str))
        if isinstance(self.factory, str):
            if ":" in self.factory:
                return {"import": self.factory, "request": request}
            if self.zoo is None or self.zoo is default_zoo():
                return {"plugin": self.factory, "request": request}
        factory = self.resolve_factory()
        if isinstance(factory, BackboneFactory):
            registered = default_zoo().backbones
            if factory.name in registered:
                same = registered.get(factory.name).create
                inner = getattr(factory.create, "_tlzoo_create", factory.create)
                if (
                    same is factory.create
                    or _import_path(getattr(same, "_tlzoo_create", same)) == _import_path(inner) is not None
                ):
                    return {"plugin": factory.name, "request": request}
            path = _import_path(getattr(factory.create, "_tlzoo_create", factory.create))
        else:
            path = _import_path(factory)
        if path is None:
            skip(
                check,
                f"the factory {getattr(factory, 'name', factory)!r} is neither registered by an installed "
                "plugin nor importable as 'module:attr' (a lambda or a local function), so a fresh "
                "process cannot build it",
            )
        return {"import": path, "request": request}

    # ------------------------------------------------------------ the checks of this case
    def checks(self) -> Iterator[Check]:
        """Every backbone check bound to this case (``check(case)`` runs one)."""
        for fn, how in self.bound_checks:
            yield Check(fn, how)
        if self.factory is not None:
            for fn, how in self.factory_checks:
                yield Check(fn, how)


def _with_backbone(case: BackboneCase, rule: Callable[..., Any]) -> Any:
    return rule(case.get(), case.get_examples())


def _with_rebuild(case: BackboneCase, rule: Callable[..., Any]) -> Any:
    return rule(case.get(), case.get_examples(), rebuild=case)


def _with_request(case: BackboneCase, rule: Callable[..., Any]) -> Any:
    return rule(case.resolve_factory(), case.make_request(), case.get_examples(), fit_data=case.fit_data)


def _with_factory(case: BackboneCase, rule: Callable[..., Any]) -> Any:
    return rule(case.resolve_factory(), case.make_request())


def _case_for(backbone: Backbone, rebuild: Any) -> BackboneCase:
    if isinstance(rebuild, BackboneCase):
        return rebuild
    if rebuild is not None:
        factory, request = rebuild
        return BackboneCase(factory, request)
    return BackboneCase(backbone=backbone)
