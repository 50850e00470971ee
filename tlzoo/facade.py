"""The programmatic entry point, ``Engine``: what scripts, notebooks and the ``tl`` CLI call.

It composes the engine (``tlzoo.engine``: the twelve-step run) with what is built on it
(``tlzoo.commands``: the report a run leaves, prediction from a saved run), so the engine
itself never imports a command.

    from tlzoo import Engine, RunConfig
    cfg = RunConfig(); cfg.model.plugin = "bert"; cfg.data.path = "reviews.csv"
    result = Engine().run(cfg)
    Engine().predict(result.run_dir, ["a fine film"])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlzoo.engine.config import RunConfig

if TYPE_CHECKING:
    from tlzoo.engine.runner import RunResult
    from tlzoo.engine.zoo import Zoo


def _stderr_log(msg: str) -> None:
    from tlzoo.engine.runner import stderr_log

    stderr_log(msg)


class Engine:
    """``Engine().run(RunConfig(...))``, ``.resume(run_dir)``, ``.predict(run_dir, inputs)``."""

    def __init__(self, zoo: Zoo | None = None, log: Callable[[str], None] | None = _stderr_log) -> None:
        self._zoo = zoo
        self.log = log or (lambda msg: None)

    @property
    def zoo(self) -> Zoo:
        if self._zoo is None:
            from tlzoo.engine.zoo import Zoo

            self._zoo = Zoo()
        return self._zoo

    def run(self, config: RunConfig, train_seed: int | None = None) -> RunResult:
        """One run; ``train_seed`` (default ``config.seed``) seeds training only, the split stays ``config.seed``'s."""
        from tlzoo.commands.report import write_report_safely
        from tlzoo.engine.runner import run_once

        return run_once(config, self.zoo, self.log, train_seed=train_seed, on_finish=write_report_safely)

    def resume(self, run_dir: str | Path) -> RunResult:
        """Continue an interrupted run (``<out>`` or ``<out>.incomplete``) after its last finished epoch."""
        from tlzoo.commands.report import write_report_safely
        from tlzoo.engine.runner import resume_run

        return resume_run(run_dir, self.zoo, self.log, on_finish=write_report_safely)

    def embed(self, plugin: str, inputs: str | Sequence[Any], *, normalize: bool = False, **settings: Any) -> Any:
        """One row of ``plugin``'s features per input, extracted and cached as a run does (``tlzoo.embed``)."""
        from tlzoo.commands.embed import embed

        return embed(plugin, inputs, normalize=normalize, zoo=self.zoo, **settings)

    def predict(self, run_dir: str | Path, inputs: str | Sequence[Any]) -> list[dict[str, Any]]:
        """Class probabilities for each input; a ``str`` is one input (a text or an image path), not its characters."""
        from tlzoo.commands.predict import Predictor

        return Predictor.load(run_dir, self.zoo).predict(inputs)
