"""The pretrainer contract: :data:`PRETRAINER_CHECKS`, :class:`PretrainerCase` and ``check_pretrainer``.

A :class:`~tlzoo.api.interfaces.Pretrainer` trains on an unlabelled corpus and writes a
folder that ``tl run --plugin NAME --weights FOLDER`` loads.  Every check takes
``(pretrainer, corpus=None, options=None, backbone_options=None)``: the texts (default
:func:`~tlzoo.testing.tiny_corpus`), the pretrainer's options (make them tiny: few
epochs, small dimensions; ``seed`` is added as the engine adds it), and the settings of
the request that loads the folder back (request fields such as ``max_length``; other
keys go to its ``options``).  Pretraining runs once per pretrainer, corpus
and options in a temporary folder (removed when the process exits) and is shared by
the checks.  See :mod:`tlzoo.testing` for how a plugin's tests use them.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import math
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlzoo.api.interfaces import BackboneRequest, Pretrainer

from ._rules import (
    PICKLE_HINT,
    Check,
    default_zoo,
    defaults_of,
    pickle_kind,
    rule,
    skip,
)
from .inputs import tiny_corpus, tiny_examples


@dataclass
class PretrainingResult:
    """What one pretraining run of the checks produced."""

    out: Path
    summary: Any
    log: list[str] = field(default_factory=list)


_RUNS: dict[tuple[int, str], tuple[Pretrainer, PretrainingResult]] = {}


def pretrain_once(
    pretrainer: Pretrainer, corpus: Sequence[str] | None = None, options: dict[str, Any] | None = None
) -> PretrainingResult:
    """Run ``pretrainer`` on ``corpus`` into a fresh temporary folder, as the engine does, once per
    pretrainer, corpus and options; later calls return the same result."""
    texts = list(corpus) if corpus is not None else tiny_corpus()
    opts = dict(options or {})
    opts.setdefault("seed", 0)  # the engine always passes a seed
    key = (id(pretrainer), json.dumps([texts, opts], sort_keys=True, default=str))
    if key in _RUNS:
        return _RUNS[key][1]
    tmp = Path(tempfile.mkdtemp(prefix="tlzoo-check-pretrain-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    out = tmp / "out"
    out.mkdir()
    seed = int(opts["seed"]) if isinstance(opts["seed"], int) else 0
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    log: list[str] = []
    summary = pretrainer.pretrain(texts, str(out), opts, log.append)
    result = PretrainingResult(out, summary, log)
    _RUNS[key] = (pretrainer, result)  # the pretrainer is kept so its id is never reused
    return result


def _load_request(model: str, weights: str, settings: dict[str, Any]) -> BackboneRequest:
    """The request that loads ``weights``: ``settings`` naming request fields (``max_length``) set
    them, the others go to ``options``."""
    fields = {f.name for f in dataclasses.fields(BackboneRequest)}
    typed = {k: v for k, v in settings.items() if k in fields and k not in ("model", "weights")}
    options = {**typed.pop("options", {}), **{k: v for k, v in settings.items() if k not in fields}}
    return BackboneRequest(model=model, weights=weights, **{"pretrained": True, **typed}, options=options)


@rule
def check_pretrainer_attributes(
    pretrainer: Pretrainer,
    corpus: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    backbone_options: dict[str, Any] | None = None,
) -> None:
    """The pretrainer is a ``Pretrainer`` with a name (the backbone plugin it feeds), a description and
    JSON-able ``defaults()`` that, if declared, include ``epochs`` and ``seed`` and the case's options."""
    assert isinstance(pretrainer, Pretrainer), f"{type(pretrainer).__name__} must subclass tlzoo's Pretrainer"
    assert isinstance(pretrainer.name, str) and pretrainer.name, "Pretrainer.name must be set"
    assert isinstance(pretrainer.description, str) and pretrainer.description, (
        "Pretrainer.description must say what it trains"
    )
    defaults = defaults_of(pretrainer)
    try:
        json.dumps(defaults)
    except TypeError as exc:
        raise AssertionError(f"defaults() are not JSON-able ({exc})") from None
    if defaults:  # a pretrainer declaring its options must take the two the engine always passes
        missing = sorted({"epochs", "seed"} - set(defaults))
        assert not missing, f"defaults() must include {missing}: the engine always passes epochs and seed"
        unknown = sorted(set(options or {}) - set(defaults))
        assert not unknown, f"the options {unknown} are not in defaults(): tl pretrain --set would refuse them"


@rule
def check_pretrainer_output(
    pretrainer: Pretrainer,
    corpus: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    backbone_options: dict[str, Any] | None = None,
) -> None:
    """Pretraining on a tiny corpus writes files into the output folder and returns a summary whose
    ``history`` has one row per epoch with ``epoch`` and a finite ``train_loss`` (the engine writes
    pretraining_history.csv and the loss curve from it)."""
    result = pretrain_once(pretrainer, corpus, options)
    files = [p for p in result.out.rglob("*") if p.is_file()]
    assert files, f"pretrain() wrote nothing into its output folder {result.out}"
    summary = result.summary
    assert isinstance(summary, dict), f"pretrain() must return a summary dict, got {type(summary).__name__}"
    history = summary.get("history")
    assert isinstance(history, list) and history, "the summary must hold a non-empty 'history' list (one row per epoch)"
    for i, row in enumerate(history):
        assert isinstance(row, dict), f"history row {i} is a {type(row).__name__}, not a dict"
        assert "epoch" in row, f"history row {i} has no 'epoch'"
        loss = row.get("train_loss")
        assert isinstance(loss, (int, float)) and math.isfinite(loss), (
            f"history row {i} needs a finite number as 'train_loss', got {loss!r}"
        )
    epochs = (options or {}).get("epochs")
    if isinstance(epochs, int):
        rows = {row["epoch"] for row in history}
        assert len(rows) == epochs, f"options asked for {epochs} epochs but the history has {len(rows)}"
    json.dumps(summary, default=str)  # written to pretraining.json


@rule
def check_pretrainer_no_pickles(
    pretrainer: Pretrainer,
    corpus: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    backbone_options: dict[str, Any] | None = None,
) -> None:
    """Nothing in the output folder is a pickle or a zip archive: loading a pickle runs code, and tlzoo
    refuses them as --weights."""
    result = pretrain_once(pretrainer, corpus, options)
    found = [(p, kind) for p in sorted(result.out.rglob("*")) if p.is_file() for kind in [pickle_kind(p)] if kind]
    assert not found, (
        f"{found[0][0].relative_to(result.out)} is {found[0][1]}"
        + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")
        + f"; {PICKLE_HINT}"
    )


@rule
def check_pretrainer_weights_load(
    pretrainer: Pretrainer,
    corpus: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    backbone_options: dict[str, Any] | None = None,
    zoo: Any = None,
) -> None:
    """The output folder loads as ``--weights`` through the backbone factory of the same name, which
    records the folder in ``weights_source`` and gives finite features of width ``num_features``.

    Skipped when no backbone factory of that name is registered.
    """
    backbones = (zoo or default_zoo()).backbones
    if pretrainer.name not in backbones:
        skip(
            "check_pretrainer_weights_load",
            f"no backbone factory named {pretrainer.name!r} is registered, so nothing loads the folder back",
        )
    result = pretrain_once(pretrainer, corpus, options)
    factory = backbones.get(pretrainer.name)
    request = _load_request(factory.default_model, str(result.out), backbone_options or {})
    backbone = factory.create(request)
    assert str(result.out) in str(backbone.weights_source), (
        f"weights_source {backbone.weights_source!r} does not name the --weights folder {str(result.out)!r}"
    )
    examples = tiny_examples(factory.modality)
    backbone.eval()
    with torch.no_grad():
        out = backbone(backbone.collate([backbone.transform(ex, False) for ex in examples]))
    assert tuple(out.shape) == (len(examples), backbone.num_features), (
        f"the loaded backbone gives shape {tuple(out.shape)}, expected ({len(examples)}, {backbone.num_features})"
    )
    assert torch.isfinite(out).all(), "the loaded backbone gives NaN or inf features"


PRETRAINER_CHECKS: tuple[Callable[..., None], ...] = (
    check_pretrainer_attributes,
    check_pretrainer_output,
    check_pretrainer_no_pickles,
    check_pretrainer_weights_load,
)
"""Every pretrainer check, each called as ``check(pretrainer, corpus=None, options=None, backbone_options=None)``."""


def check_pretrainer(
    pretrainer: Pretrainer,
    corpus: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
    backbone_options: dict[str, Any] | None = None,
) -> None:
    """Run every check in :data:`PRETRAINER_CHECKS` (one pretraining run shared by all); the weights
    check is left out when no backbone factory of the pretrainer's name is registered."""
    import unittest

    for check in PRETRAINER_CHECKS:
        try:
            check(pretrainer, corpus, options, backbone_options)
        except unittest.SkipTest:
            continue


@dataclass(eq=False)
class PretrainerCase:
    """A pretrainer for the checks (the object or its registered name), with tiny ``options``,
    the ``corpus`` (default :func:`~tlzoo.testing.tiny_corpus`) and the ``backbone_options`` of
    the request that loads its folder back."""

    pretrainer: Any
    options: dict[str, Any] = field(default_factory=dict)
    corpus: Sequence[str] | None = None
    backbone_options: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    zoo: Any = None

    def __post_init__(self) -> None:
        if not self.id:
            name = self.pretrainer if isinstance(self.pretrainer, str) else getattr(self.pretrainer, "name", "")
            self.id = f"pretrain-{name or type(self.pretrainer).__name__}"

    def resolve(self) -> Pretrainer:
        """The pretrainer object."""
        if isinstance(self.pretrainer, str):
            return (self.zoo or default_zoo()).pretrainers.get(self.pretrainer)
        return self.pretrainer

    def checks(self) -> Iterator[Check]:
        """Every pretrainer check bound to this case."""
        for fn in PRETRAINER_CHECKS:
            yield Check(fn, _with_zoo if fn is check_pretrainer_weights_load else _with_corpus)


def _with_corpus(case: PretrainerCase, rule: Callable[..., Any]) -> Any:
    return rule(case.resolve(), case.corpus, case.options, case.backbone_options)


def _with_zoo(case: PretrainerCase, rule: Callable[..., Any]) -> Any:
    return rule(case.resolve(), case.corpus, case.options, case.backbone_options, zoo=case.zoo)
