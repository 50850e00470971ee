"""The programmatic entry point, ``Engine``: what scripts, notebooks and the ``tl`` CLI call.

It composes the engine (``tlzoo.engine``: the twelve-step run) with what is built on it
(``tlzoo.commands``: the report a run leaves, prediction from a saved run), so the engine
itself never imports a command.

    from tlzoo import Engine, RunConfig
    cfg = RunConfig(); cfg.model.plugin = "bert"; cfg.data.path = "reviews.csv"
    result = Engine().run(cfg)
    Engine().predict(result.run_dir, ["a fine film"])   # or data="new.csv", out="predictions.csv"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlzoo.engine.config import RunConfig

if TYPE_CHECKING:
    from tlzoo.commands.prediction import Predictions
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

    def predict(
        self,
        run_dir: str | Path,
        inputs: str | Sequence[Any] | Any = None,
        *,
        data: str | Path | Any = None,
        file: str | Path | None = None,
        text_column: str | None = None,
        label_column: str | None = None,
        encoding: str | None = None,
        limit: int = 0,
        batch_size: int = 32,
        device: str = "cpu",
        out: str | Path | None = None,
        as_json: bool = False,
        check_features: bool = True,
    ) -> Predictions:
        """Classify new examples with a finished run (or an export): what ``tl predict`` does.

        ``inputs``: one input (a ``str`` is one text or image path, never its characters), a list of
        texts, image paths or, for a fused run, dicts of named fields, or a pandas DataFrame (read as
        ``data``).  ``data``: a CSV/TSV/JSONL file (gzipped too), a folder of images or texts (class
        sub-folders or flat), a dataset name or a DataFrame; labels optional, and where there are labels
        the result's ``accuracy`` scores them.  ``file``: one input per line.  The columns and encoding
        default to the run's own.  ``out``: write the rows as CSV (JSON lines with ``as_json``; ``"-"``
        for standard output) atomically, as ``tl predict --out`` does.  Returns
        :class:`tlzoo.commands.prediction.Predictions`: a list of rows (label, probability,
        probabilities, ...) with ``accuracy``, ``proba`` and ``to_frame()``.  A run whose backbone no longer
        computes the features stored with it (Python's ``hash()``, unseeded randomness, another library
        version) is refused in one line; ``check_features=False`` predicts anyway.
        """
        from tlzoo.commands.prediction import predict

        return predict(
            run_dir,
            inputs,
            data=data,
            file=file,
            text_column=text_column,
            label_column=label_column,
            encoding=encoding,
            limit=limit,
            batch_size=batch_size,
            device=device,
            out=out,
            as_json=as_json,
            zoo=self.zoo,
            log=self.log,
            check_features=check_features,
        )
