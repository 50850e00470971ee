"""What each input adds, for a backbone whose features are blocks of several inputs (a fused run).

The test figures of a head fitted on each input alone, on every input but one, and on all of them,
with 95 % intervals: the same cached features, so the table costs head fits only.  The head is a
fresh copy of the run's own when it is a fitted head (same options), else ``logreg`` (a fitted
probe, named in the table): an ``fc`` head would need a training run per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tlzoo.api.interfaces import FittedHead
from tlzoo.engine.run.model import give_blocks, subset_columns
from tlzoo.engine.run.refit import rows as stacked_rows
from tlzoo.engine.run.state import RunState
from tlzoo.evaluation.metrics import classification_report

PROBE = "logreg"


def input_ablation(run: RunState) -> dict[str, Any] | None:
    """The ablation table (``metrics.json`` ``ablation``), or None when the backbone has no input blocks."""
    blocks = run.backbone.feature_blocks()
    if len(blocks) < 2:
        return None
    if not all(len(run.features.get(split, ())) for split in ("train", "test")):
        run.log("  ablation: skipped (the backbone trained, so the inputs' features are not the cached ones)")
        return None
    head_cls, params = _probe(run)
    if head_cls is None:
        run.log(f"  ablation: skipped (no fitted head; the '{PROBE}' head is not loaded)")
        return None
    names = [name for name, _ in blocks]
    subsets = [names] + [[n] for n in names] + ([[m for m in names if m != n] for n in names] if len(names) > 2 else [])
    # the rows the run's own fitted head learnt from: train + validation for a head that cross-validates
    learns = ("train", "val") if getattr(head_cls(**params), "cross_validates", False) else ("train",)
    train, y_train = stacked_rows(run, learns if len(run.features.get("val", ())) else ("train",))
    train, test = np.asarray(train), np.asarray(run.features["test"])
    y_test = run.targets["test"].argmax(1)
    n_classes = len(run.encoder.classes)
    from tlzoo.evaluation.uncertainty import bootstrap_ci

    rows = []
    for subset in subsets:
        cols = subset_columns(blocks, subset)
        head = give_blocks(run, head_cls(**params), subset)
        head.fit(train[:, cols], y_train, n_classes)
        y_pred = np.asarray(head.predict_proba(test[:, cols])).argmax(1)
        report = classification_report(y_test, y_pred, run.encoder.classes)
        ci = bootstrap_ci(y_test, y_pred, n_classes, seed=run.config.seed)
        kind = "all" if len(subset) == len(names) else "alone" if len(subset) == 1 else "all but one"
        rows.append(
            {
                "inputs": subset,
                "kind": kind,
                "accuracy": report["accuracy"],
                "macro_f1": report["macro_f1"],
                "accuracy_ci": ci["accuracy"],
                "macro_f1_ci": ci["macro_f1"],
            }
        )
    table = {"head": getattr(head_cls, "name", PROBE), "rows": rows, "n_test": int(len(y_test))}
    run.log(
        f"  ablation: a {table['head']} head fitted on each input set's cached features ({len(y_train)} examples), "
        f"scored on the {len(y_test)} test examples"
    )
    for row in rows:
        lo, hi = row["accuracy_ci"]
        run.log(
            f"  ablation ({table['head']}) {' + '.join(row['inputs']):<40} accuracy {row['accuracy']:.4f} "
            f"[{lo:.3f}, {hi:.3f}]"
        )
    return table


def _probe(run: RunState) -> tuple[Any, dict[str, Any]]:
    """The head class to fit per row and its options: the run's fitted head, else the logreg probe."""
    if isinstance(run.head, FittedHead):  # the configured head (a fused run's late-fusion head wraps it)
        return run.zoo.heads.get(run.config.head.name), dict(run.config.head.params)
    if PROBE in run.zoo.heads:
        return run.zoo.heads.get(PROBE), {}
    return None, {}
