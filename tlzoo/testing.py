"""The contract kit for plugin authors: the same checks tlzoo's built-in plugins pass.

Much like scikit-learn's ``parametrize_with_checks``, a third-party plugin runs these in
its own test suite.  Each check raises ``AssertionError`` with a message saying which
rule of the contract broke and why it matters; each leaves the object as it found it.

A backbone plugin, in its ``tests/test_contract.py``::

    import pytest
    from tlzoo.core.interfaces import BackboneRequest
    from tlzoo.testing import BACKBONE_CHECKS, check_backbone, tiny_examples
    from my_plugin import MyBackbone

    def make():  # small and random-init, so the test runs offline in seconds
        return MyBackbone(BackboneRequest("my-model", pretrained=False, options={"image_size": 64}))

    def test_contract():
        backbone = make()
        check_backbone(backbone, tiny_examples(backbone.modality))

    # or one test per check, so a failure names the rule:
    @pytest.mark.parametrize("check", BACKBONE_CHECKS, ids=lambda c: c.__name__)
    def test_each(check):
        backbone = make()
        check(backbone, tiny_examples(backbone.modality))

The backbone contract (one check each, in :data:`BACKBONE_CHECKS`):

* attributes: ``modality``, ``name``, ``num_features``, ``weights_source`` set; ``spec()`` JSON-able;
* forward: transform + collate + forward give finite ``[B, num_features]`` floats, in both
  modes, deterministic in eval mode; features do not depend on the rest of the batch;
* layer groups: non-empty, disjoint, run input side first, and cover every parameter the
  features use; ``set_trainable(k)`` unfreezes exactly the top ``k`` groups (0, 1, 2, all, -1);
* training: one SGD step through a Linear head moves the head and the top group only,
  and frozen parameters get no gradient; with ``frozen_to_eval`` frozen BatchNorm
  statistics stay put in train mode while unfrozen ones update;
* ``preprocessing()`` is JSON-able and stable; ``fingerprint()`` is stable and changes
  with the weights (it keys the feature cache);
* awkward inputs (empty or over-long texts; grey, RGBA, 1-pixel and numpy images) work.

``check_rebuild(factory, request)`` checks what ``tl predict`` does: rebuild from the
request plus the saved assets and get the same features.
Heads, strategies and data sources have ``check_head(HeadClass)``,
``check_strategy(strategy)`` and ``check_data_source(source, location)``; tiny inputs
come from ``tiny_examples``, ``awkward_examples`` and ``separable_features``.

This module needs torch and numpy only: never timm, transformers, gensim or scikit-learn.
"""
from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo.core.errors import TlzooError
from tlzoo.core.interfaces import Backbone, Dataset, DataOptions, DataSource, Head, Plan, Strategy
from tlzoo.core.training import TransferModel, count_parameters, frozen_to_eval, lr_schedule, set_trainable

__all__ = [
    "BACKBONE_CHECKS", "check_backbone", "check_backbone_attributes", "check_forward_shape",
    "check_batch_independence", "check_layer_groups", "check_freezing", "check_training_step",
    "check_frozen_batchnorm", "check_preprocessing", "check_fingerprint", "check_awkward_examples",
    "check_rebuild", "check_head", "check_strategy", "check_data_source",
    "tiny_examples", "tiny_texts", "tiny_images", "awkward_examples", "separable_features",
]

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


# --------------------------------------------------------------------------- tiny inputs
_SENTENCES = (
    "a charming and funny film with a great cast",
    "the plot is dull and the characters are boring",
    "one of the best movies of the year",
    "too long , too slow and never clever",
    "a young woman makes a new life in the old world",
    "bad",
    "an ugly , stupid comedy that is not funny at all , and the worst performance of his life",
    "beautiful",
)


def tiny_texts(n: int = 4) -> list[str]:
    """``n`` short English sentences of different lengths (so padding is exercised)."""
    return [_SENTENCES[i % len(_SENTENCES)] for i in range(n)]


def tiny_images(n: int = 4, size: int = 40, seed: int = 0) -> list[Any]:
    """``n`` random RGB PIL images of ``size`` x ``size`` (odd sizes exercise resizing)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 3 * i, 3), dtype=np.uint8)) for i in range(n)]


def tiny_examples(modality: str, n: int = 4) -> list[Any]:
    """Raw examples a backbone of ``modality`` ("text" or "vision") accepts."""
    if modality == "text":
        return tiny_texts(n)
    if modality == "vision":
        return tiny_images(n)
    raise ValueError(f"no tiny examples for modality {modality!r}")


def separable_features(n: int = 60, num_features: int = 8, num_classes: int = 3,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 features with well-separated class means, and int64 labels 0..num_classes-1."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    centres = rng.normal(0, 4.0, (num_classes, num_features))
    x = centres[y] + rng.normal(0, 0.5, (n, num_features))
    return x.astype(np.float32), y.astype(np.int64)


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


def _param_ids(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


# --------------------------------------------------------------------------- backbone checks
def check_backbone_attributes(backbone: Backbone, examples: Sequence[Any]) -> None:
    """modality, name, num_features and weights_source are set; spec() is JSON-able."""
    from tlzoo.core.interfaces import MODALITIES

    assert isinstance(backbone, Backbone), f"{type(backbone).__name__} must subclass tlzoo.Backbone"
    assert backbone.modality in MODALITIES, f"modality {backbone.modality!r} is not one of {MODALITIES}"
    assert isinstance(backbone.name, str) and backbone.name, "backbone.name must be the model's name"
    assert isinstance(backbone.num_features, int) and backbone.num_features > 0, \
        f"num_features must be a positive int, got {backbone.num_features!r}"
    assert isinstance(backbone.weights_source, str) and backbone.weights_source, \
        "weights_source must say where the weights came from (it is recorded in every run)"
    spec = backbone.spec()
    assert isinstance(spec, dict) and "model" in spec, "spec() must be a dict naming at least the model"
    json.dumps(spec)  # written to model.json


def check_forward_shape(backbone: Backbone, examples: Sequence[Any]) -> None:
    """transform + collate + forward give finite float features of shape [B, num_features], in both modes."""
    assert len(examples) >= 2, "give at least two examples"
    with _preserved(backbone):
        backbone.eval()
        with torch.no_grad():
            out = backbone(_batch(backbone, examples))
            again = backbone(_batch(backbone, examples))
        assert isinstance(out, torch.Tensor), f"forward must return a tensor, got {type(out).__name__}"
        assert tuple(out.shape) == (len(examples), backbone.num_features), \
            f"forward gave shape {tuple(out.shape)}, expected ({len(examples)}, {backbone.num_features})"
        assert out.is_floating_point(), f"features must be floating point, got {out.dtype}"
        assert torch.isfinite(out).all(), "features contain NaN or inf"
        assert torch.allclose(out, again), "forward in eval mode is not deterministic"
        assert out.std(0).abs().sum() > 0, "every example got the same features"
        backbone.train()
        with torch.no_grad():
            out = backbone(_batch(backbone, examples, train=True))
        assert tuple(out.shape) == (len(examples), backbone.num_features), \
            f"forward on training transforms gave shape {tuple(out.shape)}"


def check_batch_independence(backbone: Backbone, examples: Sequence[Any]) -> None:
    """In eval mode an example's features do not depend on the rest of its batch (padding, pooling)."""
    with _preserved(backbone):
        backbone.eval()
        with torch.no_grad():
            together = backbone(_batch(backbone, examples))
            alone = torch.cat([backbone(_batch(backbone, [ex])) for ex in examples])
    err = (together - alone).abs().max().item()
    scale = alone.abs().max().item() + 1e-6
    assert err <= 1e-4 * max(1.0, scale), \
        f"features change with batch composition (max difference {err:.3g}); is padding masked when pooling?"


def check_layer_groups(backbone: Backbone, examples: Sequence[Any]) -> None:
    """layer_groups() are disjoint, non-empty, cover every parameter and run input side first."""
    groups = backbone.layer_groups()
    assert isinstance(groups, list) and groups, "layer_groups() must return a non-empty list of modules"
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
    assert not missing, (f"{len(missing)} backbone parameters are in no layer group (e.g. {missing[0]}); "
                         "they could never be frozen or unfrozen")
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


def check_freezing(backbone: Backbone, examples: Sequence[Any]) -> None:
    """set_trainable(k) leaves exactly the top k groups trainable: k = 0, 1, all and -1."""
    groups = backbone.layer_groups()
    total = sum(p.numel() for g in groups for p in g.parameters())  # parameters outside groups stay frozen
    with _preserved(backbone):
        live = set_trainable(backbone, 0)
        assert live == [] and count_parameters(backbone)[0] == 0, "set_trainable(0) must freeze everything"
        live = set_trainable(backbone, 1)
        top = sum(p.numel() for p in groups[-1].parameters())
        assert count_parameters(backbone)[0] == top, \
            f"set_trainable(1) left {count_parameters(backbone)[0]} parameters trainable, the top group has {top}"
        assert len(live) == 1
        if len(groups) > 2:
            set_trainable(backbone, 2)
            two = top + sum(p.numel() for p in groups[-2].parameters())
            assert count_parameters(backbone)[0] == two, "set_trainable(2) must unfreeze the top two groups"
        for k in (len(groups), -1):
            set_trainable(backbone, k)
            assert count_parameters(backbone)[0] == total, f"set_trainable({k}) must unfreeze every layer group"


def check_training_step(backbone: Backbone, examples: Sequence[Any]) -> None:
    """One SGD step through a Linear head moves the head and the top group, and nothing frozen."""
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
        top_ids = _param_ids(backbone.layer_groups()[-1]) | _param_ids(head)
        frozen = {n for n, p in params.items() if id(p) not in top_ids}
        moved = {n for n, p in params.items() if not torch.equal(p.detach(), before[n])}
        frozen_moved = sorted(moved & frozen)
        assert not frozen_moved, f"frozen parameters changed in a training step: {frozen_moved[:3]}"
        frozen_grads = sorted(n for n in frozen if params[n].grad is not None)
        assert not frozen_grads, f"frozen parameters received gradients: {frozen_grads[:3]}"
        assert any(n.startswith("head.") for n in moved), "the head did not learn"
        assert any(n.startswith("backbone.") for n in moved), "no parameter of the unfrozen top group changed"
        opt.zero_grad(set_to_none=True)


def check_frozen_batchnorm(backbone: Backbone, examples: Sequence[Any]) -> None:
    """In train mode, frozen_to_eval keeps BatchNorm statistics of frozen groups fixed; live ones update."""
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
        before = {id(m): m.running_mean.clone() for m in norms}
        with torch.no_grad():
            backbone(_batch(backbone, examples, train=True))
        frozen_moved = [m for m in norms if id(m) not in live_ids and not torch.equal(m.running_mean, before[id(m)])]
        assert not frozen_moved, f"{len(frozen_moved)} frozen BatchNorm layers updated their running statistics"
        live_norms = [m for m in norms if id(m) in live_ids]
        if live_norms:
            assert any(not torch.equal(m.running_mean, before[id(m)]) for m in live_norms), \
                "BatchNorm layers in the unfrozen group did not update in train mode"


def check_preprocessing(backbone: Backbone, examples: Sequence[Any]) -> None:
    """preprocessing() is a JSON-able dict (it keys the feature cache and is saved with the model)."""
    pre = backbone.preprocessing()
    assert isinstance(pre, dict), f"preprocessing() must return a dict, got {type(pre).__name__}"
    text = json.dumps(pre, sort_keys=True)
    assert json.loads(text) == json.loads(json.dumps(backbone.preprocessing(), sort_keys=True)), \
        "preprocessing() changes between calls"


def check_fingerprint(backbone: Backbone, examples: Sequence[Any]) -> None:
    """fingerprint() is stable, and changes when any weight of the top group changes."""
    first = backbone.fingerprint()
    assert isinstance(first, str) and first, "fingerprint() must return a non-empty string"
    assert backbone.fingerprint() == first, "fingerprint() changes between calls on the same weights"
    with _preserved(backbone, weights=True), torch.no_grad():
        p = next(iter(backbone.layer_groups()[-1].parameters()))
        p.add_(0.01)
        assert backbone.fingerprint() != first, \
            "fingerprint() did not change when weights changed: the feature cache would serve stale features"
    assert backbone.fingerprint() == first, "fingerprint() differs after the weights were restored"


def awkward_examples(modality: str) -> list[Any]:
    """Inputs real data holds: empty and over-long texts, odd characters; grey, RGBA, 1-pixel and
    numpy images (the built-in digits dataset yields 8x8 uint8 arrays)."""
    if modality == "text":
        return ["", "   ", "word " * 600, "émoji 🎬 café — naïve", "?!"]
    from PIL import Image

    return [Image.new("L", (20, 20), 128), Image.new("RGBA", (50, 30), (10, 200, 30, 100)),
            Image.new("RGB", (1, 1)), np.arange(64, dtype=np.uint8).reshape(8, 8)]


def check_awkward_examples(backbone: Backbone, examples: Sequence[Any]) -> None:
    """Awkward but valid inputs (see :func:`awkward_examples`) give finite features of the right shape."""
    awkward = awkward_examples(backbone.modality)
    with _preserved(backbone), torch.no_grad():
        backbone.eval()
        out = backbone(_batch(backbone, awkward))
    assert tuple(out.shape) == (len(awkward), backbone.num_features), f"awkward inputs gave shape {tuple(out.shape)}"
    bad = [repr(awkward[i])[:40] for i in (~torch.isfinite(out).all(1)).nonzero().flatten().tolist()]
    assert not bad, f"non-finite features for {bad}"


BACKBONE_CHECKS: tuple[Callable[[Backbone, Sequence[Any]], None], ...] = (
    check_backbone_attributes, check_forward_shape, check_batch_independence, check_layer_groups,
    check_freezing, check_training_step, check_frozen_batchnorm, check_preprocessing, check_fingerprint,
    check_awkward_examples,
)


def check_backbone(backbone: Backbone, examples: Sequence[Any] | None = None) -> None:
    """Run every check in :data:`BACKBONE_CHECKS`; ``examples`` default to :func:`tiny_examples`."""
    examples = list(examples) if examples is not None else tiny_examples(backbone.modality)
    for check in BACKBONE_CHECKS:
        check(backbone, examples)


def check_rebuild(factory: Any, request: Any, examples: Sequence[Any] | None = None) -> None:
    """What ``tl predict`` does: rebuild the backbone from its request plus the assets it saved.

    ``factory`` is the plugin's :class:`BackboneFactory`, ``request`` a small offline
    :class:`BackboneRequest`.  The rebuilt backbone, given the same weights, must have the
    same preprocessing and give the same features (tokenizers and vocabularies travel in
    the assets folder).
    """
    import tempfile

    from tlzoo.core.interfaces import BackboneRequest

    first = factory.create(request)
    assert first.modality == factory.modality, f"backbone modality {first.modality!r} differs from its factory's"
    assert first.name == request.model, f"backbone.name {first.name!r} should be the requested model {request.model!r}"
    examples = list(examples) if examples is not None else tiny_examples(first.modality)
    with tempfile.TemporaryDirectory() as assets:
        first.save_assets(assets)
        # the runner saves the options with augmentation off; the predictor adds the assets folder
        options = {**request.options, "augment": False, "assets": assets}
        again = factory.create(BackboneRequest(model=request.model, weights=request.weights,
                                               pretrained=request.pretrained, options=options))
        again.load_state_dict(first.state_dict())
        assert json.dumps(again.preprocessing(), sort_keys=True, default=str) == \
            json.dumps(first.preprocessing(), sort_keys=True, default=str), "the rebuilt backbone preprocesses differently"
        first.eval()
        again.eval()
        with torch.no_grad():
            a, b = first(_batch(first, examples)), again(_batch(again, examples))
    assert torch.allclose(a, b, atol=1e-5), "the rebuilt backbone gives different features: tl predict would be wrong"


# --------------------------------------------------------------------------- heads
def check_head(head_cls: type[Head], num_features: int = 8, num_classes: int = 3,
               params: dict[str, Any] | None = None) -> None:
    """A Head class: defaults, option checking, and either build-and-learn or fit/predict/save/load.

    ``params`` are constructor options for a fast configuration (e.g. few iterations).
    """
    params = params or {}
    assert isinstance(head_cls.name, str) and head_cls.name, "Head.name must be set"
    defaults = head_cls.defaults()
    assert isinstance(defaults, dict), "defaults() must return a dict of options"
    json.dumps(defaults)  # saved in config.toml and model.json
    try:
        head_cls(no_such_option_xyz=1)
    except TlzooError as exc:
        assert "no_such_option_xyz" in str(exc), "the unknown-option error must name the option"
    else:
        raise AssertionError("an unknown head option must raise TlzooError")
    head = head_cls(**params)
    assert set(head.params) == set(defaults), "params must hold every default option"
    json.dumps(head.params)
    x, y = separable_features(n=60, num_features=num_features, num_classes=num_classes)
    if head_cls.trainable:
        _check_trainable_head(head, x, y, num_features, num_classes)
    else:
        _check_fitted_head(head_cls, head, params, x, y, num_classes)


def _check_trainable_head(head: Head, x: np.ndarray, y: np.ndarray, num_features: int, num_classes: int) -> None:
    torch.manual_seed(0)
    module = head.build(num_features, num_classes)
    assert isinstance(module, nn.Module), "build() must return an nn.Module"
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    out = module(xt)
    assert tuple(out.shape) == (len(x), num_classes), f"head output shape {tuple(out.shape)}, expected {(len(x), num_classes)}"
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    module.train()
    first = None
    for _ in range(100):
        loss = nn.functional.cross_entropy(module(xt), yt)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        acc = float((module(xt).argmax(1) == yt).float().mean())
    assert float(loss.detach()) < first, "training loss did not go down"
    assert acc >= 0.9, f"the head reached only {acc:.2f} accuracy on well-separated data"
    # the state dict round-trips into a freshly built module (how tl predict loads it)
    again = type(head)(**head.params).build(num_features, num_classes)
    again.load_state_dict(module.state_dict())
    with torch.no_grad():
        assert torch.allclose(again.eval()(xt), module(xt), atol=1e-6), "a rebuilt head gives different outputs"


def _check_fitted_head(head_cls: type[Head], head: Head, params: dict[str, Any], x: np.ndarray,
                       y: np.ndarray, num_classes: int) -> None:
    head.fit(x, y, num_classes)
    p = head.predict_proba(x)
    assert p.shape == (len(x), num_classes), f"predict_proba shape {p.shape}, expected {(len(x), num_classes)}"
    assert np.all(p >= 0) and np.allclose(p.sum(1), 1, atol=1e-4), "predict_proba rows must be probabilities"
    acc = float((p.argmax(1) == y).mean())
    assert acc >= 0.9, f"the fitted head reached only {acc:.2f} accuracy on well-separated data"
    linear = head.to_linear()
    if linear is not None:
        w, b = linear
        assert w.shape == (num_classes, x.shape[1]) and b.shape == (num_classes,), "to_linear() shapes are wrong"
        logits = x.astype(np.float64) @ w.T.astype(np.float64) + b
        e = np.exp(logits - logits.max(1, keepdims=True))
        assert np.allclose(e / e.sum(1, keepdims=True), p, atol=1e-4), \
            "to_linear() is not the same classifier as predict_proba()"
        return
    state = head.state()
    assert state, "a fitted head that is not linear must return its arrays from state()"
    for k, v in state.items():
        assert isinstance(v, np.ndarray), f"state()['{k}'] is a {type(v).__name__}, not a numpy array (no pickles)"
    fresh = head_cls(**params)
    fresh.load_state({k: np.array(v) for k, v in state.items()})
    assert np.allclose(fresh.predict_proba(x), p, atol=1e-5), "load_state(state()) does not restore the head"


# --------------------------------------------------------------------------- strategies
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


# --------------------------------------------------------------------------- data sources
def check_data_source(source: DataSource, location: str, options: DataOptions | None = None,
                      missing: str = "/nonexistent/tlzoo-check/data") -> Dataset:
    """A DataSource: recognises ``location``, loads a well-formed Dataset, ignores what it can't read.

    Returns the loaded dataset for further assertions of your own.
    """
    from tlzoo.core.interfaces import MODALITIES

    assert isinstance(source.name, str) and source.name, "DataSource.name must be set"
    assert source.modality in ("", *MODALITIES), f"modality {source.modality!r} must be '', 'vision' or 'text'"
    assert source.can_load(location), f"{source.name} does not recognise {location!r}"
    assert not source.can_load(missing), f"{source.name} claims it can load a path that does not exist"
    ds = source.load(location, options or DataOptions())
    assert isinstance(ds, Dataset), f"load() must return a Dataset, got {type(ds).__name__}"
    assert len(ds) > 0, "the dataset is empty"
    assert ds.modality in MODALITIES, f"dataset modality {ds.modality!r}"
    if source.modality:
        assert ds.modality == source.modality, "the dataset's modality differs from the source's"
    assert all(isinstance(label, str) and label for label in ds.labels), "labels must be non-empty strings"
    assert len(set(ds.ids)) == len(ds.ids), "ids must be unique (they name rows of predictions.csv)"
    assert ds.fingerprint() == source.load(location, options or DataOptions()).fingerprint(), \
        "loading twice gives different data: the feature cache could not be reused"
    return ds
