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

import dataclasses
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch

from tlzoo.api.interfaces import Backbone, BackboneFactory, BackboneRequest, Dataset

from ._rules import (
    PICKLE_HINT,
    defaults_of,
    pickle_kind,
    rule,
    skip,
)
from .backbone_case import (
    BackboneCase as BackboneCase,
    _case_for,
    _create,
    _engine_request,
    _features,
    _fit,
    _fittable,
    _reproducible_features,
    _with_backbone,
    _with_factory,
    _with_rebuild,
    _with_request,
    default_fit_data,
    tiny_fit_data as tiny_fit_data,
)
from .backbone_checks import (
    check_awkward_examples,
    check_backbone_attributes,
    check_batch_independence,
    check_eval_determinism,
    check_eval_transform,
    check_fingerprint,
    check_forward_shape,
    check_freezing,
    check_frozen_batchnorm,
    check_layer_groups,
    check_preprocessing,
    check_training_step,
)
from .backbone_process import (
    _child_main as _child_main,  # 0.2's path of the child's entry point
    check_build_determinism,
    check_cross_process_determinism,
)
from .inputs import examples_for


@rule
def check_fit_protocol(backbone: Backbone, examples: Sequence[Any], rebuild: Any = None) -> None:
    """A FittableBackbone keeps the fit protocol; any other backbone skips (nothing is fitted).

    ``save_assets`` writes the fitted state, and nothing in it is a pickle; a fresh build
    restored with ``load_fitted(assets)`` (what ``tl predict`` does) gives the same
    features and fingerprint; and the fingerprint changes when the backbone is fitted on
    other data (it keys the feature cache).  ``rebuild`` says how to build (see
    :class:`BackboneCase`); skipped when the backbone cannot be rebuilt.
    """
    if not _fittable(backbone):
        skip("check_fit_protocol", "not a FittableBackbone: nothing is fitted, so no fitted state to save and restore")
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
    data = data if data is not None else default_fit_data(backbone)
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
    assert isinstance(factory.modality, str) and factory.modality.strip(), (
        f"modality must name the kind of input: one of {MODALITIES} or a new kind (e.g. 'sequence')"
    )
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
    """Run every check in :data:`BACKBONE_CHECKS`; ``examples`` default to :func:`tiny_examples`
    (records of its fields for a backbone that declares them: :func:`examples_for`).

    The checks that build the backbone again use ``rebuild`` (a :class:`BackboneCase` or a
    ``(factory, request)`` pair); without it, and when the class cannot be rebuilt with no
    arguments, they are left out.  The first failure raises its AssertionError.
    """
    import unittest

    examples = list(examples) if examples is not None else examples_for(backbone)
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
    examples = list(examples) if examples is not None else examples_for(first)
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


# every case runs these: the checks above, each with the way it gets its backbone
BackboneCase.bound_checks = tuple(
    (fn, _with_rebuild if fn in _REBUILDING else _with_backbone) for fn in BACKBONE_CHECKS
)
BackboneCase.factory_checks = ((check_rebuild, _with_request), (check_backbone_factory, _with_factory))
