"""The backbone contract checks (:data:`BACKBONE_CHECKS`), ``check_backbone`` and ``check_rebuild``.

See :mod:`tlzoo.testing` for the contract they check and how a plugin's tests use them.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from tlzoo.core.interfaces import Backbone
from tlzoo.core.training import TransferModel, count_parameters, frozen_to_eval, set_trainable

from .inputs import awkward_examples, tiny_examples

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


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
