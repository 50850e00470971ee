"""The run's state and what a step wrapper may do with it; who is blamed for an error in a step."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tlzoo.api.errors import TlzooError
from tlzoo.api.steps import STATE, STEPS, StepName
from tlzoo.engine.plugins import PluginManager
from tlzoo.engine.run.evaluate import check_probabilities
from tlzoo.engine.run.state import RunState, RunView
from tlzoo.engine.runner import STEP_FUNCTIONS


def test_every_step_has_one_function_and_every_state_field_is_declared() -> None:
    assert tuple(STEP_FUNCTIONS) == STEPS
    declared = RunState.__annotations__
    for step, fields in STATE.items():
        for name, _ in fields:
            assert name in declared, f"steps.STATE names run.{name} (set by {step}), which RunState does not declare"


def test_a_wrapper_reads_everything_and_writes_only_extras_and_metrics() -> None:
    state = types.SimpleNamespace(config="cfg", extras={}, metrics={})
    view = RunView(state)  # type: ignore[arg-type]
    assert view.config == "cfg"
    view.extras["mine"] = 1
    view.metrics = {"oov": 0.1}
    assert state.extras == {"mine": 1} and state.metrics == {"oov": 0.1}
    with pytest.raises(TlzooError, match=r"may not set run\.oov_report.*run\.extras\['oov_report'\]"):
        view.oov_report = {"rate": 0.2}
    with pytest.raises(TlzooError, match="may not set run.config"):
        view.config = "other"
    assert not hasattr(state, "oov_report") and state.config == "cfg"


def _plugin_module(folder: Path, name: str, raise_after: bool) -> types.ModuleType:
    """A plugin module, from a file as an installed one is, whose step wrapper may raise after the step."""
    path = folder / f"{name}.py"
    path.write_text(
        "from tlzoo import step_wrapper, steps\n\n\n"
        "@step_wrapper(steps.TRAIN)\n"
        "def around(run):\n"
        "    yield\n"
        f"    if {raise_after}:\n"
        "        raise ValueError('the wrapper s own bug')\n",
        encoding="utf-8",
    )
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _blamed(pm: PluginManager, perform: Any) -> str | None:
    try:
        pm.pm.hook.tlzoo_run_step(step=StepName("train"), run=types.SimpleNamespace(perform=perform))
    except Exception as exc:
        return pm.plugin_of_traceback(exc.__traceback__)
    raise AssertionError("the step did not raise")


def test_a_wrapper_that_only_hands_an_error_on_is_not_blamed(tmp_path: Path) -> None:
    """Issue 17: a NaN from a head was blamed on static_vectors, whose wrapper wraps every step."""
    pm = PluginManager(
        load_entry_points=False, builtins=False, extra=[_plugin_module(tmp_path, "tlzoo_bystander", False)]
    )

    def engine_bug(step: str) -> None:
        raise IndexError("list index out of range")

    assert _blamed(pm, engine_bug) is None


def test_a_wrapper_that_raises_itself_is_blamed(tmp_path: Path) -> None:
    module = _plugin_module(tmp_path, "tlzoo_culprit", True)
    pm = PluginManager(load_entry_points=False, builtins=False, extra=[module])
    assert _blamed(pm, lambda step: None) == "tlzoo_culprit"


def test_non_finite_probabilities_are_one_line_naming_the_head() -> None:
    check_probabilities(np.array([[0.2, 0.8], [1.0, 0.0]]), "fc")
    with pytest.raises(TlzooError, match=r"Head 'centroid' returned non-finite probabilities .* 1 of 2 test"):
        check_probabilities(np.array([[0.5, 0.5], [np.nan, np.nan]]), "centroid")


def test_features_that_are_not_finite_are_one_line_naming_the_backbone() -> None:
    from tlzoo.engine.run.model import check_features

    check_features(np.ones((3, 4), np.float32), "bert", "train")
    with pytest.raises(TlzooError, match=r"Backbone 'hashy' produced non-finite features .* 2 of 3 train"):
        check_features(np.array([[1.0, np.nan], [np.inf, 0.0], [0.0, 0.0]]), "hashy", "train")


def test_each_torchrun_rank_draws_from_its_own_stream_and_one_process_is_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ranks that share a seed gave the example at one position of each rank's share the same crop and
    dropout mask; one process (rank 0) keeps the plain seed, so its results do not move."""
    import torch

    from tlzoo.engine import distributed
    from tlzoo.engine.run.state import seed_everything

    def draws() -> tuple[float, float]:
        return float(torch.rand(1)), float(np.random.rand())

    torch.manual_seed(7)
    np.random.seed(7)
    plain = draws()
    seed_everything(7)
    assert draws() == plain
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    seed_everything(7)
    other = draws()
    assert other[0] != plain[0] and other[1] != plain[1]
    seed_everything(7)
    assert draws() == other  # still reproducible, rank by rank
