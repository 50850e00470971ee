"""Epochs by their names (issue 17 §5): train.head_epochs (the new head alone) and train.joint_epochs
(the backbone training); 0.2's train.epochs / --epochs still loads, read as the key of the phase it
meant, with a one-line note; strategies that read train.epochs keep working."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tlzoo.api.errors import TlzooError
from tlzoo.engine.config import RunConfig, TrainConfig
from tlzoo.plugins.heads.fc import FCHead
from tlzoo.plugins.strategies.standard import FeatureExtraction, FineTune


def _epochs(strategy: object, train: TrainConfig) -> list[tuple[str, int]]:
    return [(p.name, p.epochs) for p in strategy.plan(FCHead(), train).phases]  # type: ignore[attr-defined]


def test_defaults_are_unchanged() -> None:
    assert _epochs(FeatureExtraction(), TrainConfig()) == [("head", 30)]
    assert _epochs(FineTune(), TrainConfig()) == [("head", 10), ("fine-tune", 3)]


def test_new_names_set_each_phase() -> None:
    cfg = RunConfig()
    cfg.set("train.head_epochs", "7")
    assert _epochs(FeatureExtraction(), cfg.train) == [("head", 7)]
    cfg.set("train.joint_epochs", 2)
    cfg.set("train.head_epochs", 0)  # fine-tune without a head phase
    assert _epochs(FineTune(), cfg.train) == [("fine-tune", 2)]
    with pytest.raises(TlzooError, match="--head-epochs 0 trains no head"):
        FeatureExtraction().plan(FCHead(), cfg.train)


@pytest.mark.parametrize(
    ("strategy", "pretrained", "key", "phases"),
    [
        ("feature-extraction", True, "head_epochs", [("head", 5)]),
        ("fine-tune", True, "joint_epochs", [("head", 10), ("fine-tune", 5)]),
        ("feature-extraction", False, "joint_epochs", None),  # from scratch: every layer's epochs
    ],
)
def test_old_epochs_key_reads_as_the_phase_it_meant(
    tmp_path: Path, strategy: str, pretrained: bool, key: str, phases: list[tuple[str, int]] | None
) -> None:
    toml = tmp_path / "old.toml"
    toml.write_text(f'[model]\npretrained = {str(pretrained).lower()}\n[train]\nstrategy = "{strategy}"\nepochs = 5\n')
    cfg = RunConfig.from_toml(toml)
    cfg.validate()
    assert getattr(cfg.train, key) == 5 and cfg.train.epochs == 5
    flag = "--" + key.replace("_", "-")
    assert cfg.notes == [cfg.notes[0]] and "deprecated" in cfg.notes[0] and f"read as {flag} 5" in cfg.notes[0]
    assert f"{key} = 5" in cfg.to_toml() and "\nepochs" not in cfg.to_toml()  # config.toml holds the new key
    if phases:
        plan_of = FeatureExtraction() if strategy == "feature-extraction" else FineTune()
        assert _epochs(plan_of, cfg.train) == phases
    again = RunConfig()
    again.update(__import__("tomllib").loads(cfg.to_toml()))
    assert getattr(again.train, key) == 5


def test_old_epochs_gives_way_to_the_new_name_and_refuses_zero() -> None:
    cfg = RunConfig()
    cfg.set("train.epochs", 4)
    cfg.set("train.head_epochs", 9)
    cfg.validate()
    assert cfg.train.head_epochs == 9 and "4 ignored: --head-epochs is given" in cfg.notes[0]
    with pytest.raises(TlzooError, match="at least 1.*--head-epochs"):
        RunConfig().set("train.epochs", 0)


def test_python_attribute_warns_and_third_party_strategies_read_epochs() -> None:
    train = TrainConfig()
    assert train.epochs == 0  # "not set": a 0.2 strategy's `train.epochs or 5` gives 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train.epochs = 20
    assert caught and issubclass(caught[0].category, DeprecationWarning) and "head_epochs" in str(caught[0].message)
    assert train.epochs == 20
    cfg = RunConfig()
    cfg.set("train.head_epochs", 12)  # a linear probe given the new name still sees it
    assert cfg.train.epochs == 12
    cfg.set("train.joint_epochs", 3)
    assert cfg.train.epochs == 3


def test_test_fraction_zero_needs_cv() -> None:
    cfg = RunConfig()
    cfg.set("data.test_fraction", 0)
    with pytest.raises(TlzooError, match="--test-fraction 0 leaves no test split.*--cv K"):
        cfg.validate()
    cfg.set("train.cv", 3)
    cfg.validate()


def test_split_without_test() -> None:
    from tlzoo.api.interfaces import Dataset

    ds = Dataset(examples=[f"t{i}" for i in range(40)], labels=["a", "b"] * 20, modality="text")
    s = __import__("tlzoo.engine.data", fromlist=["x"]).stratified_split(ds, 0.15, 0.0, 0)
    assert len(s.test) == 0 and len(s.train) + len(s.val) == 40
