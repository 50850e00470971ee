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
"""

from __future__ import annotations

import copy
import json
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
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TlzooError(f"Output folder '{out}' already exists and is not empty; choose another --out or remove it.")
    seeds = list(range(config.seed, config.seed + n))
    results = []
    for i, seed in enumerate(seeds, 1):
        cfg = copy.deepcopy(config)
        cfg.out = str(out / f"seed-{seed}")
        cfg.head.params = seeded_head_params(head_cls, cfg.head.params, seed)
        log(f"seed {i}/{n}: training seed {seed}, split seed {config.seed} -> {cfg.out}")
        results.append(run(cfg, seed))
    per_seed = [
        {
            "train_seed": seed,
            "run_dir": str(r.run_dir),
            "accuracy": float(r.metrics["test"]["accuracy"]),
            "macro_f1": float(r.metrics["test"]["macro_f1"]),
        }
        for seed, r in zip(seeds, results)
    ]
    summary = {
        "seeds": n,
        "split_seed": config.seed,
        "train_seeds": seeds,
        "varies": WHAT_VARIES,
        "sd": "sample standard deviation over the runs (ddof = 1)",
        "n_test": int(results[0].metrics["test"].get("n", 0)) if results else 0,
        **summarise(per_seed),
        "runs": per_seed,
    }
    (out / "seeds.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return SeedsResult(out=out, runs=results, summary=summary)


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
