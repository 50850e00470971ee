"""Each engine setting is declared once (tlzoo.engine.config); help, tl config, checks derive from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import typed_like
from tlzoo.api.settings import collect_settings, setting
from tlzoo.engine.config import OPTION_NAMES, RANGES, UNSET, RunConfig, settings


def _help(command: click.Command) -> dict[str, str]:
    """Each option's help text by its long flag."""
    return {max(p.opts, key=len): p.help or "" for p in command.params if isinstance(p, click.Option)}


def test_every_setting_is_declared_with_a_meaning_type_and_the_dataclass_default() -> None:
    cfg = RunConfig()
    for key, decl in settings().items():
        assert decl.help, f"{key} has no meaning"
        assert decl.key == key and decl.default == cfg.get(key)
        assert isinstance(decl.default, decl.type), key


def test_the_old_tables_are_views_of_the_declarations() -> None:
    from tlzoo.engine.config_keys import MEANINGS, engine_keys

    assert {k: d.help for k, d in settings().items()} == MEANINGS
    assert {k.key: k.option for k in engine_keys()} == {k: d.flag for k, d in settings().items()}
    assert OPTION_NAMES["data.val_fraction"] == "--val-fraction" and "data.augment" not in OPTION_NAMES
    assert set(RANGES) == {k for k, d in settings().items() if d.check is not None}
    assert UNSET["train.head_epochs"][0] == -1 and UNSET["train.joint_epochs"][0] == 0 and "model.image_size" in UNSET


def test_tl_run_has_an_option_for_every_declared_flag_with_the_declared_default() -> None:
    from tlzoo.cli.train import RUN_FLAGS, RUN_OPTIONS, run

    helps = _help(run)
    for key, decl in settings().items():
        if not decl.flag:
            continue
        assert decl.flag in helps, f"tl run has no {decl.flag} for {key}"
        if not decl.negative and not decl.unset and not decl.shown and decl.default != "":
            assert helps[decl.flag].endswith(f"[{str(decl.default).lower()}]."), (decl.flag, helps[decl.flag])
    assert "[0.15]." in helps["--val-fraction"] and "[128]." in helps["--max-length"]
    assert "feature-extraction 30" in helps["--head-epochs"]  # an unset default says what decides instead
    assert "from scratch 10" in helps["--joint-epochs"]
    params = {p.name for p in run.params}
    assert {p for p, _ in RUN_OPTIONS + RUN_FLAGS} - {"runtime"} <= params
    assert ("no_amp", "train.amp") in RUN_FLAGS and ("val_fraction", "data.val_fraction") in RUN_OPTIONS


def test_a_changed_default_reaches_the_help_without_another_edit(monkeypatch: pytest.MonkeyPatch) -> None:
    from tlzoo.cli.train import setting_options

    changed = dataclasses.replace(settings()["data.val_fraction"], default=0.2)
    monkeypatch.setitem(settings(), "data.val_fraction", changed)
    command = setting_options(["data.val_fraction", "train.batch_size"], {"train.batch_size": "Per batch"})(
        click.Command("x", callback=lambda **kw: None)
    )
    assert _help(command) == {
        "--val-fraction": "Share of the examples held out for validation (early stopping, best weights) [0.2].",
        "--batch-size": "Per batch [32].",
    }


def test_tl_compare_takes_its_run_options_from_the_same_declarations() -> None:
    from tlzoo.cli.train import COMPARE_SETTINGS, compare

    helps = _help(compare)
    for key in COMPARE_SETTINGS:
        assert settings()[key].flag in helps
    assert helps["--batch-size"] == "Batch size for feature extraction [32]."


@pytest.mark.parametrize("how", ["option", "set", "toml"])
def test_joint_epochs_0_is_an_error_naming_the_fix(how: str, tmp_path: Path) -> None:
    cfg = RunConfig()
    with pytest.raises(TlzooError) as info:
        if how == "toml":
            path = tmp_path / "c.toml"
            path.write_text("[train]\njoint_epochs = 0\n")
            RunConfig.from_toml(path)
        else:
            cfg.set("train.joint_epochs", 0 if how == "option" else "0")
    message = str(info.value)
    assert message.startswith("--joint-epochs (train.joint_epochs) must be at least 1") and "\n" not in message
    assert "leave it out" in message and "fine-tune 3" in message and message.endswith("got 0.")


@pytest.mark.parametrize("key", ["train.epochs", "train.head_epochs"])
def test_negative_or_old_zero_epochs_are_refused_in_one_line(key: str) -> None:
    with pytest.raises(TlzooError) as info:
        RunConfig().set(key, "0" if key == "train.epochs" else "-3")
    message = str(info.value)
    assert "\n" not in message and ("--head-epochs" in message)


def test_epochs_left_unset_are_still_the_strategy_default() -> None:
    cfg = RunConfig()
    cfg.validate()  # unset: the strategy decides
    toml = cfg.to_toml()
    assert (cfg.train.head_epochs, cfg.train.joint_epochs) == (-1, 0)
    assert "# head_epochs: not set (the strategy's default" in toml and "\nhead_epochs =" not in toml
    cfg.set("train.joint_epochs", "1")
    cfg.set("train.head_epochs", "0")  # no frozen phase before fine-tuning: allowed
    assert (cfg.train.joint_epochs, cfg.train.head_epochs) == (1, 0)
    cfg.train.joint_epochs = -2  # assigned in Python: validate catches it
    with pytest.raises(TlzooError, match="must be at least 1"):
        cfg.validate()


def test_old_epochs_set_in_python_survive_config_toml(tmp_path: Path) -> None:
    """0.2's cfg.train.epochs = N, written to config.toml before validate (resume, seeds), reads back as N."""
    cfg = RunConfig()
    with pytest.warns(DeprecationWarning):
        cfg.train.epochs = 4
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    again = RunConfig.from_toml(path)
    again.validate()
    assert again.train.head_epochs == 4  # feature extraction's last phase is the head's


def test_tl_run_joint_epochs_0_is_one_line_exit_2() -> None:
    from tlzoo.cli import cli

    res = CliRunner().invoke(cli, ["run", "--plugin", "lenet", "--data", "digits", "--joint-epochs", "0"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "Error: --joint-epochs (train.joint_epochs) must be at least 1 (0 is not the default: leave it out for "
        "the strategy's own, fine-tune 3, from scratch 10), got 0."
    ]


def test_choices_are_checked_when_set_with_did_you_mean() -> None:
    cfg = RunConfig()
    with pytest.raises(TlzooError, match=r"Unknown train.schedule 'cosin'. Did you mean 'cosine'\? Use one of"):
        cfg.set("train.schedule", "cosin")
    cfg.set("train.schedule", "slanted")
    cfg.train.schedule = "linear"  # assigned in Python: validate catches it
    with pytest.raises(TlzooError, match="Unknown train.schedule 'linear'"):
        cfg.validate()


@pytest.mark.parametrize(
    "key,message",
    [
        ("lr", "Unknown config key 'lr'. Did you mean 'train.lr'?"),
        ("train.lrr", "Unknown config key 'train.lrr'. Did you mean 'train.lr'?"),
        ("data.head_epochs", "Did you mean 'train.head_epochs'"),
        ("zzz", "Unknown config key 'zzz'. Known: data, model, head, train, seed, out, progress."),
        ("model.options", "Config key 'model.options' is a section; set one of its keys, e.g. 'model.options.KEY'."),
        ("train", "Config key 'train' is a section; set one of its keys, e.g. 'train.strategy'."),
    ],
)
def test_unknown_keys_suggest_within_their_section_then_anywhere(key: str, message: str) -> None:
    with pytest.raises(TlzooError) as info:
        RunConfig().set(key, "1")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "want,value,loose,expected",
    [
        (True, "off", True, (True, False)),
        (True, "off", False, (False, "off")),
        (0, "4", True, (True, 4)),
        (0, 2.0, True, (True, 2)),
        (0, 2.0, False, (False, 2.0)),
        (0, "2.5", True, (False, "2.5")),
        (0, True, True, (False, True)),
        (0.0, "1e-3", True, (True, 1e-3)),
        (0.0, 3, False, (True, 3.0)),
        ("", 5, True, (True, "5")),
        ("", 5, False, (False, 5)),
        ("", False, True, (False, False)),
    ],
)
def test_one_type_rule_for_plugin_options_and_engine_settings(
    want: Any, value: Any, loose: bool, expected: Any
) -> None:
    ok, out = typed_like(want, value, loose=loose)
    assert (ok, out) == expected and type(out) is type(expected[1])


@dataclasses.dataclass
class _Inner:
    width: int = setting(8, "how wide", flag="--width", check=lambda v: v > 0, must="positive")


@dataclasses.dataclass
class _Outer:
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    tags: dict[str, Any] = setting(help="free-form", factory=dict)


def test_a_dataclass_of_settings_is_collected_with_keys_types_and_defaults() -> None:
    found = collect_settings(_Outer)
    assert list(found) == ["inner.width", "tags"]
    width = found["inner.width"]
    assert (width.type, width.default, width.param, width.help_text()) == (int, 8, "width", "How wide [8].")
    assert found["tags"].type is dict and found["tags"].default == {}
    with pytest.raises(TlzooError, match=r"^--width \(inner.width\) must be positive, got 0.$"):
        width.check_value(0)
