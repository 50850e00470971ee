"""The runner of the twelve steps of the guide, the same for image and text jobs.

Each step is one short method named after what it does (``tlzoo.steps.STEPS``:
``resolve_plugins`` ... ``save_model`` ... ``plot_confusion``; the log keeps the guide's
twelve numbered names, with ``save_model`` under 9, train); each reads what earlier steps
produced and adds its own, as declared on :class:`Run`.  Steps run through the
``tlzoo_run_step`` hook, so a plugin can wrap any of them (``@tlzoo.step_wrapper(...)``).
``tl compare`` runs the first of them as a probe (``Run(probe=True)``: no run folder).
The run directory is written as ``<out>.incomplete`` and renamed to ``<out>`` only once
every artifact is in place.

Whatever stops a run (bad input, a bug, Ctrl-C, SIGTERM) leaves nothing half-written:
the ``.incomplete`` folder is removed unless it holds a checkpoint (then
``tl run --resume OUT`` continues it).  The exception leaving ``execute`` carries
``tlzoo_step``, ``tlzoo_plugin`` and, for a kept folder, ``tlzoo_resume`` for the CLI's
one-line message.  ``<out>.lock`` (a flock) keeps a second run off the same ``--out``.

Under torchrun (``distributed.py``) every rank runs the twelve steps; rank 0 alone takes
the lock, logs and writes the run folder, fits a scikit-learn head and predicts the test
set, and its metrics are what every rank returns.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tlzoo.api.steps import LABELS, STEPS, StepName  # STEPS re-exported: tlzoo.engine.runner.STEPS of 0.1
from tlzoo.engine import artifacts, distributed
from tlzoo.engine.checkpoint import incomplete_dir
from tlzoo.engine.config import RunConfig
from tlzoo.engine.features import FeatureCache
from tlzoo.engine.run import evaluate, fit, model, setup
from tlzoo.engine.run.state import (  # re-exported: tlzoo.engine.runner's names of 0.2
    FinishHook as FinishHook,
    RunResult as RunResult,
    RunState,
    RunView,
    pick_device as pick_device,
    seed_everything,
    stderr_log,
)
from tlzoo.engine.zoo import Zoo
from tlzoo.infra import memory


def _scored(metrics: dict[str, Any]) -> str:
    """What the result's figures score: "test", or "cross-validated" (--test-fraction 0 --cv K)."""
    return "cross-validated" if metrics["test"].get("scored_by") else "test"


# each step's function (tlzoo.steps.STEPS order); ``Run.perform`` calls them
STEP_FUNCTIONS: dict[str, Callable[[RunState], None]] = {
    "resolve_plugins": setup.resolve_plugins,
    "load_dataset": setup.load_dataset,
    "split": setup.split,
    "encode_labels": setup.encode_labels,
    "configure_augmentation": setup.configure_augmentation,
    "create_backbone": model.create_backbone,
    "build_model": model.build_model,
    "compile": model.compile,
    "train": fit.train,
    "save_model": evaluate.save_model,
    "plot_history": evaluate.plot_history,
    "evaluate": evaluate.evaluate,
    "plot_confusion": evaluate.plot_confusion,
}


class Run(RunState):
    """One transfer-learning job: the state (:class:`RunState`) and the driver that runs the steps.

    ``execute()`` runs ``tlzoo.steps.STEPS`` in order, each through the ``tlzoo_run_step`` hook, so
    plugins can wrap it; a wrapper receives a :class:`RunView` (read-only, but for ``extras`` and
    ``metrics``).  The steps themselves are functions of the state in ``tlzoo.engine.run``.
    """

    def __init__(
        self,
        config: RunConfig,
        zoo: Zoo,
        log: Callable[[str], None] = stderr_log,
        probe: bool = False,
        train_seed: int | None = None,
        on_finish: FinishHook | None = None,
    ) -> None:
        self.config = config
        self.on_finish = on_finish
        self.train_seed = config.seed if train_seed is None else train_seed
        self.zoo = zoo
        self.log = log
        self.cache = FeatureCache()
        self.resume_from = None
        self.probe = probe
        self.resume_state = None
        self.lock = None
        self.main = distributed.is_main()
        self.step = ""
        self.targets = {}
        self.augment_train = False
        self.model = None
        self.features = {}
        self.metrics = {}
        self.best_across_phases = None
        self.trained_on = {}
        self.cross_validation = None
        self.extras = {}
        self.timings: dict[str, float] = {}  # seconds per step (and the report): metrics.json "timings"
        self._old_names = set()

    def perform(self, step: str) -> None:
        """Run one step's function (the innermost ``tlzoo_run_step`` implementation calls this)."""
        STEP_FUNCTIONS[step](self)

    # the parts of training that lr-find and tl compare reuse
    def extract_cached_features(self) -> None:
        model.extract_cached_features(self)

    def feature_loader(self, split: str, shuffle: bool) -> Any:
        return fit.feature_loader(self, split, shuffle)

    def execute(self) -> RunResult:
        seed_everything(self.train_seed)
        if not self.main:  # the other ranks of a torchrun job stay quiet
            self.log = lambda msg: None
            self.config.progress = False
        started = time.perf_counter()
        try:
            self.run_steps(STEPS)
            self.step = "finish"
            self.metrics["seconds"] = round(time.perf_counter() - started, 2)
            self.metrics = distributed.run_on_main(self._finish)  # rank 0's metrics on every rank
        except BaseException as exc:  # any error, Ctrl-C or SIGTERM: nothing half-written stays
            self.after_failure(exc)
            raise
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None
        self.log(
            f"done in {self.metrics['seconds']:.1f}s: {_scored(self.metrics)} accuracy "
            f"{self.metrics['test']['accuracy']:.4f}, "
            f"macro-F1 {self.metrics['test']['macro_f1']:.4f} -> {self.final_dir}"
        )
        return RunResult(self.final_dir, self.metrics)

    def run_steps(self, names: tuple[str, ...]) -> None:
        """Run the steps ``names`` in order, each through the ``tlzoo_run_step`` hook (wrappers apply)."""
        hook = self.zoo.plugins.pm.hook.tlzoo_run_step
        view = RunView(self)
        for name in names:
            self.step = name
            if name in LABELS:  # the guide's twelve numbered lines; save_model is part of 9 (train)
                number, label = LABELS[name]
                self.log(f"[{number:>2}/12] {label}")
            started = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:  # a library's warnings: log lines, not raw stderr
                warnings.simplefilter("default")
                hook(step=StepName(name, self._old_step_name), run=view)
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started
            self._log_warnings(caught)
            for w in caught:  # deprecations stay warnings too (Python shows them only where asked to)
                if issubclass(w.category, DeprecationWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def _log_warnings(self, caught: list[warnings.WarningMessage]) -> None:
        """Each distinct warning of a step once, as a log line (nothing under -q)."""
        seen: set[str] = set()
        for w in caught:
            if issubclass(w.category, DeprecationWarning):  # for plugin authors: re-emitted, not logged
                continue
            text = " ".join(str(w.message).split())
            line = f"  warning ({w.category.__name__}): {text[:300]}"
            if line not in seen:
                seen.add(line)
                self.log(line)

    def _old_step_name(self, old: str, new: str, module: str) -> None:
        """A wrapper compared the step with its 0.1 name: say so once per run (the match still holds)."""
        if old not in self._old_names:
            self._old_names.add(old)
            self.log(
                f"  warning: {module} compares the step with its old name '{old}'; it is '{new}' now "
                f"(tlzoo.steps.{new.upper()}), and the old name stops working in tlzoo 2.0"
            )

    def _finish(self) -> dict[str, Any]:
        """metrics.json, the report, and the rename of ``<out>.incomplete`` to ``<out>``.

        metrics.json's ``timings``: the seconds of each step of this process (a resumed run: since the
        resume) and of the report, for the per-step table of BENCHMARKS.md (issue 17 §8)."""
        self.metrics["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        artifacts.write_json(self.dir / "metrics.json", self.metrics)
        if self.on_finish is not None:  # Engine: report.html + README.md (a failure there only warns)
            started = time.perf_counter()
            self.on_finish(
                self.dir, self.log, dict(zip(self.splits.test.ids, self.splits.test.examples)), self.final_dir
            )
            self.metrics["timings"]["report"] = round(time.perf_counter() - started, 3)
            artifacts.write_json(self.dir / "metrics.json", self.metrics)
        self.checkpointer.remove()  # the run is complete: model.safetensors holds the result
        self.dir.rename(self.final_dir)
        return self.metrics

    def after_failure(self, exc: BaseException) -> None:
        """Remove an unresumable run folder; label the exception with the step, plugin and resume hint."""
        folder: Path | None = getattr(self, "dir", None) if self.main else None  # rank 0's folder
        resume = None
        if folder is not None and folder.exists():
            (folder / "checkpoint.pt.tmp").unlink(missing_ok=True)
            if self.resume_from is not None or (folder / "checkpoint.pt").is_file():
                resume = str(self.final_dir)  # trained epochs are worth keeping: `tl run --resume` continues
            else:
                shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError) and not exc.filename and folder is not None:
            exc.filename = str(self.final_dir)  # a failed write() knows no file name: name the run
        labels = {"tlzoo_step": self.step, "tlzoo_plugin": self._plugin_of(exc), "tlzoo_resume": resume}
        for key, value in labels.items():
            if getattr(exc, key, None) is None:
                try:
                    setattr(exc, key, value)
                except (AttributeError, TypeError):  # an exception type without a __dict__
                    break

    def _plugin_of(self, exc: BaseException) -> str | None:
        """The plugin whose code raised (the innermost plugin frame of the traceback), or None: never a
        bystander such as a step wrapper that only handed the error on, or the run's backbone plugin."""
        return self.zoo.plugins.plugin_of_traceback(exc.__traceback__)


def run_once(
    config: RunConfig,
    zoo: Zoo,
    log: Callable[[str], None],
    train_seed: int | None = None,
    on_finish: FinishHook | None = None,
) -> RunResult:
    """One run; ``train_seed`` (default ``config.seed``) seeds training only, the split stays ``config.seed``'s."""
    _process_setup()
    with distributed.session(config.train.device):  # under torchrun: join its process group
        return Run(config, zoo, log, train_seed=train_seed, on_finish=on_finish).execute()


def resume_run(
    run_dir: str | Path, zoo: Zoo, log: Callable[[str], None], on_finish: FinishHook | None = None
) -> RunResult:
    """Continue an interrupted run (``<out>`` or ``<out>.incomplete``) after its last finished epoch."""
    folder = incomplete_dir(run_dir)
    _process_setup()
    config = RunConfig.from_toml(folder / "config.toml")
    with distributed.session(config.train.device):
        run = Run(config, zoo, log, on_finish=on_finish)
        run.resume_from = folder
        return run.execute()


def _process_setup() -> None:
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    memory.fix_mmap_threshold()  # batch-sized blocks return to the system when freed (infra/memory.py)
