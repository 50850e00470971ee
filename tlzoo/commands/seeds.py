"""``tl run --seeds N``: the same run with N training seeds, reported as mean ± sd.

One test figure hides how much it owes to luck.  Two kinds of luck move it: which examples
land in the test set, and how training went (initial weights, batch order, augmentation,
a forest's bootstrap samples).  The first is already measured by the 95 % bootstrap
interval of every run (``uncertainty.py``); ``--seeds`` measures the second.  So the
split stays the one ``--seed`` draws, and only the training seed varies over
``seed, seed+1, ..., seed+N-1``:

* the two measures do not count the same spread twice, and the runs are paired: every run
  is scored on the same test examples, so a difference between them is training's alone;
* a feature-extraction run extracts its features once: every later seed reads the same
  cache entries (a new split would be new examples per split, hence new entries);
* a fitted head with a ``random_state`` option (``svm``, ``rf``, ``tree``) gets the
  training seed there, unless you set it; ``logreg``, ``knn`` and ``nb`` are
  deterministic on fixed features, so their sd is 0 (the figure does not depend on a seed).

Each run is a complete run folder ``<out>/seed-<s>``; ``<out>/seeds.json`` holds every run's
test accuracy and macro-F1 with their mean and sample standard deviation (``ddof = 1``,
the spread one more seed would show; 0 for a single run).

An interrupted ``--seeds N`` continues seed by seed: ``<out>/config.toml`` and
``<out>/seeds-plan.json``, written before the first seed, let the same command again (or
``tl run --resume <out>``) keep the finished seeds (their metrics.json), restart the
interrupted one from its first step (its checkpoint does not record its training seed, and
on cached features a restart costs seconds) and run the rest.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.api.errors import TlzooError
from tlzoo.engine.config import RunConfig

METRICS = ("accuracy", "macro_f1")
WHAT_VARIES = (
    "the training seed (initial weights, batch order, augmentation, a fitted head's random_state); "
    "the split is fixed by --seed, whose test-set uncertainty each run's 95% bootstrap interval gives"
)


@dataclass
class SeedsResult:
    out: Path
    runs: list[Any]  # RunResult of each seed, in seed order
    summary: dict[str, Any]  # what seeds.json holds

    @property
    def accuracy(self) -> float:
        return float(self.summary["accuracy"]["mean"])


def mean_sd(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (ddof = 1; 0 for one value), min and max, rounded to 4 places."""
    a = np.asarray(values, dtype=float)
    sd = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return {
        "mean": round(float(a.mean()), 4),
        "sd": round(sd, 4),
        "min": round(float(a.min()), 4),
        "max": round(float(a.max()), 4),
    }


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{"accuracy": mean_sd(...), "macro_f1": mean_sd(...)}`` over rows carrying those keys."""
    return {m: mean_sd([float(r[m]) for r in per_seed]) for m in METRICS}


def check_seeds(n: int) -> None:
    if n < 1:
        raise TlzooError(f"--seeds must be at least 1 (the number of training seeds), got {n}.")


def seeded_head_params(head_cls: Any, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """``params`` with ``random_state=seed`` when the head has that option and the user left it unset."""
    defaults = head_cls.defaults() if hasattr(head_cls, "defaults") else {}
    if "random_state" in defaults and "random_state" not in params:
        return {**params, "random_state": seed}
    return dict(params)


def run_seeds(
    config: RunConfig,
    n: int,
    run: Callable[[RunConfig, int], Any],
    head_cls: Any,
    plugin_name: str = "",
    log: Callable[[str], None] | None = None,
) -> SeedsResult:
    """Run ``config`` with training seeds ``config.seed .. config.seed + n - 1`` into ``<out>/seed-<s>``.

    ``run(cfg, train_seed)`` performs one run and returns its RunResult (``Engine.run``);
    ``head_cls`` is the head's class (its ``random_state`` option takes the seed)."""
    check_seeds(n)
    log = log or (lambda msg: None)
    out = Path(config.out) if config.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{plugin_name}-seeds"
    config = copy.deepcopy(config)
    config.out = str(out)
    _open_seeds_folder(out, config, n)
    seeds = list(range(config.seed, config.seed + n))
    results = []
    for i, seed in enumerate(seeds, 1):
        cfg = copy.deepcopy(config)
        cfg.out = str(out / f"seed-{seed}")
        cfg.head.params = seeded_head_params(head_cls, cfg.head.params, seed)
        done = _finished(Path(cfg.out))
        if done is not None:
            log(f"seed {i}/{n}: training seed {seed} finished before; kept {cfg.out}")
            results.append(done)
            continue
        leftover = Path(cfg.out + INCOMPLETE)
        if leftover.exists():  # the seed that was interrupted: from its first step, with its own training seed
            log(f"seed {i}/{n}: training seed {seed} was interrupted; starting it again (removed {leftover})")
            shutil.rmtree(leftover)
        log(f"seed {i}/{n}: training seed {seed}, split seed {config.seed} -> {cfg.out}")
        try:
            results.append(run(cfg, seed))
        except BaseException as exc:  # Ctrl-C, SIGTERM, an error: the seeds continue from <out>, not one seed's folder
            if getattr(exc, "tlzoo_resume", None):
                exc.tlzoo_resume = str(out)  # type: ignore[attr-defined]
            raise
    summary = _summary(config.seed, seeds, results)
    (out / "seeds.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return SeedsResult(out=out, runs=results, summary=summary)


def _summary(split_seed: int, seeds: list[int], results: list[Any]) -> dict[str, Any]:
    """seeds.json: each run's test figures, their mean and sd, and what varied between them."""
    per_seed = [
        {
            "train_seed": seed,
            "run_dir": str(r.run_dir),
            "accuracy": float(r.metrics["test"]["accuracy"]),
            "macro_f1": float(r.metrics["test"]["macro_f1"]),
        }
        for seed, r in zip(seeds, results)
    ]
    return {
        "seeds": len(seeds),
        "split_seed": split_seed,
        "train_seeds": seeds,
        "varies": WHAT_VARIES,
        "sd": "sample standard deviation over the runs (ddof = 1)",
        "n_test": int(results[0].metrics["test"].get("n", 0)) if results else 0,
        **summarise(per_seed),
        "runs": per_seed,
    }


PLAN = "seeds-plan.json"
INCOMPLETE = ".incomplete"


def is_seeds_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is the ``--out`` of a ``tl run --seeds N`` (finished or not)."""
    return (Path(folder) / PLAN).is_file() and (Path(folder) / "config.toml").is_file()


def resume_seeds(
    folder: str | Path, run: Callable[[RunConfig, int], Any], head_cls_of: Callable[[RunConfig], Any], log: Any = None
) -> SeedsResult:
    """``tl run --resume OUT`` for a seeds folder: its own config and number of seeds, continued seed by seed."""
    out = Path(folder)
    config = RunConfig.from_toml(out / "config.toml")
    try:
        n = int(json.loads((out / PLAN).read_text("utf-8"))["seeds"])
    except (OSError, ValueError, KeyError, TypeError):
        raise TlzooError(f"'{out / PLAN}' is unreadable; start the seeds again with `tl run --seeds N`.") from None
    return run_seeds(config, n, run, head_cls_of(config), log=log)


def _open_seeds_folder(out: Path, config: RunConfig, n: int) -> None:
    """Create ``out`` with the plan, or take a folder an interrupted run of the same config left."""
    text = config.to_toml()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not is_seeds_folder(out):
            raise TlzooError(
                f"Output folder '{out}' already exists and is not empty; choose another --out or remove it."
            )
        if (out / "config.toml").read_text("utf-8") != text:
            raise TlzooError(
                f"Output folder '{out}' holds the seeds of another configuration; rerun with the options it was "
                f"started with (see {out / 'config.toml'}, or `tl run --resume {out}`), or choose another --out."
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(text, encoding="utf-8")
    (out / PLAN).write_text(json.dumps({"seeds": n}) + "\n", encoding="utf-8")


def _finished(run_dir: Path) -> Any:
    """The RunResult of a seed whose run folder is complete (its metrics.json has test figures), else None."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text("utf-8"))
        metrics["test"]["accuracy"], metrics["test"]["macro_f1"]  # noqa: B018
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from tlzoo.engine.run.state import RunResult

    return RunResult(run_dir=run_dir, metrics=metrics)


def format_summary(summary: dict[str, Any]) -> str:
    """Two lines for the terminal: mean ± sd of both figures, and each seed's."""
    acc, f1 = summary["accuracy"], summary["macro_f1"]
    each = ", ".join(f"{r['train_seed']}: {r['accuracy']:.4f}" for r in summary["runs"])
    return (
        f"test accuracy {acc['mean']:.4f} ± {acc['sd']:.4f}  macro-F1 {f1['mean']:.4f} ± {f1['sd']:.4f}  "
        f"(mean ± sd over {summary['seeds']} training seeds, split seed {summary['split_seed']}, "
        f"n={summary['n_test']})\n"
        f"  accuracy per training seed: {each}"
    )


def seeds_output(result: SeedsResult, as_json: bool) -> str:
    """What ``tl run --seeds N`` (or ``--resume`` of its folder) prints: JSON, or the summary and the folder."""
    if as_json:
        return json.dumps({"out": str(result.out), **result.summary}, indent=2)
    return f"{format_summary(result.summary)}\n  runs and seeds.json in {result.out}"
