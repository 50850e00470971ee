"""The plugin system: entry points, crash isolation, TLZOO_PLUGINS, step wrappers, CLI commands.

Third-party plugins are faked as ``tlzoo`` entry points whose modules are written to a
temporary folder on ``sys.path``: exactly what ``pip install`` of a plugin gives.
"""

from __future__ import annotations

import json
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from tlzoo import step_wrapper, steps
from tlzoo.api.errors import TlzooError
from tlzoo.api.hookspecs import hookimpl
from tlzoo.engine.plugins import BUILTIN_PLUGINS, PluginManager

GOOD = '''
"""A third-party plugin: a nearest-centroid head and a `tl hello` command."""
import click
import numpy as np
from tlzoo import FittedHead, hookimpl


class CentroidHead(FittedHead):
    name = "centroid"

    @classmethod
    def defaults(cls):
        return {"temperature": 1.0}

    def fit(self, x, y, num_classes):
        self.centroids = np.stack([x[y == c].mean(0) if (y == c).any() else np.full(x.shape[1], 1e6)
                                   for c in range(num_classes)]).astype(np.float32)

    def predict_proba(self, x):
        d = ((x[:, None, :] - self.centroids[None]) ** 2).sum(-1) / float(self.params["temperature"])
        z = np.exp(-(d - d.min(1, keepdims=True)))
        return (z / z.sum(1, keepdims=True)).astype(np.float32)

    def state(self):
        return {"centroids": self.centroids}

    def load_state(self, arrays):
        self.centroids = arrays["centroids"]


@hookimpl
def tlzoo_register_heads(register):
    register(CentroidHead)


@click.command()
@click.argument("who", default="world")
def hello(who):
    """Say hello (added by a plugin)."""
    click.echo(f"hello {who} from a plugin")


@hookimpl
def tlzoo_register_commands(cli):
    cli.add_command(hello)
'''

BROKEN_IMPORT = """
raise ImportError("this plugin needs libfoo, which is not installed")
"""

BROKEN_HOOK = """
from tlzoo import hookimpl

@hookimpl
def tlzoo_register_strategies(register):
    raise RuntimeError("boom inside the hook")
"""

MISSPELT_STEP = """
from tlzoo import step_wrapper

@step_wrapper("trian")
def around_training(run):
    yield
"""

PLAIN_STEP = """
from tlzoo import hookimpl

@hookimpl
def tlzoo_run_step(step, run):
    return "replaced"  # no wrapper: this would stand in for every step
"""

PLUGINS = {
    "tlzoo_fake_good": GOOD,
    "tlzoo_fake_broken_import": BROKEN_IMPORT,
    "tlzoo_fake_broken_hook": BROKEN_HOOK,
    "tlzoo_fake_misspelt_step": MISSPELT_STEP,
    "tlzoo_fake_plain_step": PLAIN_STEP,
}
EP_NAMES = {
    "tlzoo_fake_good": "centroid",
    "tlzoo_fake_broken_import": "needs-libfoo",
    "tlzoo_fake_broken_hook": "hook-crash",
    "tlzoo_fake_misspelt_step": "misspelt-step",
    "tlzoo_fake_plain_step": "plain-step",
}


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Install the fake plugins: modules on sys.path, ``tlzoo`` entry points pointing at them."""
    for module, source in PLUGINS.items():
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [metadata.EntryPoint(name=EP_NAMES[m], value=m, group="tlzoo") for m in PLUGINS]
    original = metadata.entry_points

    def entry_points(**params: Any) -> Any:
        if params.get("group") == "tlzoo":
            return metadata.EntryPoints(eps)
        return original(**params)

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    # the CLI loads plugin commands once per process: start afresh and drop them afterwards
    from tlzoo.cli import cli

    monkeypatch.setattr(cli, "_loaded", False)
    monkeypatch.setattr(cli, "commands", dict(cli.commands))
    return EP_NAMES


# --------------------------------------------------------------------------- loading
def test_builtins_load_without_errors() -> None:
    pm = PluginManager(load_entry_points=False)
    names = {i.name for i in pm.plugins()}
    assert set(BUILTIN_PLUGINS) == names
    errors = {i.name: i.error for i in pm.plugins() if i.error}
    assert not errors, f"built-in plugins failed to load: {errors}"
    assert all(i.builtin and i.hooks for i in pm.plugins())


def test_broken_plugins_are_recorded_and_others_work(third_party: dict[str, str]) -> None:
    from tlzoo.engine.zoo import Zoo

    zoo = Zoo()
    info = {i.name: i for i in zoo.plugins.plugins()}
    assert "ImportError: this plugin needs libfoo" in (info["needs-libfoo"].error or "")
    assert "RuntimeError in tlzoo_register_strategies: boom inside the hook" in (info["hook-crash"].error or "")
    assert info["centroid"].error is None and not info["centroid"].builtin
    assert "tlzoo_register_heads" in info["centroid"].hooks
    # everything else still registered
    assert "centroid" in zoo.heads and "fc" in zoo.heads
    assert {"feature-extraction", "fine-tune"} <= set(zoo.strategies)
    assert "bert" in zoo.backbones


def test_tl_plugins_json_shows_errors(third_party: dict[str, str], run_cli: Any) -> None:
    res = run_cli("plugins", "--json")
    assert res.exit_code == 0, res
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert "libfoo" in rows["needs-libfoo"]["error"]
    assert "boom inside the hook" in rows["hook-crash"]["error"]
    assert rows["centroid"]["error"] is None and rows["centroid"]["builtin"] is False
    assert rows["bert"]["builtin"] is True and rows["bert"]["error"] is None
    text = run_cli("plugins")
    assert text.exit_code == 0 and "ERROR ImportError: this plugin needs libfoo" in text.stdout


def test_a_misspelt_step_name_fails_its_plugin_at_load_with_did_you_mean(
    third_party: dict[str, str], run_cli: Any
) -> None:
    """@step_wrapper checks its names at import: `tl plugins` names the error; the other commands work."""
    text = run_cli("plugins")
    line = next(ln for ln in text.stdout.splitlines() if ln.startswith("misspelt-step"))
    assert "ERROR TlzooError: Unknown step 'trian' in @step_wrapper. Did you mean 'train'?" in line
    rows = {r["name"]: r for r in json.loads(run_cli("plugins", "--json").stdout)}
    assert rows["misspelt-step"]["hooks"] == []
    assert run_cli("heads").exit_code == 0 and run_cli("list", "--json").exit_code == 0


def test_a_plain_run_step_implementation_is_refused(third_party: dict[str, str], run_cli: Any) -> None:
    """A tlzoo_run_step impl that is no wrapper would replace every step: its plugin does not load."""
    rows = {r["name"]: r for r in json.loads(run_cli("plugins", "--json").stdout)}
    assert rows["plain-step"]["error"].startswith("tlzoo_run_step must be a wrapper (@hookimpl(wrapper=True)")
    assert rows["plain-step"]["hooks"] == []
    pm = PluginManager()
    impls = [i.plugin_name for i in pm.pm.hook.tlzoo_run_step.get_hookimpls()]
    assert "plain-step" not in impls and "tlzoo.step-runner" in impls


def test_other_commands_still_work_with_broken_plugins(third_party: dict[str, str], run_cli: Any) -> None:
    for args in (["list", "--json"], ["heads"], ["strategies"], ["data", "list"], ["--help"]):
        res = run_cli(*args)
        assert res.exit_code == 0, (args, res)
        assert "Traceback" not in res.output
    assert "centroid" in run_cli("heads").stdout


def test_third_party_head_passes_the_kit_and_trains(
    third_party: dict[str, str], tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    """A head from an entry-point plugin passes check_head and is used by a real run."""
    from tlzoo.engine.config import RunConfig
    from tlzoo.engine.zoo import Zoo
    from tlzoo.facade import Engine
    from tlzoo.testing import check_head

    zoo = Zoo()
    check_head(zoo.heads.get("centroid"))
    cfg = RunConfig()
    cfg.apply_overrides(
        [
            f"data.path={text_csv}",
            "model.plugin=bert",
            f"model.weights={tiny_bert_dir}",
            "head.name=centroid",
            "model.max_length=32",
            f"out={tmp_path / 'run'}",
            "progress=false",
        ]
    )
    result = Engine(zoo=zoo, log=None).run(cfg)
    desc = json.loads((result.run_dir / "model.json").read_text())
    assert desc["head"]["name"] == "centroid" and desc["head"]["kind"] == "fitted"
    probs = zoo_predict(zoo, result.run_dir, ["a funny and charming film"])
    assert abs(sum(probs[0]["probabilities"].values()) - 1) < 1e-4


def zoo_predict(zoo: Any, run_dir: Path, inputs: list[str]) -> list[dict[str, Any]]:
    from tlzoo.commands.predict import Predictor

    return Predictor.load(run_dir, zoo).predict(inputs)


def test_register_commands_adds_a_cli_command(third_party: dict[str, str], run_cli: Any) -> None:
    res = run_cli("hello", "tester")
    assert res.exit_code == 0, res
    assert res.stdout.strip() == "hello tester from a plugin"
    assert "hello" in run_cli("--help").stdout


def test_builtin_commands_come_from_plugins(run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tl pull` and `tl data export` are registered by the built-in plugins pull and data_export."""
    assert "pull" in run_cli("--help").stdout
    assert "export" in run_cli("data", "--help").stdout
    rows = {r["name"]: r for r in json.loads(run_cli("plugins", "--json").stdout)}
    for name in ("pull", "data_export"):
        assert rows[name]["builtin"] and rows[name]["hooks"] == ["tlzoo_register_commands"], rows[name]
        assert rows[name]["error"] is None and not rows[name]["warnings"], rows[name]
    from tlzoo.cli import cli

    monkeypatch.setattr(cli, "_loaded", False)
    monkeypatch.setattr(cli, "commands", {k: v for k, v in cli.commands.items() if k != "pull"})
    monkeypatch.setenv("TLZOO_PLUGINS", "heads")  # like any plugin's, their commands go with them
    res = run_cli("pull", "resnet18")
    assert res.exit_code == 2 and "No such command 'pull'" in res.output


# --------------------------------------------------------------------------- TLZOO_PLUGINS
def test_tlzoo_plugins_limits_loading(monkeypatch: pytest.MonkeyPatch, third_party: dict[str, str]) -> None:
    from tlzoo.engine.zoo import Zoo

    monkeypatch.setenv("TLZOO_PLUGINS", "heads, strategies,centroid")
    zoo = Zoo()
    assert {i.name for i in zoo.plugins.plugins()} == {"heads", "strategies", "centroid"}
    assert set(zoo.heads) == {"fc", "centroid"} and len(zoo.backbones) == 0
    with pytest.raises(TlzooError, match="needs the 'bert' plugin. It is not loaded \\(check TLZOO_PLUGINS\\)"):
        zoo.resolve_backbone("all-MiniLM-L6-v2")


def test_tlzoo_plugins_empty_loads_none(monkeypatch: pytest.MonkeyPatch, run_cli: Any) -> None:
    monkeypatch.setenv("TLZOO_PLUGINS", "")
    assert PluginManager().plugins() == []
    res = run_cli("plugins", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout) == []


def test_old_data_plugin_names_still_work_in_tlzoo_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """0.1 split the data sources by modality (text_data, vision_data); their names load their successors."""
    from tlzoo.engine.plugins import ALIASES, unknown_allowed
    from tlzoo.engine.zoo import Zoo

    monkeypatch.setenv("TLZOO_PLUGINS", "vision_data,heads")
    zoo = Zoo(PluginManager(load_entry_points=False))
    assert {i.name for i in zoo.plugins.plugins()} == {"data_files", "data_hub", "builtin_datasets", "heads"}
    assert {"image-folder", "image-csv", "hf-images", "fashion-mnist"} <= {s.name for s in zoo.data_sources}
    monkeypatch.setenv("TLZOO_PLUGINS", ",".join(ALIASES))
    assert unknown_allowed() == {}
    assert all(set(targets) <= set(BUILTIN_PLUGINS) for targets in ALIASES.values())


def test_disabled_backbone_plugin_is_a_clean_cli_error(
    monkeypatch: pytest.MonkeyPatch, run_cli: Any, text_csv: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("TLZOO_PLUGINS", "data_sources,heads,strategies")
    res = run_cli("run", "--plugin", "all-MiniLM-L6-v2", "--data", text_csv, "--out", tmp_path / "r")
    assert res.exit_code == 2, res
    assert "TLZOO_PLUGINS" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.incomplete").exists()


# --------------------------------------------------------------------------- step hook
class StepRecorder:
    """A wrapper around every step: the steps in order, and which documented Run attributes exist after each."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.present_after: dict[str, set[str]] = {}

    @hookimpl(wrapper=True)
    def tlzoo_run_step(self, step: str, run: Any) -> Any:
        from tlzoo.api.steps import STATE

        self.steps.append(step)
        result = yield
        self.present_after[step] = {a for attrs in STATE.values() for a, _ in attrs if hasattr(run, a)}
        return result


def _bert_config(text_csv: Path, tiny_bert_dir: Path, out: Path, *extra: str) -> Any:
    from tlzoo.engine.config import RunConfig

    cfg = RunConfig()
    cfg.apply_overrides(
        [
            f"data.path={text_csv}",
            "model.plugin=bert",
            f"model.weights={tiny_bert_dir}",
            "model.max_length=32",
            "train.epochs=2",
            f"out={out}",
            "progress=false",
            *extra,
        ]
    )
    return cfg


def test_wrapper_sees_every_step_in_order_with_the_documented_state(
    tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    """After each step the run holds what steps.STATE (the hook's docstring table) says, and no later state."""
    from tlzoo.api import hookspecs
    from tlzoo.api.steps import LABELS, STATE, STEPS
    from tlzoo.engine.zoo import Zoo
    from tlzoo.facade import Engine

    recorder = StepRecorder()
    zoo = Zoo(PluginManager(load_entry_points=False, extra=[recorder]))
    log: list[str] = []
    Engine(zoo=zoo, log=log.append).run(_bert_config(text_csv, tiny_bert_dir, tmp_path / "run"))
    assert recorder.steps == list(STEPS) and len(STEPS) == 13 and len(LABELS) == 12
    numbered = [line for line in log if line.startswith("[")]
    assert numbered[0] == "[ 1/12] import libraries" and numbered[-1] == "[12/12] plot confusion"
    assert len(numbered) == 12 and any(line.startswith("  saved model.safetensors") for line in log)
    doc = hookspecs.tlzoo_run_step.__doc__ or ""
    for i, step in enumerate(STEPS):
        documented = {a for earlier in STEPS[: i + 1] for a, _ in STATE[earlier]}
        assert documented <= recorder.present_after[step], (step, documented - recorder.present_after[step])
        assert all(f"run.{a}" in doc for a, _ in STATE[step])
    assert "backbone" not in recorder.present_after["encode_labels"]  # declared, but set by create_backbone
    assert "dataset" not in recorder.present_after["resolve_plugins"]


class OldNames:
    """A 0.1 wrapper: compares the step with old names."""

    def __init__(self) -> None:
        self.matched: list[str] = []

    @hookimpl(wrapper=True)
    def tlzoo_run_step(self, step: str, run: Any) -> Any:
        result = yield
        if step == "create_base_model":
            self.matched.append("create_base_model:" + str(getattr(run, "backbone", None) is not None))
        elif step in ("predict",):
            self.matched.append("predict:" + str("test" in run.metrics))
        return result


class NewNames:
    """The same with @step_wrapper on methods, one of them given an old name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    @step_wrapper(steps.CREATE_BACKBONE, steps.SAVE_MODEL)
    def around(self, step: str, run: Any) -> Any:
        self.calls.append(("before", step))
        yield
        self.calls.append(("after", step))

    with pytest.warns(DeprecationWarning, match="step 'predict' is now 'evaluate'"):

        @step_wrapper("predict")
        def after_evaluate(self, run: Any) -> Any:
            yield
            self.calls.append(("after", "evaluate:" + str(run.metrics["test"]["accuracy"] >= 0)))


def test_old_step_names_still_match_with_a_warning_and_step_wrapper_wraps_only_its_steps(
    tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    from tlzoo.engine.zoo import Zoo
    from tlzoo.facade import Engine

    old, new = OldNames(), NewNames()
    zoo = Zoo(PluginManager(load_entry_points=False, extra=[old, new]))
    log: list[str] = []
    with pytest.warns(DeprecationWarning) as caught:
        Engine(zoo=zoo, log=log.append).run(_bert_config(text_csv, tiny_bert_dir, tmp_path / "run", "head.name=logreg"))
    messages = {str(w.message).split(" (")[0] for w in caught if "is now" in str(w.message)}
    assert messages == {"step 'create_base_model' is now 'create_backbone'", "step 'predict' is now 'evaluate'"}
    assert old.matched == ["create_base_model:True", "predict:True"]
    assert new.calls == [
        ("before", "create_backbone"),
        ("after", "create_backbone"),
        ("before", "save_model"),
        ("after", "save_model"),
        ("after", "evaluate:True"),
    ]
    warned = [line for line in log if "old name" in line]
    assert len(warned) == 2 and "'create_base_model'; it is 'create_backbone' now" in warned[0], warned


def test_step_wrapper_refuses_what_it_cannot_wrap() -> None:
    with pytest.raises(TlzooError, match="Unknown step 'plot_hystory' in @step_wrapper. Did you mean 'plot_history'"):
        step_wrapper("plot_hystory")
    with pytest.raises(TlzooError, match="must be a generator"):
        step_wrapper(steps.TRAIN)(lambda run: None)
    with pytest.raises(TlzooError, match="at least one step name"):
        step_wrapper()
    with pytest.raises(TlzooError, match="takes step names"):
        step_wrapper(lambda run: None)  # type: ignore[arg-type]


class StopAtTrain:
    @hookimpl(wrapper=True)
    def tlzoo_run_step(self, step: str, run: Any) -> Any:
        if step == "train":
            raise TlzooError("stopped by a plugin")
        return (yield)


def test_a_wrapper_can_stop_a_run_and_nothing_is_left(tiny_bert_dir: Path, text_csv: Path, tmp_path: Path) -> None:
    from tlzoo.engine.config import RunConfig
    from tlzoo.engine.zoo import Zoo
    from tlzoo.facade import Engine

    zoo = Zoo(PluginManager(load_entry_points=False, extra=[StopAtTrain()]))
    cfg = RunConfig()
    cfg.apply_overrides(
        [
            f"data.path={text_csv}",
            "model.plugin=bert",
            f"model.weights={tiny_bert_dir}",
            f"out={tmp_path / 'run'}",
            "progress=false",
        ]
    )
    with pytest.raises(TlzooError, match="stopped by a plugin"):
        Engine(zoo=zoo, log=None).run(cfg)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.incomplete").exists()


# --------------------------------------------------------------------------- meta
def test_every_hook_is_documented_and_exercised() -> None:
    """Each hookspec has a docstring and is implemented by a built-in or exercised in this file."""
    from tlzoo.api import hookspecs

    specs = [n for n in dir(hookspecs) if n.startswith("tlzoo_")]
    assert {"tlzoo_register_backbones", "tlzoo_run_step", "tlzoo_register_commands"} <= set(specs)
    implemented = {h for i in PluginManager(load_entry_points=False).plugins() for h in i.hooks}
    here = Path(__file__).read_text()
    for name in specs:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"hookspec {name} has no docstring"
        assert name in implemented or f"def {name}(" in here, f"hook {name} is neither used nor tested"


def test_a_0_1_strategy_reading_the_run_still_works_through_the_context_with_a_warning() -> None:
    """before_training(run) of 0.1 read run.config / run.splits: the context serves them, deprecated."""
    from types import SimpleNamespace

    import torch

    from tlzoo.api.interfaces import Dataset, Plan, StrategyContext

    data = Dataset(examples=["a"], labels=["x"], modality="text")
    run = SimpleNamespace(config=SimpleNamespace(seed=7), splits=SimpleNamespace(train=data))
    ctx = StrategyContext(
        backbone=None,
        head=None,
        plan=Plan([], True),
        train_set=data,  # type: ignore[arg-type]
        val_set=data,
        train=None,
        seed=7,
        device=torch.device("cpu"),
        log=print,
        record=print,
        assets=None,
        _run=run,
    )
    with pytest.warns(DeprecationWarning, match="ctx.config reads the Run"):
        assert ctx.config.seed == 7
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = ctx.nothing
    with pytest.raises(Exception, match="cannot assign"):  # frozen: a strategy cannot swap the run's parts
        ctx.backbone = None  # type: ignore[misc]


def test_a_module_level_step_wrapper_wraps_only_its_step() -> None:
    """The README's form: @step_wrapper on a module function, which pluggy finds like any hookimpl."""
    import types

    from tlzoo.api.steps import StepName

    module = types.ModuleType("tlzoo_fake_timer")
    calls: list[str] = []

    @step_wrapper(steps.TRAIN)
    def time_training(run: Any) -> Any:
        calls.append("before")
        yield
        calls.append("after " + run.done[-1])

    module.time_training = time_training  # type: ignore[attr-defined]
    pm = PluginManager(load_entry_points=False, builtins=False, extra=[module])
    info = {i.name: i for i in pm.plugins()}["tlzoo_fake_timer"]
    assert info.error is None and info.hooks == ["tlzoo_run_step"]
    done: list[str] = []
    run = types.SimpleNamespace(done=done, perform=done.append)  # what the innermost step runner calls
    for step in ("split", "train"):
        pm.pm.hook.tlzoo_run_step(step=StepName(step), run=run)
    assert done == ["split", "train"] and calls == ["before", "after train"]


def test_a_plugin_adds_catalogue_entries_labelled_with_it_and_bad_ones_are_its_error() -> None:
    from tlzoo.engine.zoo import Zoo

    class Catalogue:
        @hookimpl
        def tlzoo_register_catalogue(self, register: Any) -> None:
            register({"name": "my-tiny-bert", "plugin": "bert", "modality": "text", "description": "mine"})
            register({"name": "all-MiniLM-L6-v2", "plugin": "bert", "modality": "text"})  # tlzoo's: ignored
            register({"name": "broken", "plugin": "bert", "modality": "text", "licnce": "mit"})

    zoo = Zoo(PluginManager(load_entry_points=False, extra=[Catalogue()]))
    entry = zoo.entry("my-tiny-bert")
    assert entry is not None and entry.registered_by == "Catalogue" and entry.description == "mine"
    assert zoo.entry("all-MiniLM-L6-v2").registered_by == "built-in"  # type: ignore[union-attr]
    assert zoo.entry("broken") is None
    info = zoo.plugins.info["Catalogue"]
    assert "unknown key 'licnce'" in (info.error or "") and "Did you mean 'licence'" in (info.error or "")
    assert any("already registered by 'built-in'" in w for w in info.warnings)
    assert zoo.resolve_backbone("my-tiny-bert")[0].name == "bert"  # --plugin NAME
    assert zoo.resolve_backbone("", "my-tiny-bert") == (zoo.backbones.get("bert"), "my-tiny-bert")  # --model NAME
