"""The checks on one backbone that need no rebuild: attributes, shapes, determinism in eval,
batch independence, layer groups and freezing, a training step, frozen BatchNorm, preprocessing,
the weights fingerprint, awkward examples."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from tlzoo.api.interfaces import Backbone
from tlzoo.engine.training import (
    TransferModel,
    count_parameters,
    frozen_to_eval,
    set_trainable,
)

from ._rules import (
    rule,
    skip,
)
from .backbone_case import (
    _NORM_TYPES,
    _batch,
    _describe_row,
    _features,
    _param_ids,
    _parameter_free,
    _preserved,
    _reproducible_features,
    _same,
)
from .inputs import awkward_examples, awkward_records, record_fields


# --------------------------------------------------------------------------- backbone checks
@rule
def check_backbone_attributes(backbone: Backbone, examples: Sequence[Any]) -> None:
    """modality, name, num_features and weights_source are set; spec() is JSON-able."""
    from tlzoo.api.interfaces import MODALITIES

    assert isinstance(backbone, Backbone), f"{type(backbone).__name__} must subclass tlzoo.Backbone"
    assert isinstance(backbone.modality, str) and backbone.modality.strip(), (
        f"modality must name the kind of input: one of {MODALITIES} or a new kind (e.g. 'sequence')"
    )
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

    Skips, saying so, for a backbone without BatchNorm (nothing of this rule applies).
    """
    norms = [m for m in backbone.modules() if isinstance(m, _NORM_TYPES) and m.track_running_stats]
    if not norms:
        skip("check_frozen_batchnorm", "no BatchNorm layer with running statistics in this backbone")
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
    fields = record_fields(backbone)
    if fields:
        awkward: list[Any] = awkward_records(fields)
    elif backbone.modality in ("text", "vision"):
        awkward = awkward_examples(backbone.modality)
    else:
        skip("check_awkward_examples", f"the kit knows no awkward inputs for modality {backbone.modality!r}")
    out = _features(backbone, awkward)
    assert tuple(out.shape) == (len(awkward), backbone.num_features), f"awkward inputs gave shape {tuple(out.shape)}"
    bad = [repr(awkward[i])[:40] for i in (~torch.isfinite(out).all(1)).nonzero().flatten().tolist()]
    assert not bad, f"non-finite features for {bad}"
