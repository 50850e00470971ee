"""The contract kit itself: it fails broken plugins naming the rule they break, and passes sound ones.

As scikit-learn tests ``check_estimator`` against deliberately broken estimators: each
backbone in ``kit_fixtures`` breaks one rule (a wrong feature width, dropout or noise in
eval mode, augmentation at eval, batch-mean normalisation, a fingerprint blind to the
weights, Python's ``hash()``, an unseeded ``np.random`` projection) and must fail exactly
the checks that rule implies, with messages starting with the rule's name; a sound
backbone and a parameter-free one (a fixed CRC32 char-trigram map) pass every check.
The broken backbones live in ``tests/contract/kit_fixtures.py`` so the cross-process check can
import them in a fresh interpreter.
"""

from __future__ import annotations

import copy
import pickle
import re
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kit_fixtures as kf
import numpy as np
import pytest
import torch
from torch import nn

from tlzoo.api.interfaces import (
    BackboneRequest,
    DataOptions,
    Dataset,
    DataSource,
    FittableBackbone,
    FittedHead,
    Phase,
    Plan,
    Pretrainer,
    Strategy,
    TorchHead,
)
from tlzoo.testing import (
    BackboneCase,
    DataSourceCase,
    HeadCase,
    PretrainerCase,
    StrategyCase,
    all_checks,
    check_backbone,
    check_batch_independence,
    check_build_determinism,
    check_cross_process_determinism,
    check_fingerprint,
    check_forward_shape,
    check_freezing,
    check_layer_groups,
    checks_for,
    parametrize_with_checks,
    tiny_fit_data,
    tiny_texts,
    uncovered,
)
from tlzoo.testing.pretrainers import pickle_kind

CROSS = "check_cross_process_determinism"
BUILD = "check_build_determinism"


def _failures(obj: Any) -> dict[str, str]:
    """Run every check that applies to ``obj``; the failing ones by rule, with their messages (skips left out)."""
    failed: dict[str, str] = {}
    for case, check in checks_for(obj):
        try:
            check(case)
        except AssertionError as exc:
            failed[check.__name__] = str(exc)
        except unittest.SkipTest:
            continue
    return failed


# --------------------------------------------------------------------------- broken backbones
BROKEN = [
    # backbone, the rule it breaks, words its message must hold, every rule that must fail
    (
        kf.WrongWidth,
        "check_forward_shape",
        "gives 8 features per example but num_features is 12",
        {"check_forward_shape", "check_training_step", "check_awkward_examples"},
    ),
    (
        kf.DropoutLeftOn,
        "check_eval_determinism",
        "two eval-mode forwards of the same batch differ",
        {"check_eval_determinism", "check_batch_independence", BUILD, CROSS},
    ),
    (
        kf.NoiseInForward,
        "check_eval_determinism",
        "two eval-mode forwards of the same batch differ",
        {"check_eval_determinism", "check_batch_independence", BUILD, CROSS},
    ),
    (
        kf.AugmentAtEval,
        "check_eval_transform",
        r"transform\(example, train=False\) gave two different results",
        {"check_eval_transform", "check_batch_independence", BUILD, CROSS},
    ),
    (kf.BatchMean, "check_batch_independence", "features change with batch composition", {"check_batch_independence"}),
    (kf.BlindFingerprint, "check_fingerprint", "did not change when weights changed", {"check_fingerprint"}),
    (kf.HashBag, CROSS, "features differ between processes", {CROSS}),
    (kf.UnseededProjection, BUILD, "two fresh builds from the same request give different features", {BUILD, CROSS}),
    # fitted on the training split
    (kf.UnstableFit, BUILD, "two fresh builds from the same request give different features", {BUILD}),
    (
        kf.FingerprintMissesFit,
        "check_fit_protocol",
        r"other features but the same fingerprint\(\)",
        {"check_fit_protocol"},
    ),
]


def _built(cls: type) -> Any:
    """An instance of ``cls``, fitted on the kit's default split when it is a FittableBackbone."""
    backbone = cls()
    if isinstance(backbone, FittableBackbone):
        backbone.fit(tiny_fit_data(backbone.modality))
    return backbone


@pytest.mark.parametrize(("cls", "rule", "words", "failing"), BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_a_broken_backbone_fails_the_rule_it_breaks_by_name(
    cls: type, rule: str, words: str, failing: set[str]
) -> None:
    failed = _failures(_built(cls))
    assert set(failed) == failing, failed
    for name, message in failed.items():
        assert message.startswith(f"[{name}] "), message
        assert "max difference nan" not in message, message
    assert re.search(words, failed[rule]), failed[rule]


def test_features_from_hash_differ_in_a_fresh_process_built_through_a_module_attr_factory() -> None:
    """The child rebuilds through ``kit_fixtures:make`` with the request; the same factory's sound bag passes."""
    broken = BackboneCase("kit_fixtures:make", BackboneRequest("hash-bag", pretrained=False))
    with pytest.raises(AssertionError, match=r"^\[check_cross_process_determinism\] features differ"):
        check_cross_process_determinism(broken.get(), tiny_texts(), rebuild=broken)
    sound = BackboneCase("kit_fixtures:make", BackboneRequest("good-bag", pretrained=False))
    check_cross_process_determinism(sound.get(), tiny_texts(), rebuild=sound)


def test_nan_features_are_their_own_failure_never_a_nan_difference() -> None:
    examples = tiny_texts(3) + [""]  # the empty text gets 0/0
    with pytest.raises(AssertionError) as info:
        check_batch_independence(kf.NaNForEmpty(), examples)
    message = str(info.value)
    assert message.startswith("[check_batch_independence] features contain NaN"), message
    assert "example 3" in message and "difference" not in message.split(";")[0]
    with pytest.raises(AssertionError, match=r"^\[check_forward_shape\] features contain NaN or inf for example 3"):
        check_forward_shape(kf.NaNForEmpty(), examples)


def test_an_exception_inside_the_plugin_is_an_assertion_naming_the_rule() -> None:
    with pytest.raises(AssertionError, match=r"^\[check_forward_shape\] raised IndexError: list index out of range"):
        check_forward_shape(kf.RaisesInForward(), tiny_texts())


# --------------------------------------------------------------------------- sound backbones pass everything
SOUND = [
    kf.GoodBag(),
    kf.CharTrigrams(),  # parameter-free: no parameters, no layer groups
    BackboneCase(
        "kit_fixtures:FACTORY", BackboneRequest("char-trigrams", pretrained=False), id="char-trigrams-factory"
    ),
    BackboneCase("kit_fixtures:FACTORY", BackboneRequest("good-bag", pretrained=False), id="good-bag-factory"),
    BackboneCase(
        "kit_fixtures:FACTORY", BackboneRequest("tfidf", pretrained=False), id="tfidf"
    ),  # fitted, no parameters
    BackboneCase(backbone=_built(kf.TfIdf), id="tfidf-built"),
]


@parametrize_with_checks(SOUND)
def test_a_sound_backbone_passes_every_check_without_skipping(case: Any, check: Callable[[Any], None]) -> None:
    try:
        check(case)
    except unittest.SkipTest as exc:  # these can all be rebuilt: only a rule that does not apply may skip
        if not any(why in str(exc) for why in ("not a FittableBackbone", "no BatchNorm layer")):
            pytest.fail(f"{check.__name__} skipped: {exc}")
        raise


def test_check_backbone_runs_every_check_and_names_the_first_failure() -> None:
    chars = kf.CharTrigrams()
    assert not list(chars.parameters()) and chars.layer_groups() == []  # nothing to freeze, nothing to train
    check_backbone(chars, tiny_texts(), rebuild=None)  # the rebuilding checks through the importable class
    with pytest.raises(AssertionError, match=r"^\[check_batch_independence\] "):
        check_backbone(kf.BatchMean())


# --------------------------------------------------------------------------- layer groups and freezing
class _MissingGroup(kf.GoodBag):
    def layer_groups(self) -> list[nn.Module]:
        return [self.top]  # the embedding is in no group


class _Reversed(kf.GoodBag):
    def layer_groups(self) -> list[nn.Module]:
        return [self.top, self.embed]


class _CopiedGroups(kf.GoodBag):
    def layer_groups(self) -> list[nn.Module]:
        return copy.deepcopy([self.embed, self.top])  # freezing copies leaves the real layers alone


def test_layer_groups_that_miss_parameters_run_out_of_order_or_are_copies_fail() -> None:
    examples = tiny_texts()
    with pytest.raises(AssertionError, match=r"^\[check_layer_groups\] .*in no layer group"):
        check_layer_groups(_MissingGroup(), examples)
    with pytest.raises(AssertionError, match=r"^\[check_layer_groups\] layer groups are not ordered"):
        check_layer_groups(_Reversed(), examples)
    with pytest.raises(AssertionError, match=r"^\[check_freezing\] set_trainable"):
        check_freezing(_CopiedGroups(), examples)


def test_parameters_without_layer_groups_fail_instead_of_crashing() -> None:
    class NoGroups(kf.GoodBag):
        def layer_groups(self) -> list[nn.Module]:
            return []

    with pytest.raises(AssertionError, match=r"^\[check_layer_groups\] layer_groups\(\) is empty but the backbone has"):
        check_layer_groups(NoGroups(), tiny_texts())
    check_fingerprint(NoGroups(), tiny_texts())  # still finds a weight to change


def test_unmasked_pooling_and_a_blind_fingerprint_of_a_real_backbone_fail(tiny_bert_dir: Path) -> None:
    """Mean pooling over padding makes tiny BERT's features depend on the batch."""
    case = BackboneCase("bert", BackboneRequest("tiny-bert", weights=str(tiny_bert_dir), max_length=24, pooling="mean"))
    good = case.get()
    examples = tiny_texts()

    class Unmasked(type(good)):  # type: ignore[misc]
        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.encoder(**batch).last_hidden_state.mean(1)  # padding tokens counted

        def fingerprint(self) -> str:
            return "always-the-same"

    bad = Unmasked.__new__(Unmasked)
    bad.__dict__.update(good.__dict__)
    with pytest.raises(AssertionError, match=r"^\[check_batch_independence\] features change with batch composition"):
        check_batch_independence(bad, examples)
    with pytest.raises(AssertionError, match=r"^\[check_fingerprint\] fingerprint\(\) did not change"):
        check_fingerprint(bad, examples)
    check_batch_independence(good, examples)


# ----------------------------------------------------------------- what cannot be rebuilt is skipped, saying why
def test_a_backbone_that_cannot_be_rebuilt_skips_the_rebuilding_checks_with_the_reason() -> None:
    class Local(kf.GoodBag):  # defined in a function: no fresh process can import it
        pass

    for check in (check_cross_process_determinism, check_build_determinism):
        with pytest.raises(unittest.SkipTest, match=r"cannot be rebuilt: give BackboneCase\(factory, request\)"):
            check(Local(), tiny_texts())
    check_backbone(Local())  # the other checks run; the rebuilding ones are left out
    by_lambda = BackboneCase(lambda request: kf.GoodBag(request), BackboneRequest("good-bag", pretrained=False))
    with pytest.raises(unittest.SkipTest, match="neither registered by an installed plugin nor importable"):
        check_cross_process_determinism(by_lambda.get(), tiny_texts(), rebuild=by_lambda)
    check_build_determinism(by_lambda.get(), tiny_texts(), rebuild=by_lambda)  # in-process: a lambda is fine


# ----------------------------------------------------------------- parametrize_with_checks, checks_for, uncovered
def test_parametrize_with_checks_gives_one_test_id_per_case_and_rule_and_keeps_marks() -> None:
    mark = parametrize_with_checks(
        [
            pytest.param(kf.CharTrigrams(), id="chars", marks=pytest.mark.transfer),
            HeadCase("fc", {"dropout": 0.0}),
            StrategyCase("fine-tune"),
            DataSourceCase("digits", "digits"),
            PretrainerCase("word2vec"),
            BackboneCase("bert", BackboneRequest("tiny", pretrained=False)),
        ]
    )
    assert mark.args[0] == ("case", "check")
    params = mark.args[1]
    ids = [p.id for p in params]
    assert len(ids) == len(set(ids))
    backbone_rules = [c.__name__ for c in all_checks()["backbones"]]
    factory_only = {"check_rebuild", "check_backbone_factory"}  # need a factory and a request
    assert [i for i in ids if i.startswith("chars-")] == [f"chars-{r}" for r in backbone_rules if r not in factory_only]
    assert {"tiny-check_rebuild", "tiny-check_backbone_factory"} <= set(ids)
    assert {
        "fc-check_head_options",
        "fc-check_head_learns",
        "fc-check_head_round_trip",
        "fine-tune-check_strategy_plans",
        "digits-check_data_source_loads",
        "pretrain-word2vec-check_pretrainer_no_pickles",
        "tiny-check_forward_shape",
    } <= set(ids)
    chars = [p for p in params if p.id.startswith("chars-")]
    assert all(any(m.name == "transfer" for m in p.marks) for p in chars)
    assert not any(p.marks for p in params if not p.id.startswith("chars-"))


def test_checks_for_accepts_plain_objects_of_every_kind() -> None:
    from tlzoo.testing import as_case

    zoo_head = HeadCase("logreg").resolve()
    assert isinstance(as_case(zoo_head), HeadCase)
    assert isinstance(as_case(StrategyCase("fine-tune").resolve()), StrategyCase)
    assert isinstance(as_case((DataSourceCase("digits", "").resolve(), "digits")), DataSourceCase)
    assert isinstance(as_case(PretrainerCase("word2vec").resolve()), PretrainerCase)
    assert isinstance(as_case(("kit_fixtures:make", BackboneRequest("good-bag"))), BackboneCase)
    names = [check.__name__ for _, check in checks_for(zoo_head)]
    assert names == ["check_head_options", "check_head_learns", "check_head_round_trip"]
    with pytest.raises(TypeError, match="don't know which checks apply"):
        list(checks_for(42))


def test_uncovered_names_what_is_registered_without_a_case() -> None:
    missing = uncovered([HeadCase("fc"), StrategyCase("fine-tune")])
    assert "fc" not in missing["heads"] and "logreg" in missing["heads"]
    assert "fine-tune" not in missing["strategies"] and "ulmfit" in missing["strategies"]
    assert "bert" in missing["backbones"] and "csv" in missing["data_sources"] and "elmo" in missing["pretrainers"]
    only_ulmfit = uncovered([], plugin="ulmfit")  # what one plugin registered
    assert only_ulmfit == {
        "backbones": ["ulmfit"],
        "heads": [],
        "strategies": ["ulmfit"],
        "data_sources": [],
        "pretrainers": ["ulmfit"],
        "commands": [],
        "catalogue": [],
        "step_wrappers": [],
    }
    assert uncovered([BackboneCase("ulmfit")], plugin="ulmfit", exempt=["ulmfit"])["strategies"] == []


# --------------------------------------------------------------------------- heads, strategies, data sources
class _ObjectStateHead(FittedHead):
    """A nearest-centroid head whose state holds Python objects: only a pickle could save it."""

    name = "object-state"

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        self.centroids = np.stack([x[y == c].mean(0) for c in range(num_classes)])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        d = -((x[:, None, :] - self.centroids[None]) ** 2).sum(-1)
        e = np.exp(d - d.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)  # type: ignore[no-any-return]

    def state(self) -> dict[str, np.ndarray]:
        return {"centroids": np.array([{"c": c} for c in self.centroids], dtype=object)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.centroids = np.stack([a["c"] for a in arrays["centroids"]])


class _FrozenHead(TorchHead):
    """A torch head that never learns: its only layer has requires_grad off."""

    name = "frozen"

    def build(self, num_features: int, num_classes: int) -> nn.Module:
        layer = nn.Linear(num_features, num_classes)
        layer.weight.requires_grad_(False)
        with torch.no_grad():
            layer.weight.zero_()
        return layer


def test_broken_heads_fail_the_rule_they_break() -> None:
    failed = _failures(HeadCase(_ObjectStateHead))
    assert set(failed) == {"check_head_round_trip"}, failed
    assert failed["check_head_round_trip"].startswith(
        "[check_head_round_trip] state()['centroids'] holds Python objects"
    )
    failed = _failures(HeadCase(_FrozenHead))  # only its bias learns: it round-trips, but reaches chance level
    assert set(failed) == {"check_head_learns"}, failed
    assert failed["check_head_learns"].startswith("[check_head_learns] the head reached only 0.33 accuracy")


class _GreedyStrategy(Strategy):
    """Trains every backbone group, even for a fitted head."""

    name = "greedy"
    description = "always fine-tunes everything"

    def plan(self, head: Any, train: Any) -> Plan:
        return Plan([Phase("all", 1, 1e-3, train_groups=-1)], extract_features=False)


def test_a_strategy_training_the_backbone_under_a_fitted_head_fails() -> None:
    heads = [HeadCase("fc").resolve(), HeadCase("logreg").resolve()]
    failed = _failures(StrategyCase(_GreedyStrategy(), head_classes=heads))
    assert set(failed) == {"check_strategy_plans"}
    assert failed["check_strategy_plans"].startswith("[check_strategy_plans] a fitted head ('logreg') cannot train")


class _Everywhere(DataSource):
    """Claims every location, and gives every row the same id."""

    name = "everywhere"
    modality = "text"

    def can_load(self, location: str) -> bool:
        return True

    def load(self, location: str, options: DataOptions) -> Dataset:
        return Dataset(["a", "b"], ["x", "y"], modality="text")


class _DuplicateIds(_Everywhere):
    name = "duplicate-ids"

    def can_load(self, location: str) -> bool:
        return location == "here"

    def load(self, location: str, options: DataOptions) -> Dataset:
        ds = Dataset(["a", "b"], ["x", "y"], modality="text")
        ds.ids = ["1", "1"]
        return ds


def test_broken_data_sources_fail_the_rule_they_break() -> None:
    failed = _failures(DataSourceCase(_Everywhere(), "anything"))
    assert set(failed) == {"check_data_source_recognises"}
    assert "claims it can load '/nonexistent/tlzoo-check/data'" in failed["check_data_source_recognises"]
    failed = _failures(DataSourceCase(_DuplicateIds(), "here"))
    assert set(failed) == {"check_data_source_loads"}
    assert failed["check_data_source_loads"].startswith("[check_data_source_loads] ids must be unique")


# --------------------------------------------------------------------------- pretrainers
class _FakePretrainer(Pretrainer):
    """Writes ``files`` (name -> bytes) and returns ``summary``; no backbone is registered under its name."""

    description = "writes what the test says"

    def __init__(self, name: str, files: dict[str, bytes], summary: Any) -> None:
        self.name, self.files, self.summary = name, files, summary

    def pretrain(self, corpus: list[str], out: str, options: dict[str, Any], log: Callable[[str], None]) -> Any:
        for name, data in self.files.items():
            (Path(out) / name).write_bytes(data)
        return copy.deepcopy(self.summary)


_HISTORY = {"history": [{"epoch": 1, "train_loss": 2.0}]}


def _torch_save_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(2)}, path)
    return path.read_bytes()


def test_pretrainers_that_pickle_or_keep_no_history_fail_and_a_sound_one_passes(tmp_path: Path) -> None:
    sound = _failures(PretrainerCase(_FakePretrainer("fake-sound", {"weights.json": b"{}"}, _HISTORY)))
    assert sound == {}
    failed = _failures(
        PretrainerCase(_FakePretrainer("fake-torch", {"weights.pt": _torch_save_bytes(tmp_path)}, _HISTORY))
    )
    assert set(failed) == {"check_pretrainer_no_pickles"}
    assert failed["check_pretrainer_no_pickles"].startswith("[check_pretrainer_no_pickles] weights.pt is a zip archive")
    renamed = pickle.dumps({"w": [1.0]}, protocol=4)
    failed = _failures(PretrainerCase(_FakePretrainer("fake-pickle", {"vectors.bin": renamed}, _HISTORY)))
    assert "vectors.bin is a Python pickle (protocol 4)" in failed["check_pretrainer_no_pickles"]
    failed = _failures(PretrainerCase(_FakePretrainer("fake-no-history", {"w.json": b"{}"}, {"loss": 1.0})))
    assert set(failed) == {"check_pretrainer_output"}
    assert "non-empty 'history' list" in failed["check_pretrainer_output"]
    with pytest.raises(unittest.SkipTest, match="no backbone factory named 'fake-sound' is registered"):
        next(
            c
            for _, c in checks_for(_FakePretrainer("fake-sound", {}, _HISTORY))
            if c.__name__ == "check_pretrainer_weights_load"
        )(PretrainerCase(_FakePretrainer("fake-sound", {}, _HISTORY)))


def test_a_safetensors_header_starting_like_a_pickle_is_not_one(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes((0x0280).to_bytes(8, "little") + b'{"__metadata__":{}}')  # first bytes 0x80 0x02
    assert pickle_kind(path) is None
    path.write_bytes(b"\x80\x02" + b"\x00" * 10)
    assert pickle_kind(path) == "a Python pickle (protocol 2)"
