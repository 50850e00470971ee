"""Defaults that do not hurt (issue 11): a scratch run trains every layer, augmentation keeps small
oriented images intact, config.toml is reusable from any folder, a corpus line is one text."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tlzoo.engine.config import RunConfig, TrainConfig
from tlzoo.engine.runner import Run
from tlzoo.engine.zoo import Zoo


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    return Zoo()


def _strategy(zoo: Zoo, name: str) -> Any:
    return zoo.strategies.get(name)


# --------------------------------------------------------------------------- --no-pretrained
def test_random_weights_train_every_layer_from_epoch_1_unless_the_user_plans(zoo: Zoo) -> None:
    fc, logreg = zoo.heads.get("fc")(), zoo.heads.get("logreg")()
    for name in ("feature-extraction", "fine-tune"):
        plan = _strategy(zoo, name).plan_from_scratch(fc, TrainConfig())
        assert [(p.name, p.train_groups, p.lr, p.epochs) for p in plan.phases] == [("scratch", -1, 1e-2, 10)]
        assert plan.trains_backbone and not plan.extract_features
        assert _strategy(zoo, name).plan_from_scratch(fc, TrainConfig(epochs=5)).phases[0].epochs == 5
    fine_tune = _strategy(zoo, "fine-tune")
    for own in (TrainConfig(head_epochs=2), TrainConfig(unfreeze=-1), TrainConfig(gradual_unfreezing=True, unfreeze=3)):
        assert fine_tune.plan_from_scratch(fc, own) is None  # the user's plan stands
    extraction = _strategy(zoo, "feature-extraction")
    assert extraction.plan_from_scratch(logreg, TrainConfig()) is None  # a fitted head: the backbone stays frozen
    assert extraction.plan_from_scratch(fc, TrainConfig(unfreeze=0)) is None  # the random-features baseline
    assert _strategy(zoo, "ulmfit").plan_from_scratch(fc, TrainConfig()) is None  # third parties: opt in


def _lenet(image_folder: Path, out: Path, **train: Any) -> RunConfig:
    cfg = RunConfig()
    cfg.model.plugin, cfg.model.pretrained, cfg.data.path, cfg.out = "lenet", False, str(image_folder), str(out)
    cfg.train.device, cfg.train.batch_size, cfg.progress = "cpu", 16, False
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


@pytest.mark.parametrize("strategy", ["feature-extraction", "fine-tune"])
def test_a_scratch_run_has_no_frozen_phase_and_says_so(image_folder: Path, tmp_path: Path, strategy: str) -> None:
    logs: list[str] = []
    result = Run(_lenet(image_folder, tmp_path / "r", strategy=strategy, epochs=1), Zoo(), logs.append).execute()
    said = [m for m in logs if m.startswith("  --no-pretrained")]
    assert len(said) == 1 and "every layer trains from epoch 1" in said[0], logs
    assert any("backbone groups training: top 3 of 3" in m for m in logs), logs
    assert not any("features for" in m for m in logs)  # nothing frozen: no features extracted
    history = (result.run_dir / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["scratch"]
    model = json.loads((result.run_dir / "model.json").read_text())
    assert model["backbone"]["weights_saved"] and not model["backbone"]["request"]["pretrained"]


def test_a_fitted_head_on_random_weights_is_called_a_baseline(image_folder: Path, tmp_path: Path) -> None:
    logs: list[str] = []
    cfg = _lenet(image_folder, tmp_path / "r")
    cfg.head.name = "nb"
    Run(cfg, Zoo(), logs.append).execute()
    assert any("warning: --no-pretrained with a frozen backbone" in m and "baseline" in m for m in logs), logs


@pytest.mark.transfer
def test_lenet_from_scratch_on_digits_reaches_090_with_no_other_options(run_cli: Any, tmp_path: Path) -> None:
    """The issue's bar: `tl run --plugin lenet --no-pretrained --data digits --strategy fine-tune --epochs 5`."""
    res = run_cli(
        "run", "--plugin", "lenet", "--no-pretrained", "--data", "digits", "--strategy", "fine-tune",
        "--epochs", 5, "--out", tmp_path / "r", "--json", "--quiet",
    )  # fmt: skip
    assert res.exit_code == 0, res
    assert json.loads(res.stdout)["test"]["accuracy"] >= 0.90


# --------------------------------------------------------------------------- augmentation
def test_augmentation_defaults_keep_small_oriented_images_whole() -> None:
    from torchvision import transforms

    from tlzoo.lib.vision.images import AUGMENT_OPTIONS, build_transforms
    from tlzoo.plugins.vision.lenet import DATA_CONFIG

    assert AUGMENT_OPTIONS["hflip"] == 0 and AUGMENT_OPTIONS["crop_scale"] >= 0.7

    def parts(options: dict[str, Any]) -> list[Any]:
        train, _ = build_transforms(DATA_CONFIG, options, augment=True)
        return list(train.transforms)

    default = parts({})
    crop = [t for t in default if type(t).__name__.startswith("RandomResizedCrop")][0]  # timm's subclass
    assert crop.scale == (0.7, 1.0) and 0.85 <= crop.ratio[0] <= crop.ratio[1] <= 1.2
    assert not any(isinstance(t, transforms.RandomHorizontalFlip) for t in default)
    flips = [t for t in parts({"hflip": 0.5}) if isinstance(t, transforms.RandomHorizontalFlip)]
    assert len(flips) == 1 and flips[0].p == 0.5  # flips on request


def test_the_registered_vision_options_are_the_mild_ones(zoo: Zoo) -> None:
    for name in ("efficientnet", "resnet", "mobilenet", "inception"):
        options = zoo.backbones.get(name).options
        assert options["hflip"] == 0 and options["crop_scale"] >= 0.7, (name, options)


def test_a_text_run_does_not_say_augmentation_on(tiny_bert_dir: Path, text_csv: Path) -> None:
    logs: list[str] = []
    cfg = RunConfig()
    cfg.model.plugin, cfg.model.weights, cfg.data.path = "bert", str(tiny_bert_dir), str(text_csv)
    cfg.train.strategy, cfg.train.device = "fine-tune", "cpu"
    run = Run(cfg, Zoo(), logs.append, probe=True)
    run.perform("resolve_plugins")
    run.perform("configure_augmentation")
    said = [m for m in logs if "augmentation" in m]
    assert said == ["  augmentation none: training texts are used as they are"], logs


# --------------------------------------------------------------------------- config.toml
def test_config_toml_keeps_an_absolute_data_path_and_no_epochs_0(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(image_folder.parent)
    cfg = _lenet(Path(image_folder.name), tmp_path / "r", epochs=0)
    cfg.head.name = "nb"
    result = Run(cfg, Zoo(), lambda m: None).execute()
    text = (result.run_dir / "config.toml").read_text()
    saved = tomllib.loads(text)
    assert saved["data"]["path"] == str(image_folder.resolve())
    assert "epochs" not in saved["train"] and "# joint_epochs: not set" in text
    assert "image_size" not in saved["model"]
    monkeypatch.chdir(tmp_path)  # elsewhere, the saved config still finds the data
    again = RunConfig.from_toml(result.run_dir / "config.toml")
    assert again.train.epochs == 0 and again.model.image_size == 0
    again.out = str(tmp_path / "again")
    assert Run(again, Zoo(), lambda m: None).execute().metrics["run"]["n_test"] == result.metrics["run"]["n_test"]


def test_a_built_in_name_stays_a_name_in_config_toml(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlzoo.engine.run.setup import _config_to_save

    monkeypatch.chdir(tmp_path)
    run = Run(_lenet(Path("digits"), tmp_path / "r"), Zoo(), lambda m: None, probe=True)
    run.perform("resolve_plugins")
    assert _config_to_save(run).data.path == "digits"  # the built-in dataset, from any folder
    (tmp_path / "digits").symlink_to(image_folder)  # a local folder of that name is what loads here
    assert _config_to_save(run).data.path == str(tmp_path / "digits")


# --------------------------------------------------------------------------- corpus lines
def test_a_corpus_line_with_nel_or_line_separator_stays_one_text(tmp_path: Path) -> None:
    from tlzoo.engine.corpus import read_corpus, read_jsonl_table

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("first\x85still first\nsecond\u2028still second\r\nthird\n", encoding="utf-8")
    assert read_corpus(str(corpus)) == ["first\x85still first", "second\u2028still second", "third"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "one\u2028text", "label": "a"}\n{"text": "two", "label": "b"}\n', encoding="utf-8")
    table = read_jsonl_table(rows, "utf-8")
    assert [r["text"] for r in table.rows] == ["one\u2028text", "two"]


# --------------------------------------------------------------------------- tl cache ls
def test_cache_ls_says_random_init_and_tells_a_folder_from_the_built_in(
    image_folder: Path, tmp_path: Path, run_cli: Any
) -> None:
    cfg = _lenet(image_folder, tmp_path / "r")
    cfg.head.name = "nb"
    Run(cfg, Zoo(), lambda m: None).execute()
    lines = run_cli("cache", "ls").stdout.splitlines()
    ours = [ln for ln in lines if str(image_folder.resolve()) in ln]
    assert len(ours) >= 3 and all("lenet/lenet5" in ln and "random init" in ln for ln in ours), lines
    assert {ln.split()[5] for ln in ours} == {"train", "val", "test"}  # key, model, random init, path, split
    assert lines[0].split()[:3] == ["key", "model", "weights"]


def test_cache_ls_columns_line_up_whatever_the_lengths() -> None:
    from tlzoo.engine.cache import CacheEntry, cache_table

    def entry(key: str, model: str, weights: str, dataset: str, complete: bool = True) -> CacheEntry:
        return CacheEntry(key, Path(key), complete, 2048, 100.0, 100.0, model, "plug", dataset, "train", 7, 84, weights)

    lines = cache_table(
        [
            entry("a" * 24, "m", "random init (--no-pretrained)", "digits"),
            entry("b" * 24, "a-much-longer-model-name", "/some/weights.safetensors", "/data/exported/digits"),
            entry("c" * 24 + ".tmp-1", "", "", "", complete=False),
        ],
        now=160.0,
    )
    assert len(lines) == 4
    starts = [[ln.index(word) for word in ("plug/", "random init", "digits")] for ln in lines[1:2]]
    assert starts[0][1] == lines[0].index("weights") and starts[0][2] == lines[0].index("dataset")
    assert lines[2].index("/some/weights") == lines[0].index("weights")
    assert lines[2].index("/data/exported/digits") == lines[0].index("dataset")
    assert all(ln.rstrip().endswith("1m ago") for ln in lines[1:])
    assert "partial" in lines[3]


# --------------------------------------------------------------------------- tl compare
def test_compare_suggests_a_run_that_keeps_the_data_options(tmp_path: Path) -> None:
    import shlex

    from tlzoo.commands.compare import next_command
    from tlzoo.commands.leaderboard import fine_tune_command

    cfg = RunConfig()
    cfg.apply_overrides(
        ["data.text_column=review", "data.label_column=verdict", "data.limit=200", "seed=2", "data.test_fraction=0.2"]
    )
    cfg.apply_overrides(["model.max_length=64", "model.options.truncation=tail", "data.augment=false"])
    cfg.data.path = "my data.csv"
    winner = {
        "plugin": "bert",
        "model": "tiny",
        "weights_path": "/w/tiny bert",
        "head": "svm",
        "head_params": {"C": 0.5},
    }
    words = shlex.split(next_command(cfg, winner))
    assert words[:8] == ["tl", "run", "--plugin", "bert", "--model", "tiny", "--weights", "/w/tiny bert"]
    command = " ".join(words)
    for part in (
        "--data my data.csv",
        "--text-column review",
        "--label-column verdict",
        "--limit 200",
        "--test-fraction 0.2",
        "--seed 2",
        "--max-length 64",
        "--set=model.options.truncation=tail",
        "--no-augment",
    ):
        assert part in command, (part, command)
    assert words[-3:] == ["--head", "svm", "--set=head.C=0.5"]  # the winner's head and its options
    assert "--strategy" not in words
    tune = shlex.split(fine_tune_command(cfg, winner))
    assert tune[:-4] == words[:-3] and tune[-4:] == ["--head", "fc", "--strategy", "fine-tune"]
    # the suggestion is a valid `tl run` command line: its options parse into the same data settings
    again = RunConfig()
    from tlzoo.cli import RUN_OPTIONS, run

    ctx = run.make_context("run", words[2:])
    from tlzoo.engine.config_keys import apply_plugin_arguments

    apply_plugin_arguments(again, ctx.params.pop("plugin"), "", ctx.params.pop("weights") or "")  # repeatable
    for param, key in RUN_OPTIONS:
        if ctx.params.get(param) is not None:
            again.set(key, ctx.params[param])
    again.apply_overrides([s.removeprefix("--set=") for s in words if s.startswith("--set=")])
    again.data.augment = not ctx.params["no_augment"]
    assert again.data == cfg.data and again.seed == 2 and again.model.max_length == 64
    assert again.model.options == {"truncation": "tail"}
    assert again.head.name == "svm" and again.head.params == {"C": 0.5}


def test_the_leaderboard_shows_the_test_size_both_seconds_and_what_logme_means() -> None:
    from tlzoo.commands.compare import format_leaderboard, leaderboard_notes

    row = {"rank": 1, "backbone": "b", "head": "logreg", "accuracy": 0.9, "macro_f1": 0.8, "seconds": 3.5}
    row.update(extract_seconds=3.0, fit_seconds=0.5, features=8, logme=-0.42, n_test=90)
    table = format_leaderboard([row])
    header, line = table.splitlines()[0], table.splitlines()[2]
    assert "extract s" in header and "fit s" in header and " seconds" not in header
    assert line.split()[-4:] == ["3.0", "0.5", "8", "-0.420"]
    notes = leaderboard_notes([row])
    assert notes[0].startswith("test set: 90 examples")
    assert any("LogME" in n and "higher is better" in n and "this dataset only" in n for n in notes)
    assert not any("LogME" in n for n in leaderboard_notes([{**row, "logme": None}]))


# --------------------------------------------------------------------------- tl config
def test_every_engine_key_has_a_meaning() -> None:
    from tlzoo.engine.config_keys import MEANINGS, engine_keys

    keys = engine_keys()
    missing = [k.key for k in keys if k.key not in MEANINGS]
    assert not missing, f"add a line to tlzoo.engine.config_keys.MEANINGS for {missing}"
    assert set(MEANINGS) == {k.key for k in keys}, "MEANINGS names keys RunConfig no longer has"
    epochs = next(k for k in keys if k.key == "train.joint_epochs")
    assert epochs.default == 0 and epochs.option == "--joint-epochs"
    assert not any(k.key == "train.epochs" for k in keys)  # 0.2's name: loads, but is no longer listed


def test_tl_config_lists_every_key_with_default_and_meaning(run_cli: Any) -> None:
    res = run_cli("config")
    assert res.exit_code == 0, res
    lines = res.stdout.splitlines()

    def line(key: str, plugin: str = "") -> str:
        found = [ln for ln in lines if ln.split() and ln.split()[0] == key and plugin in ln]
        assert found, f"tl config does not list {key} {plugin}"
        return found[0]

    for k in ("data.limit", "train.unfreeze", "model.pretrained", "seed"):
        assert len(line(k).split()) > 3
    assert line("train.lr").split()[:3] == ["train.lr", "0.01", "--lr"]
    hflip = line("model.options.hflip", "efficientnet")
    assert hflip.split()[1] == "0.0" and "mirroring" in hflip and "lenet" in hflip
    assert line("model.options.crop_scale", "efficientnet").split()[1] == "0.7"
    assert line("model.options.crop_scale", "[lenet]").split()[1] == "0.6"
    assert line("model.options.truncation", "bert").split()[1] == "head"
    assert "[head knn]" in line("head.n_neighbors") and "nearest" in line("head.n_neighbors")
    one = run_cli("config", "--plugin", "lenet")
    assert one.exit_code == 0 and "model.options.hflip" in one.stdout and "truncation" not in one.stdout
    bad = run_cli("config", "--plugin", "lenat")
    assert bad.exit_code == 2 and "Did you mean 'lenet'" in bad.stderr


def test_a_third_party_plugins_options_appear_in_tl_config() -> None:
    from tlzoo import BackboneFactory, PluginManager, hookimpl
    from tlzoo.engine.config_keys import format_keys, plugin_keys

    class Plugin:
        @hookimpl
        def tlzoo_register_backbones(self, register: Any) -> None:
            register(
                BackboneFactory(
                    name="mine",
                    modality="text",
                    create=lambda request: None,  # type: ignore[arg-type,return-value]
                    default_model="m",
                    options={"width": 64, "mode": "fast"},
                    option_help={"width": "how wide the features are"},
                )
            )

    zoo = Zoo(PluginManager(load_entry_points=False, builtins=False, extra=[Plugin()]))
    lines = format_keys(plugin_keys(zoo, "mine"))
    assert any(ln.split()[:2] == ["model.options.width", "64"] and "how wide" in ln and "[mine]" in ln for ln in lines)
    assert any(ln.split()[:2] == ["model.options.mode", "fast"] and "the plugin documents it" in ln for ln in lines)


def test_tl_config_imports_no_torch() -> None:
    import os
    import subprocess
    import sys

    from tlzoo.engine.plugins import BUILTIN_PLUGINS

    probe = (
        "import sys\nfrom tlzoo.cli import cli\ntry:\n    cli.main(['config'], standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print([m for m in ('torch', 'timm', 'transformers', 'sklearn') if m in sys.modules])"
    )
    env = {**os.environ, "TLZOO_PLUGINS": ",".join(BUILTIN_PLUGINS)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "model.options.hflip" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"


def test_the_light_augmentation_help_is_the_librarys() -> None:
    from tlzoo.lib.vision.images import AUGMENT_HELP, AUGMENT_OPTIONS
    from tlzoo.plugins.vision import timm_vision_hooks

    assert timm_vision_hooks.AUGMENT_HELP == AUGMENT_HELP and timm_vision_hooks.AUGMENT_OPTIONS == AUGMENT_OPTIONS
