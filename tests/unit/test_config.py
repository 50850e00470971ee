"""The run configuration: defaults, TOML round trip, --set overrides, and refusing typos."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from tlzoo.api.errors import TlzooError
from tlzoo.engine.config import RunConfig


def test_defaults_are_usable() -> None:
    cfg = RunConfig()
    assert cfg.head.name == "fc"
    assert cfg.train.strategy == "feature-extraction"
    assert 0 < cfg.data.val_fraction < 1 and 0 < cfg.data.test_fraction < 1
    assert cfg.train.batch_size >= 1 and cfg.train.lr > 0


def test_set_parses_strings_to_field_types() -> None:
    cfg = RunConfig()
    cfg.apply_overrides(
        ["train.lr=0.01", "train.epochs=4", "data.augment=false", "model.plugin=bert", "seed=7", "data.limit = 50"]
    )
    assert cfg.train.lr == 0.01 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 4 and isinstance(cfg.train.epochs, int)
    assert cfg.data.augment is False
    assert cfg.model.plugin == "bert" and cfg.seed == 7 and cfg.data.limit == 50


@pytest.mark.parametrize("value,expected", [("true", True), ("1", True), ("yes", True), ("off", False), ("0", False)])
def test_bool_spellings(value: str, expected: bool) -> None:
    cfg = RunConfig()
    cfg.set("data.augment", value)
    assert cfg.data.augment is expected


def test_head_keys_become_head_params_parsed_as_json() -> None:
    cfg = RunConfig()
    cfg.apply_overrides(["head.hidden=[64, 32]", "head.dropout=0.2", "head.activation=gelu", "head.name=fc"])
    assert cfg.head.name == "fc"
    assert cfg.head.params == {"hidden": [64, 32], "dropout": 0.2, "activation": "gelu"}


def test_model_options_are_passed_through() -> None:
    cfg = RunConfig()
    cfg.apply_overrides(["model.options.encoder=cnn", "model.options.hidden=64"])
    assert cfg.model.options == {"encoder": "cnn", "hidden": 64}


@pytest.mark.parametrize(
    "item,fragment",
    [
        ("train.lrr=0.1", "Unknown config key 'train.lrr'. Did you mean 'train.lr'"),
        ("trian.lr=0.1", "Unknown config key 'trian.lr'"),
        ("data=3", "is a section"),
        ("seed.x=1", "is not a section"),
        ("train.lr", "--set expects key=value"),
    ],
)
def test_bad_keys_are_errors_naming_the_key(item: str, fragment: str) -> None:
    with pytest.raises(TlzooError) as info:
        RunConfig().apply_overrides([item])
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "item,expects",
    [
        ("train.epochs=three", "int"),
        ("train.epochs=2.5", "int"),
        ("train.lr=fast", "float"),
        ("data.augment=maybe", "bool"),
        ("seed=1e9x", "int"),
    ],
)
def test_wrong_types_are_errors_naming_key_and_type(item: str, expects: str) -> None:
    key = item.split("=")[0]
    with pytest.raises(TlzooError, match=f"Config key '{key}' expects {expects}"):
        RunConfig().apply_overrides([item])


def test_toml_round_trip(tmp_path: Path) -> None:
    cfg = RunConfig()
    cfg.apply_overrides(
        [
            "model.plugin=efficientnet",
            "model.image_size=64",
            'data.path=some dir/with "quotes"',
            "train.lr=0.0005",
            "train.strategy=fine-tune",
            "head.hidden=[16]",
            "head.dropout=0.3",
            "model.options.encoder=cnn",
            "data.augment=false",
            "seed=3",
        ]
    )
    text = cfg.to_toml()
    tomllib.loads(text)  # valid TOML
    path = tmp_path / "run.toml"
    path.write_text(text)
    again = RunConfig.from_toml(path)
    assert again == cfg
    assert again.as_dict() == cfg.as_dict()


def test_from_toml_checks_keys_and_types(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nepochs = 3\nbatch_szie = 8\n")
    with pytest.raises(TlzooError, match="train.batch_szie.*Did you mean 'train.batch_size'"):
        RunConfig.from_toml(path)
    path.write_text('[train]\nepochs = "many"\n')
    with pytest.raises(TlzooError, match="train.epochs' expects int"):
        RunConfig.from_toml(path)
    path.write_text("[train\n")
    with pytest.raises(TlzooError, match="not valid TOML"):
        RunConfig.from_toml(path)
    with pytest.raises(TlzooError, match="does not exist"):
        RunConfig.from_toml(tmp_path / "missing.toml")


def test_toml_values_keep_their_types(tmp_path: Path) -> None:
    path = tmp_path / "typed.toml"
    path.write_text(
        'seed = 5\n[train]\nlr = 1\nepochs = 2\n[data]\naugment = false\n[head]\nname = "fc"\nhidden = 32\n'
    )
    cfg = RunConfig.from_toml(path)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)  # an int is a fine float
    assert cfg.seed == 5 and cfg.data.augment is False and cfg.head.params == {"hidden": 32}


def test_precedence_config_file_then_set(tmp_path: Path) -> None:
    path = tmp_path / "base.toml"
    path.write_text("[train]\nlr = 0.1\nepochs = 5\n")
    cfg = RunConfig.from_toml(path)
    cfg.apply_overrides(["train.lr=0.2"])
    assert cfg.train.lr == 0.2 and cfg.train.epochs == 5


def test_a_fused_runs_options_survive_config_toml(tmp_path: Any) -> None:
    """model.options.inputs and .weights are tables: config.toml must give them back as dicts (resume reads it)."""
    from tlzoo.engine.config import RunConfig

    cfg = RunConfig().use_inputs({"image": "efficientnet_lite0", "my title": "bert:all-MiniLM-L6-v2"}, ["price"])
    cfg.model.options["weights"] = {"my title": "/w/x y"}
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml(), encoding="utf-8")
    again = RunConfig.from_toml(path)
    assert again.model.plugin == "fusion"
    assert again.model.options == {
        "inputs": {"image": "efficientnet_lite0", "my title": "bert:all-MiniLM-L6-v2"},
        "tabular": ["price"],
        "weights": {"my title": "/w/x y"},
    }
