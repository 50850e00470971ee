"""The backbone contract: :data:`BACKBONE_CHECKS`, :class:`BackboneCase`, ``check_backbone``, ``check_rebuild``.

Every check takes ``(backbone, examples)``; the two that must build the backbone again
(:func:`check_build_determinism`, :func:`check_cross_process_determinism`) also take
``rebuild``: a :class:`BackboneCase` (or a ``(factory, request)`` pair) saying how.
Without it they rebuild a backbone whose class is importable and takes no arguments,
and otherwise skip, saying why.

Parameter-free backbones (a raw-pixels map, a hashing or TF-IDF map: no parameters, no
layer groups) are legitimate: the checks about layer groups, freezing, the training step
and the weights fingerprint check what still applies to them and say so in their
docstrings.  See :mod:`tlzoo.testing` for how a plugin's tests use all this.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from tlzoo.api import interfaces
from tlzoo.api.interfaces import Backbone, BackboneFactory, BackboneRequest, Dataset
from tlzoo.engine.training import (
    TransferModel,
    count_parameters,
    frozen_to_eval,
    set_trainable,
)

from ._rules import (
    PICKLE_HINT,
    Check,
    default_zoo,
    defaults_of,
    pickle_kind,
    rule,
    skip,
)
from .inputs import awkward_examples, tiny_examples

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


def _fit(backbone: Backbone, data: Dataset | Callable[[], Dataset] | None) -> Backbone:
    """Fit a FittableBackbone on ``data`` (default :func:`tiny_fit_data`); any other backbone as it is."""
    if _fittable(backbone):
        train = data() if callable(data) else data
        cast(Any, backbone).fit(train if train is not None else tiny_fit_data(backbone.modality))
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
            return tiny_examples(self.get().modality)
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
        for fn in BACKBONE_CHECKS:
            yield Check(fn, _with_rebuild if fn in _REBUILDING else _with_backbone)
        if self.factory is not None:
            yield Check(check_rebuild, _with_request)
            yield Check(check_backbone_factory, _with_factory)


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


# --------------------------------------------------------------------------- backbone checks
@rule
def check_backbone_attributes(backbone: Backbone, examples: Sequence[Any]) -> None:
    """modality, name, num_features and weights_source are set; spec() is JSON-able."""
    from tlzoo.api.interfaces import MODALITIES

    assert isinstance(backbone, Backbone), f"{type(backbone).__name__} must subclass tlzoo.Backbone"
    assert backbone.modality in MODALITIES, f"modality {backbone.modality!r} is not one of {MODALITIES}"
    assert isinstance(backbone.name, str) and backbone.name, "backbone.name must be the model's name"
    assert isinstance(backbone.num_features, int) and backbone.num_features > 0, (
        f"num_features must be a positive int, got {backbone.num_features!r}"
    )
    assert isinstance(backbone.weights_source, str) and backbone.weights_source, (
        "weights_source must say where the weights came from (it is recorded in every run)"
    )
    spec = backbone.spec()
    assert isinstance(spec, dict) and "model" in spec, "spec() must be a dict naming at least the model"
    try:
        json.dumps(spec)  # written to model.json
    except TypeError as exc:
        raise AssertionError(f"spec() is not JSON-able ({exc}); it is written to model.json") from None


@rule
def check_forward_shape(backbone: Backbone, examples: Sequence[Any]) -> None:
    """transform + collate + forward give finite float features ``[B, num_features]``, in both modes.

    The width is the contract heads are built against: a backbone whose output is wider or
    narrower than ``num_features`` fails here.
    """
    assert len(examples) >= 2, "give at least two examples"
    with _preserved(backbone):
        backbone.eval()
        with torch.no_grad():
            out = backbone(_batch(backbone, examples))
        assert isinstance(out, torch.Tensor), f"forward must return a tensor, got {type(out).__name__}"
        assert out.dim() == 2 and out.shape[0] == len(examples), (
            f"forward gave shape {tuple(out.shape)}, expected ({len(examples)}, num_features)"
        )
        assert out.shape[1] == backbone.num_features, (
            f"forward gives {out.shape[1]} features per example but num_features is {backbone.num_features}: "
            "heads are built for num_features, so the first batch through a head would fail"
        )
        assert out.is_floating_point(), f"features must be floating point, got {out.dtype}"
        bad = (~torch.isfinite(out).all(1)).nonzero().flatten().tolist()
        assert not bad, f"features contain NaN or inf for {_describe_row(examples, bad[0])}"
        assert out.std(0).abs().sum() > 0, "every example got the same features"
        backbone.train()
        with torch.no_grad():
            out = backbone(_batch(backbone, examples, train=True))
        assert tuple(out.shape) == (len(examples), backbone.num_features), (
            f"forward on training transforms gave shape {tuple(out.shape)}, expected ({len(examples)}, "
            f"{backbone.num_features})"
        )


@rule
def check_eval_determinism(backbone: Backbone, examples: Sequence[Any]) -> None:
    """Two eval-mode forwards of the same batch give the same features (no dropout or noise left on)."""
    with _preserved(backbone), torch.no_grad():
        backbone.eval()
        batch = _batch(backbone, examples)
        first = backbone(copy.deepcopy(batch)).detach().float()
        again = backbone(copy.deepcopy(batch)).detach().float()
    assert first.shape == again.shape, f"two eval forwards gave shapes {tuple(first.shape)} and {tuple(again.shape)}"
    if torch.isfinite(first).all() and torch.isfinite(again).all():
        diff = (first - again).abs().max().item() if first.numel() else 0.0
        ok, how = torch.allclose(first, again, rtol=1e-5, atol=1e-6), f"max difference {diff:.3g}"
    else:  # NaN never equals NaN: compare where the non-finite values are and the finite ones
        ok, how = bool(torch.equal(first.nan_to_num(), again.nan_to_num())), "they also contain NaN or inf"
    assert ok, (
        f"two eval-mode forwards of the same batch differ ({how}): dropout or noise is active in eval "
        "mode (F.dropout(training=True), torch.randn in forward?), so features, the feature cache and "
        "tl predict are not reproducible"
    )


@rule
def check_eval_transform(backbone: Backbone, examples: Sequence[Any]) -> None:
    """``transform(example, train=False)`` is deterministic: augmentation runs only with ``train=True``."""
    for i, ex in enumerate(examples):
        first, again = backbone.transform(ex, False), backbone.transform(ex, False)
        assert _same(first, again), (
            f"transform(example, train=False) gave two different results for {_describe_row(examples, i)}: "
            "augmentation must run only when train=True, or evaluation and tl predict see random inputs"
        )


@rule
def check_batch_independence(backbone: Backbone, examples: Sequence[Any]) -> None:
    """In eval mode an example's features do not depend on the rest of its batch (padding, pooling).

    Non-finite features are a failure of their own ("features contain NaN or inf"): a
    difference involving NaN says nothing about the batch.
    """
    together = _reproducible_features(backbone, examples)
    alone = torch.cat([_features(backbone, [ex]) for ex in examples])
    for what, out in (("in one batch", together), ("one at a time", alone)):
        bad = (~torch.isfinite(out).reshape(len(out), -1).all(1)).nonzero().flatten().tolist()
        assert not bad, (
            f"features contain NaN or inf ({what}) for {_describe_row(examples, bad[0])}; "
            "differences between batches cannot be measured"
        )
    assert together.shape == alone.shape, (
        f"features of one batch have shape {tuple(together.shape)}, one at a time {tuple(alone.shape)}"
    )
    err = (together - alone).abs().max().item() if together.numel() else 0.0
    scale = alone.abs().max().item() + 1e-6
    assert err <= 1e-4 * max(1.0, scale), (
        f"features change with batch composition (max difference {err:.3g}): is padding masked when "
        "pooling, or are features normalised by batch statistics?"
    )


@rule
def check_layer_groups(backbone: Backbone, examples: Sequence[Any]) -> None:
    """layer_groups() are disjoint, non-empty, cover every parameter and run input side first.

    A parameter-free backbone (a raw-pixels or hashing map) has nothing to freeze: its
    ``layer_groups()`` may be empty, and only being a list of modules is checked.
    """
    groups = backbone.layer_groups()
    assert isinstance(groups, list), f"layer_groups() must return a list of modules, got {type(groups).__name__}"
    if _parameter_free(backbone):
        bad = [i for i, g in enumerate(groups) if not isinstance(g, nn.Module)]
        assert not bad, f"layer group {bad[0]} is a {type(groups[bad[0]]).__name__}, not an nn.Module"
        return
    assert groups, "layer_groups() is empty but the backbone has parameters: they could never be trained"
    seen: set[int] = set()
    for i, g in enumerate(groups):
        assert isinstance(g, nn.Module), f"layer group {i} is a {type(g).__name__}, not an nn.Module"
        ids = _param_ids(g)
        assert ids, f"layer group {i} has no parameters"
        overlap = ids & seen
        assert not overlap, f"layer group {i} shares {len(overlap)} parameters with a lower group"
        seen |= ids
    names = {id(p): n for n, p in backbone.named_parameters()}
    missing = sorted(names[i] for i in set(names) - seen)
    if missing:  # allowed only for parameters the features do not use (e.g. a language-model decoder)
        used = _parameters_used_by_forward(backbone, examples[:2])
        missing = [n for n in missing if n in used]
    assert not missing, (
        f"{len(missing)} backbone parameters are in no layer group (e.g. {missing[0]}); "
        "they could never be frozen or unfrozen"
    )
    # order: the first module of each group to run in forward must come in group order
    first_call: dict[int, int] = {}
    counter = [0]
    handles = []
    for gi, g in enumerate(groups):
        for m in g.modules():
            if any(True for _ in m.parameters(recurse=False)):

                def hook(mod: nn.Module, inp: Any, out: Any, gi: int = gi) -> None:
                    counter[0] += 1
                    first_call.setdefault(gi, counter[0])

                handles.append(m.register_forward_hook(hook))
    try:
        with _preserved(backbone), torch.no_grad():
            backbone.eval()
            backbone(_batch(backbone, examples[:2]))
    finally:
        for h in handles:
            h.remove()
    assert first_call, "no layer group ran during forward"
    order = [gi for gi, _ in sorted(first_call.items(), key=lambda kv: kv[1])]
    assert order == sorted(order), f"layer groups are not ordered input side first: they ran in order {order}"


def _parameters_used_by_forward(backbone: Backbone, examples: Sequence[Any]) -> set[str]:
    """Names of parameters that receive a gradient from the features."""
    with _preserved(backbone):
        for p in backbone.parameters():
            p.requires_grad_(True)
            p.grad = None
        backbone.eval()
        backbone(_batch(backbone, examples)).float().pow(2).sum().backward()
        return {n for n, p in backbone.named_parameters() if p.grad is not None}


@rule
def check_freezing(backbone: Backbone, examples: Sequence[Any]) -> None:
    """set_trainable(k) leaves exactly the top k groups trainable: k = 0, 1, 2, all and -1.

    For a parameter-free backbone every ``set_trainable(k)`` must work and leave nothing
    trainable (there is nothing to unfreeze).
    """
    groups = backbone.layer_groups()
    with _preserved(backbone):
        if not groups or _parameter_free(backbone):
            for k in (0, 1, -1):
                set_trainable(backbone, k)
                assert count_parameters(backbone)[0] == 0, (
                    f"set_trainable({k}) left parameters trainable outside every layer group"
                )
            return
        total = sum(p.numel() for g in groups for p in g.parameters())  # parameters outside groups stay frozen
        live = set_trainable(backbone, 0)
        assert live == [] and count_parameters(backbone)[0] == 0, "set_trainable(0) must freeze everything"
        live = set_trainable(backbone, 1)
        top = sum(p.numel() for p in groups[-1].parameters())
        assert count_parameters(backbone)[0] == top, (
            f"set_trainable(1) left {count_parameters(backbone)[0]} parameters trainable, the top group has {top}"
        )
        assert len(live) == 1, f"set_trainable(1) returned {len(live)} live groups"
        if len(groups) > 2:
            set_trainable(backbone, 2)
            two = top + sum(p.numel() for p in groups[-2].parameters())
            assert count_parameters(backbone)[0] == two, "set_trainable(2) must unfreeze the top two groups"
        for k in (len(groups), -1):
            set_trainable(backbone, k)
            assert count_parameters(backbone)[0] == total, f"set_trainable({k}) must unfreeze every layer group"


@rule
def check_training_step(backbone: Backbone, examples: Sequence[Any]) -> None:
    """One SGD step through a Linear head moves the head and the top group, and nothing frozen.

    For a parameter-free backbone only the head can learn: the step must still run and
    move the head (the features carry no gradient and need none).
    """
    groups = backbone.layer_groups()
    trainable_backbone = bool(groups) and not _parameter_free(backbone)
    with _preserved(backbone, weights=True):
        live = set_trainable(backbone, 1)
        head = nn.Linear(backbone.num_features, 2)
        model = TransferModel(backbone, head)
        model.train()
        frozen_to_eval(backbone, live)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        # every parameter goes to the optimizer: freezing alone must keep the frozen ones still
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        y = torch.arange(len(examples)) % 2
        loss = nn.functional.cross_entropy(model(_batch(backbone, examples, train=True)), y)
        assert torch.isfinite(loss), "loss is not finite"
        loss.backward()
        opt.step()
        params = dict(model.named_parameters())
        # what should train follows from the layer groups, not from the requires_grad flags under test
        top_ids = (_param_ids(groups[-1]) if trainable_backbone else set()) | _param_ids(head)
        frozen = {n for n, p in params.items() if id(p) not in top_ids}
        moved = {n for n, p in params.items() if not torch.equal(p.detach(), before[n])}
        frozen_moved = sorted(moved & frozen)
        assert not frozen_moved, f"frozen parameters changed in a training step: {frozen_moved[:3]}"
        frozen_grads = sorted(n for n in frozen if params[n].grad is not None)
        assert not frozen_grads, f"frozen parameters received gradients: {frozen_grads[:3]}"
        assert any(n.startswith("head.") for n in moved), "the head did not learn"
        if trainable_backbone:
            assert any(n.startswith("backbone.") for n in moved), "no parameter of the unfrozen top group changed"
        opt.zero_grad(set_to_none=True)


@rule
def check_frozen_batchnorm(backbone: Backbone, examples: Sequence[Any]) -> None:
    """In train mode, frozen_to_eval keeps BatchNorm statistics of frozen groups fixed; live ones update.

    Passes trivially for a backbone without BatchNorm.
    """
    norms = [m for m in backbone.modules() if isinstance(m, _NORM_TYPES) and m.track_running_stats]
    if not norms:
        return  # nothing to check: no BatchNorm in this backbone
    with _preserved(backbone, weights=True):
        live = set_trainable(backbone, 1)
        backbone.train()
        frozen_to_eval(backbone, live)
        live_ids = {id(m) for g in live for m in g.modules()}
        for m in backbone.modules():
            if id(m) not in live_ids:
                assert not m.training, f"frozen module {type(m).__name__} is in train mode"
        before = {id(m): cast(torch.Tensor, m.running_mean).clone() for m in norms}
        with torch.no_grad():
            backbone(_batch(backbone, examples, train=True))
        frozen_moved = [
            m
            for m in norms
            if id(m) not in live_ids and not torch.equal(cast(torch.Tensor, m.running_mean), before[id(m)])
        ]
        assert not frozen_moved, f"{len(frozen_moved)} frozen BatchNorm layers updated their running statistics"
        live_norms = [m for m in norms if id(m) in live_ids]
        if live_norms:
            assert any(not torch.equal(cast(torch.Tensor, m.running_mean), before[id(m)]) for m in live_norms), (
                "BatchNorm layers in the unfrozen group did not update in train mode"
            )


@rule
def check_preprocessing(backbone: Backbone, examples: Sequence[Any]) -> None:
    """preprocessing() is a JSON-able dict (it keys the feature cache and is saved with the model)."""
    pre = backbone.preprocessing()
    assert isinstance(pre, dict), f"preprocessing() must return a dict, got {type(pre).__name__}"
    try:
        text = json.dumps(pre, sort_keys=True)
    except TypeError as exc:
        raise AssertionError(f"preprocessing() is not JSON-able ({exc})") from None
    assert json.loads(text) == json.loads(json.dumps(backbone.preprocessing(), sort_keys=True)), (
        "preprocessing() changes between calls"
    )


@rule
def check_fingerprint(backbone: Backbone, examples: Sequence[Any]) -> None:
    """fingerprint() is stable, and changes when a weight changes (top group first, else any float tensor).

    A parameter-free backbone without floating-point state has no weights to change: only
    stability is checked.
    """
    first = backbone.fingerprint()
    assert isinstance(first, str) and first, "fingerprint() must return a non-empty string"
    assert backbone.fingerprint() == first, "fingerprint() changes between calls on the same weights"
    groups = backbone.layer_groups()
    candidates = [p for p in groups[-1].parameters()] if groups else []
    if not candidates:
        candidates = [t for t in backbone.state_dict().values() if t.is_floating_point() and t.numel()]
    if not candidates:
        return
    with _preserved(backbone, weights=True), torch.no_grad():
        candidates[0].add_(0.01)
        assert backbone.fingerprint() != first, (
            "fingerprint() did not change when weights changed: the feature cache would serve stale features"
        )
    assert backbone.fingerprint() == first, "fingerprint() differs after the weights were restored"


@rule
def check_awkward_examples(backbone: Backbone, examples: Sequence[Any]) -> None:
    """Awkward but valid inputs (see :func:`awkward_examples`) give finite features of the right shape."""
    awkward = awkward_examples(backbone.modality)
    out = _features(backbone, awkward)
    assert tuple(out.shape) == (len(awkward), backbone.num_features), f"awkward inputs gave shape {tuple(out.shape)}"
    bad = [repr(awkward[i])[:40] for i in (~torch.isfinite(out).all(1)).nonzero().flatten().tolist()]
    assert not bad, f"non-finite features for {bad}"


@rule
def check_build_determinism(backbone: Backbone, examples: Sequence[Any], rebuild: Any = None) -> None:
    """Two fresh builds from the same request, given the same weights, give the same features.

    Catches an unseeded random map: a projection drawn with ``np.random``, ``random`` or an
    unseeded torch generator at build time and kept outside the state dict, so neither
    the feature cache nor ``tl predict`` can reproduce it.  ``rebuild`` says how to build
    (see :class:`BackboneCase`); skipped when the backbone cannot be rebuilt.
    """
    case = _case_for(backbone, rebuild)
    # torch seeded differently, numpy's and Python's global random state moved on: only what the
    # state dict carries (loaded below) may make the two alike
    first = case.build("check_build_determinism", seed=case.seed)
    second = case.build("check_build_determinism", seed=case.seed + 1)
    state = first.state_dict()
    try:
        second.load_state_dict(state)
    except Exception as exc:
        raise AssertionError(f"a second build does not accept the first one's state dict: {exc}") from exc
    a, b = _reproducible_features(first, examples), _features(second, examples)
    assert a.shape == b.shape, f"two builds give features of shapes {tuple(a.shape)} and {tuple(b.shape)}"
    if not (torch.allclose(a, b, rtol=1e-5, atol=1e-5) or torch.equal(a.nan_to_num(), b.nan_to_num())):
        diff = (a - b).abs().nan_to_num(float("inf")).max().item()
        raise AssertionError(
            f"two fresh builds from the same request give different features with the same weights loaded "
            f"(max difference {diff:.3g}): the build draws from random state (np.random, random, torch) that "
            "is not in the state dict; derive it from a fixed seed or register it as a buffer"
        )


@rule
def check_cross_process_determinism(backbone: Backbone, examples: Sequence[Any], rebuild: Any = None) -> None:
    """Features recomputed in a fresh Python process equal these (atol 1e-5).

    The child process (``sys.executable``, a different ``PYTHONHASHSEED``, torch seeded
    differently, ``PYTHONPATH`` = this process's ``sys.path``) rebuilds the backbone
    through its factory by plugin name or through an importable ``module:attr``, loads
    this backbone's state dict and saved assets, as ``tl predict`` would, and computes
    the features of the same examples.  Catches features that use Python's ``hash()``
    or set order of strings (both vary per process) and random maps outside the state
    dict.  ``rebuild`` says how to build (see :class:`BackboneCase`); skipped with the
    reason when the backbone cannot be rebuilt in another process.
    """
    name = "check_cross_process_determinism"
    case = _case_for(backbone, rebuild)
    recipe = case.recipe(name)
    reference = _reproducible_features(backbone, examples).double().numpy()
    with tempfile.TemporaryDirectory(prefix="tlzoo-check-") as tmp:
        folder = Path(tmp)
        _write_examples(folder, examples, name)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
        if state:
            from safetensors.torch import save_file

            save_file(state, str(folder / "state.safetensors"))
        assets = folder / "assets"
        assets.mkdir()
        backbone.save_assets(str(assets))
        saved = str(assets) if any(assets.iterdir()) else None
        if recipe["request"] is not None and saved:
            request = _engine_request(BackboneRequest(**recipe["request"]), assets=saved)
            recipe = {**recipe, "request": json.loads(json.dumps(dataclasses.asdict(request), default=str))}
        for hash_seed in _other_hash_seeds():
            child = _run_child(folder, {**recipe, "assets": saved}, hash_seed, name)
            if child["hash"] != hash(_HASH_PROBE):
                break
        else:  # pragma: no cover - needs two seed collisions in a row
            skip(name, "could not start a process with a different string hash seed")
        theirs = np.load(folder / "features.npy", allow_pickle=False).astype(np.float64)
    assert theirs.shape == reference.shape, (
        f"features have shape {reference.shape} here and {theirs.shape} in a fresh process"
    )
    both_nan = np.isnan(theirs) & np.isnan(reference)
    close = np.isclose(theirs, reference, rtol=1e-5, atol=1e-5) | both_nan
    if not close.all():
        rows = np.flatnonzero(~close.all(axis=1))
        diff = np.nan_to_num(np.abs(theirs - reference), nan=np.inf).max()
        raise AssertionError(
            f"features differ between processes: max difference {diff:.3g}, on {len(rows)} of {len(reference)} "
            f"examples (first: {_describe_row(examples, int(rows[0]))}); does the backbone use Python's hash() "
            "(PYTHONHASHSEED differs per process), the iteration order of a set of strings, or random "
            "numbers outside the state dict? tl predict would disagree with the run"
        )


def _other_hash_seeds() -> list[str]:
    """Two PYTHONHASHSEED values differing from this process's."""
    mine = os.environ.get("PYTHONHASHSEED", "")
    base = int(mine) if mine.isdigit() else 0
    return [str((base + k) % 4294967296) for k in (1, 2)]


def _write_examples(folder: Path, examples: Sequence[Any], check: str) -> None:
    """Examples as files a child process reads back: JSON for texts, PNG for images, .npy for arrays."""
    rows: list[dict[str, str]] = []
    for i, ex in enumerate(examples):
        if isinstance(ex, str):
            rows.append({"text": ex})
        elif isinstance(ex, np.ndarray):
            np.save(folder / f"example{i}.npy", ex, allow_pickle=False)
            rows.append({"array": f"example{i}.npy"})
        elif type(ex).__module__.startswith("PIL."):
            ex.save(folder / f"example{i}.png", format="PNG")
            rows.append({"image": f"example{i}.png"})
        else:
            skip(
                check,
                f"examples of type {type(ex).__name__} cannot be sent to another process "
                "(give texts, PIL images or numpy arrays)",
            )
    (folder / "examples.json").write_text(json.dumps(rows))


def _read_examples(folder: Path) -> list[Any]:
    out: list[Any] = []
    for row in json.loads((folder / "examples.json").read_text()):
        if "text" in row:
            out.append(row["text"])
        elif "array" in row:
            out.append(np.load(folder / row["array"], allow_pickle=False))
        else:
            from PIL import Image

            with Image.open(folder / row["image"]) as img:
                img.load()
                out.append(img.copy())
    return out


def _run_child(folder: Path, recipe: dict[str, Any], hash_seed: str, check: str) -> dict[str, Any]:
    spec = {"recipe": recipe, "threads": torch.get_num_threads(), "seed": 12345}
    (folder / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = hash_seed
    if "plugin" in recipe:  # load only the plugin that registered the factory: a lighter start
        owner = default_zoo().backbones.owner.get(recipe["plugin"])
        if owner:
            env["TLZOO_PLUGINS"] = owner
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = "import sys; from tlzoo.testing.backbones import _child_main; _child_main(sys.argv[1])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            cwd=os.getcwd(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the fresh process did not finish within {SUBPROCESS_TIMEOUT_S} s") from None
    if done.returncode != 0 or not (folder / "features.npy").is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-12:])
        how = recipe.get("plugin") or recipe.get("import")
        raise AssertionError(f"the backbone could not be rebuilt in a fresh process (through {how!r}):\n{tail}")
    return json.loads((folder / "probe.json").read_text())


def _build_from_recipe(recipe: dict[str, Any]) -> Backbone:
    request = BackboneRequest(**recipe["request"]) if recipe.get("request") is not None else None
    if "plugin" in recipe:
        from tlzoo.engine.zoo import Zoo

        factory: Any = Zoo().backbones.get(recipe["plugin"])
    else:
        factory = _import(recipe["import"])
    if request is None:
        return factory()
    backbone = _create(factory, request)
    if not backbone.plugin and isinstance(factory, BackboneFactory):
        backbone.plugin = factory.name
    return backbone


def _child_main(folder: str) -> None:
    """Entry point of the fresh process of :func:`check_cross_process_determinism`."""
    where = Path(folder)
    spec = json.loads((where / "spec.json").read_text())
    torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(int(spec["seed"]))  # deliberately not the parent's seed: the weights come from the state file
    backbone = _build_from_recipe(spec["recipe"])
    if _fittable(backbone) and spec["recipe"].get("assets"):  # as tl predict restores a fitted backbone
        cast(Any, backbone).load_fitted(spec["recipe"]["assets"])
    if (where / "state.safetensors").is_file():
        from safetensors.torch import load_file

        backbone.load_state_dict(load_file(str(where / "state.safetensors")))
    out = _features(backbone, _read_examples(where))
    np.save(where / "features.npy", out.double().numpy(), allow_pickle=False)
    (where / "probe.json").write_text(json.dumps({"hash": hash(_HASH_PROBE)}))


@rule
def check_fit_protocol(backbone: Backbone, examples: Sequence[Any], rebuild: Any = None) -> None:
    """A FittableBackbone keeps the fit protocol; any other backbone passes (nothing to fit).

    ``save_assets`` writes the fitted state, and nothing in it is a pickle; a fresh build
    restored with ``load_fitted(assets)`` (what ``tl predict`` does) gives the same
    features and fingerprint; and the fingerprint changes when the backbone is fitted on
    other data (it keys the feature cache).  ``rebuild`` says how to build (see
    :class:`BackboneCase`); skipped when the backbone cannot be rebuilt.
    """
    if not _fittable(backbone):
        return
    case = _case_for(backbone, rebuild)
    reference = _reproducible_features(backbone, examples)
    with tempfile.TemporaryDirectory(prefix="tlzoo-check-") as assets:
        backbone.save_assets(assets)
        written = [p for p in sorted(Path(assets).rglob("*")) if p.is_file()]
        assert written, "save_assets() wrote nothing: tl predict could not restore the fitted state"
        pickled = [(p, kind) for p in written for kind in [pickle_kind(p)] if kind]
        assert not pickled, f"save_assets() wrote {pickled[0][0].name}, {pickled[0][1]}; {PICKLE_HINT}"
        restored = case.build("check_fit_protocol", assets=assets)
        restored.load_state_dict(backbone.state_dict())
        again = _features(restored, examples)
        assert again.shape == reference.shape and torch.allclose(again, reference, rtol=1e-5, atol=1e-5), (
            "a fresh build restored with load_fitted(assets) gives different features: tl predict would be wrong"
        )
        assert restored.fingerprint() == backbone.fingerprint(), (
            "a fresh build restored with load_fitted(assets) has another fingerprint: tl predict would refuse the run"
        )
    data = case.fit_data() if callable(case.fit_data) else case.fit_data
    data = data if data is not None else tiny_fit_data(backbone.modality)
    half = data.subset(range(0, len(data), 2))
    other_data = Dataset(list(reversed(half.examples)), list(half.labels), modality=half.modality)
    # two fresh builds, seeded alike, fitted on different data: only the fit tells them apart
    one = case.build("check_fit_protocol", fit_data=data)
    other = case.build("check_fit_protocol", fit_data=other_data)
    if not torch.allclose(_features(one, examples), _features(other, examples), rtol=1e-5, atol=1e-5):
        assert one.fingerprint() != other.fingerprint(), (
            "fitted on other data the backbone gives other features but the same fingerprint(): the feature "
            "cache would serve stale features; keep the fitted state in buffers or cover it in preprocessing()"
        )


@rule
def check_backbone_factory(factory: Any, request: BackboneRequest) -> None:
    """The factory is named, has a modality and a default model among its models, declares JSON-able
    ``defaults()``, and refuses an unknown option with a TlzooError naming it before building anything.

    Skipped for a plain function standing in for a factory (only a ``BackboneFactory`` is registered).
    """
    from tlzoo.api.errors import TlzooError
    from tlzoo.api.interfaces import MODALITIES

    if not isinstance(factory, BackboneFactory):
        skip("check_backbone_factory", f"{factory!r} is a plain callable, not a BackboneFactory")
    assert isinstance(factory.name, str) and factory.name, "BackboneFactory.name must be set"
    assert factory.modality in MODALITIES, f"modality {factory.modality!r} is not one of {MODALITIES}"
    assert factory.accepts_any_model or factory.default_model in factory.models, (
        f"default_model {factory.default_model!r} is not among models {factory.models}"
    )
    try:
        json.dumps(defaults_of(factory))
    except TypeError as exc:
        raise AssertionError(f"defaults() are not JSON-able ({exc}); they are saved in config.toml") from None
    bad = dataclasses.replace(request, options={**request.options, "no_such_option_xyz": 1})
    try:
        factory.create(bad)
    except TlzooError as exc:
        assert "no_such_option_xyz" in str(exc), f"the unknown-option error must name the option: {exc}"
    else:
        raise AssertionError("an unknown option in request.options must raise TlzooError (see check_options)")


BACKBONE_CHECKS: tuple[Callable[..., None], ...] = (
    check_backbone_attributes,
    check_forward_shape,
    check_eval_determinism,
    check_eval_transform,
    check_batch_independence,
    check_layer_groups,
    check_freezing,
    check_training_step,
    check_frozen_batchnorm,
    check_preprocessing,
    check_fingerprint,
    check_awkward_examples,
    check_build_determinism,
    check_cross_process_determinism,
    check_fit_protocol,
)
"""Every backbone check, each called as ``check(backbone, examples)``."""

_REBUILDING = (check_build_determinism, check_cross_process_determinism, check_fit_protocol)


def check_backbone(backbone: Backbone, examples: Sequence[Any] | None = None, rebuild: Any = None) -> None:
    """Run every check in :data:`BACKBONE_CHECKS`; ``examples`` default to :func:`tiny_examples`.

    The checks that build the backbone again use ``rebuild`` (a :class:`BackboneCase` or a
    ``(factory, request)`` pair); without it, and when the class cannot be rebuilt with no
    arguments, they are left out.  The first failure raises its AssertionError.
    """
    import unittest

    examples = list(examples) if examples is not None else tiny_examples(backbone.modality)
    for check in BACKBONE_CHECKS:
        try:
            if check in _REBUILDING:
                check(backbone, examples, rebuild=rebuild)
            else:
                check(backbone, examples)
        except unittest.SkipTest:
            continue


@rule
def check_rebuild(
    factory: Any,
    request: BackboneRequest,
    examples: Sequence[Any] | None = None,
    fit_data: Dataset | Callable[[], Dataset] | None = None,
) -> None:
    """What ``tl predict`` does: rebuild the backbone from its request plus the assets it saved.

    ``factory`` is the plugin's :class:`BackboneFactory` (or a callable taking a request),
    ``request`` a small offline :class:`BackboneRequest`.  The rebuilt backbone, given the
    same weights, must have the same preprocessing and give the same features (tokenizers
    and vocabularies travel in the assets folder).  A FittableBackbone is fitted on
    ``fit_data`` (default :func:`tiny_fit_data`) and the rebuilt one restored with
    ``load_fitted(assets)``.
    """
    first = _create(factory, request)
    if _fittable(first) and fit_data is None and getattr(request, "assets", None):
        cast(Any, first).load_fitted(request.assets)
    else:
        _fit(first, fit_data)
    modality = getattr(factory, "modality", first.modality)
    assert first.modality == modality, f"backbone modality {first.modality!r} differs from its factory's {modality!r}"
    assert first.name == request.model, f"backbone.name {first.name!r} should be the requested model {request.model!r}"
    examples = list(examples) if examples is not None else tiny_examples(first.modality)
    with tempfile.TemporaryDirectory() as assets:
        first.save_assets(assets)
        # the runner saves the request with augmentation off; the predictor adds the assets folder
        again = _create(factory, _engine_request(request, augment=False, assets=assets))
        if _fittable(again):
            cast(Any, again).load_fitted(assets)
        again.load_state_dict(first.state_dict())
        assert json.dumps(again.preprocessing(), sort_keys=True, default=str) == json.dumps(
            first.preprocessing(), sort_keys=True, default=str
        ), "the rebuilt backbone preprocesses differently"
        a, b = _features(first, examples), _features(again, examples)
    assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5), (
        "the rebuilt backbone gives different features: tl predict would be wrong"
    )
