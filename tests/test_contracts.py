"""Every registered backbone, head, strategy and data source passes the public contract kit.

To add a backbone: append a ``Case`` to ``BACKBONE_CASES`` that builds it offline and
small (random init, small image size, or a tiny checkpoint fixture).  A registered
backbone factory without a case fails ``test_every_backbone_factory_has_a_case``.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tlzoo.core.interfaces import Backbone, BackboneRequest
from tlzoo.testing import (BACKBONE_CHECKS, check_backbone, check_data_source, check_head, check_strategy,
                           tiny_examples)


@dataclass
class Case:
    """How to build one backbone offline at small size for the contract checks."""

    id: str
    factory: str  # the registered BackboneFactory name
    model: str
    pretrained: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    weights_fixture: str | None = None  # name of a fixture giving a local --weights path
    examples: Callable[[], list[Any]] | None = None  # default: tiny_examples(modality)
    big: bool = False  # ~100 M parameters: run with the slower `transfer` tests, not `make test-fast`


BACKBONE_CASES: list[Case] = [
    Case("bert-tiny-mean", "bert", "tiny-bert", pretrained=True, weights_fixture="tiny_bert_dir",
         options={"max_length": 24, "pooling": "mean"}),
    Case("bert-tiny-cls", "bert", "tiny-bert", pretrained=True, weights_fixture="tiny_bert_dir",
         options={"max_length": 24, "pooling": "cls"}),
    Case("efficientnet_lite0-64px", "efficientnet", "efficientnet_lite0", options={"image_size": 64, "augment": True}),
    Case("resnet18-64px", "resnet", "resnet18", options={"image_size": 64}),
    Case("mobilenetv3_small-64px", "mobilenet", "mobilenetv3_small_100", options={"image_size": 64, "augment": True}),
    Case("densenet121-64px", "densenet", "densenet121", options={"image_size": 64}),
    Case("xception-72px", "xception", "xception", options={"image_size": 72}),
    Case("inception_v3-75px", "inception", "inception_v3", options={"image_size": 75}),
    Case("googlenet-64px", "inception", "googlenet", options={"image_size": 64}),
    Case("alexnet-64px", "alexnet", "alexnet", options={"image_size": 64}),
    Case("vgg16-32px", "vgg", "vgg16", options={"image_size": 32}, big=True),
    Case("nasnetalarge-64px", "nasnet", "nasnetalarge", options={"image_size": 64}, big=True),
    Case("lenet5", "lenet", "lenet5", options={"image_size": 32}),
    Case("word2vec-hashed", "word2vec", "word2vec", options={"vocab_size": 500, "dim": 16}),
    Case("word2vec-bilstm", "word2vec", "word2vec",
         options={"train_backbone": True, "vocab_size": 500, "dim": 16, "hidden": 16, "max_length": 32}),
    Case("fasttext-cnn", "fasttext", "fasttext",
         options={"train_backbone": True, "encoder": "cnn", "filters": 8, "vocab_size": 500, "dim": 16}),
    Case("ulmfit-scratch", "ulmfit", "ulmfit", options={"max_length": 32}),
    Case("elmo-scratch", "elmo", "elmo", options={"max_length": 32}),
    Case("glove-6B-50d-sif", "glove", "glove-6B-50d", pretrained=True, options={"vocab_size": 2000, "pooling": "sif"}),
    Case("transformer-hashed", "transformer", "mini-transformer",
         options={"dim": 16, "layers": 2, "heads": 2, "ff": 32, "vocab_size": 300, "max_length": 32}),
]

# factories that cannot be built offline at small size, with the reason
NOT_OFFLINE: dict[str, str] = {}


@pytest.fixture(scope="module")
def zoo() -> Any:
    from tlzoo.core.zoo import Zoo

    return Zoo()


@pytest.fixture(scope="module")
def built(zoo: Any, request: pytest.FixtureRequest) -> Callable[[Case], Backbone]:
    """Build each case's backbone once per module (checks restore what they change)."""
    cache: dict[str, Backbone] = {}

    def get(case: Case) -> Backbone:
        if case.id not in cache:
            weights = str(request.getfixturevalue(case.weights_fixture)) if case.weights_fixture else None
            factory = zoo.backbones.get(case.factory)
            import torch

            torch.manual_seed(0)
            backbone = factory.create(BackboneRequest(model=case.model, weights=weights,
                                                      pretrained=case.pretrained, options=dict(case.options)))
            backbone.plugin = factory.name
            cache[case.id] = backbone
        return cache[case.id]

    return get


def _params(cases: list[Case]) -> list[Any]:
    return [pytest.param(c, id=c.id, marks=[pytest.mark.transfer] if c.big else []) for c in cases]


@pytest.mark.parametrize("check", BACKBONE_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("case", _params(BACKBONE_CASES))
def test_backbone_contract(case: Case, check: Callable[..., None], built: Callable[[Case], Backbone]) -> None:
    backbone = built(case)
    examples = case.examples() if case.examples else tiny_examples(backbone.modality)
    check(backbone, examples)


@pytest.mark.parametrize("case", _params(BACKBONE_CASES))
def test_backbone_rebuilds_for_predict(case: Case, zoo: Any, request: pytest.FixtureRequest) -> None:
    from tlzoo.testing import check_rebuild

    weights = str(request.getfixturevalue(case.weights_fixture)) if case.weights_fixture else None
    check_rebuild(zoo.backbones.get(case.factory), BackboneRequest(model=case.model, weights=weights,
                                                                   pretrained=case.pretrained,
                                                                   options=dict(case.options)))


def test_every_backbone_factory_has_a_case(zoo: Any) -> None:
    covered = {c.factory for c in BACKBONE_CASES} | set(NOT_OFFLINE)
    missing = sorted(set(zoo.backbones) - covered)
    assert not missing, f"backbone factories without a contract case in tests/test_contracts.py: {missing}"


# --------------------------------------------------------------------------- the kit catches bugs
@pytest.mark.xdist_group("contracts")
def test_kit_catches_a_broken_backbone(built: Callable[[Case], Backbone]) -> None:
    """The kit must fail real bugs: a backbone whose layer groups miss parameters, and one ignoring freezing."""
    from torch import nn

    from tlzoo.testing import check_freezing, check_layer_groups

    good = built(next(c for c in BACKBONE_CASES if c.factory == "efficientnet"))
    examples = tiny_examples("vision")

    class MissingGroup(type(good)):  # type: ignore[misc]
        def layer_groups(self) -> list[nn.Module]:
            return super().layer_groups()[1:]  # the stem is in no group

    broken = MissingGroup.__new__(MissingGroup)
    broken.__dict__.update(good.__dict__)
    with pytest.raises(AssertionError, match="in no layer group"):
        check_layer_groups(broken, examples)

    class Reversed(type(good)):  # type: ignore[misc]
        def layer_groups(self) -> list[nn.Module]:
            return list(reversed(super().layer_groups()))

    rev = Reversed.__new__(Reversed)
    rev.__dict__.update(good.__dict__)
    with pytest.raises(AssertionError, match="not ordered"):
        check_layer_groups(rev, examples)

    class CopiedGroups(type(good)):  # type: ignore[misc]
        def layer_groups(self) -> list[nn.Module]:
            return copy.deepcopy(super().layer_groups())  # freezing copies leaves the real layers alone

    cop = CopiedGroups.__new__(CopiedGroups)
    cop.__dict__.update(good.__dict__)
    with pytest.raises(AssertionError, match="set_trainable"):
        check_freezing(cop, examples)


@pytest.mark.xdist_group("contracts")
def test_kit_catches_unmasked_pooling_and_a_blind_fingerprint(built: Callable[[Case], Backbone]) -> None:
    """Mean pooling over padding makes features depend on the batch; a constant fingerprint serves stale caches."""
    import torch

    from tlzoo.testing import check_batch_independence, check_fingerprint

    good = built(BACKBONE_CASES[0])  # tiny BERT, mean pooling
    examples = tiny_examples("text")

    class Unmasked(type(good)):  # type: ignore[misc]
        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.encoder(**batch).last_hidden_state.mean(1)  # padding tokens counted

        def fingerprint(self) -> str:
            return "always-the-same"

    bad = Unmasked.__new__(Unmasked)
    bad.__dict__.update(good.__dict__)
    with pytest.raises(AssertionError, match="batch composition"):
        check_batch_independence(bad, examples)
    with pytest.raises(AssertionError, match="did not change when weights changed"):
        check_fingerprint(bad, examples)
    check_batch_independence(good, examples)


def test_check_backbone_runs_all_checks(built: Callable[[Case], Backbone]) -> None:
    backbone = built(BACKBONE_CASES[0])
    check_backbone(backbone)  # default tiny examples


# --------------------------------------------------------------------------- heads, strategies, sources
HEAD_PARAMS: dict[str, dict[str, Any]] = {"fc": {"dropout": 0.0}}


def test_registered_heads_pass_the_kit(zoo: Any) -> None:
    assert len(zoo.heads) >= 2
    for name, cls in zoo.heads.items():
        check_head(cls, params=HEAD_PARAMS.get(name))


def test_fc_head_with_hidden_layer_passes_the_kit(zoo: Any) -> None:
    check_head(zoo.heads.get("fc"), params={"hidden": [16], "dropout": 0.0})


def test_registered_strategies_pass_the_kit(zoo: Any) -> None:
    assert {"feature-extraction", "fine-tune"} <= set(zoo.strategies)
    for _, strategy in zoo.strategies.items():
        check_strategy(strategy)


def _source(zoo: Any, name: str) -> Any:
    return next(s for s in zoo.data_sources if s.name == name)


def test_csv_source_passes_the_kit(zoo: Any, text_csv: Path) -> None:
    ds = check_data_source(_source(zoo, "csv"), str(text_csv))
    assert ds.modality == "text" and len(ds) == 150 and set(ds.labels) == {"fresh", "rotten", "plot"}


def test_csv_source_keeps_quoted_newlines_commas_and_quotes(zoo: Any, tmp_path: Path) -> None:
    import csv

    texts = ["line one\nline two", 'a comma, and "quotes"', "crlf\r\ninside", "plain"]
    path = tmp_path / "tricky.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([(t, "a" if i % 2 else "b") for i, t in enumerate(texts)])
    ds = check_data_source(_source(zoo, "csv"), str(path))
    assert ds.examples[:2] == texts[:2] and ds.examples[3] == "plain"
    assert ds.examples[2].replace("\r\n", "\n") == "crlf\ninside"


def test_jsonl_source_passes_the_kit(zoo: Any, tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    rows = [{"text": f"review number {i}", "label": "pos" if i % 2 else "neg"} for i in range(10)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = check_data_source(_source(zoo, "jsonl"), str(path))
    assert ds.labels[:2] == ["neg", "pos"]


def test_image_folder_source_passes_the_kit(zoo: Any, image_folder: Path) -> None:
    ds = check_data_source(_source(zoo, "image-folder"), str(image_folder))
    assert ds.modality == "vision" and len(ds) == 120 and len(set(ds.labels)) == 10


def test_builtin_digits_source_passes_the_kit(zoo: Any) -> None:
    ds = check_data_source(_source(zoo, "digits"), "digits")
    assert len(ds) == 1797
