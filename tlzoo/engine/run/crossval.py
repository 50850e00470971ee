"""Part of step 9, train: ``--cv K``, the head scored by K-fold cross-validation.

Every example outside the test split (train + validation) is cut into K stratified folds; the
head is trained afresh on K-1 of them and scored on the one left out, K times, on the features
extracted once (cached).  A fitted head tunes itself inside each fold (nested: the scored fold
never chooses an option); the fc head trains for the epochs the run kept, without validation.
The figures are accuracy and macro-F1 per fold, their mean and standard deviation, and a 95 %
interval ``mean ± t(0.975, K-1) · sd / √K`` (folds share training rows, so it is an
approximate interval: narrower than the truth, as Bengio and Grandvalet showed, 2004).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import FittedHead, TorchHead
from tlzoo.engine.run.model import give_blocks
from tlzoo.engine.run.refit import NOT_TEST, row_loader, rows
from tlzoo.engine.run.state import RunState, seed_everything


def check_cv(run: RunState) -> None:
    """Step 1: ``--cv`` needs the cached features of a frozen backbone; one line naming the fix otherwise."""
    if run.config.train.cv and run.plan.trains_backbone:
        raise TlzooError(
            f"--cv {run.config.train.cv} scores a head on cached features, and --strategy {run.strategy.name} "
            "trains the backbone (each fold would fine-tune it again); use --strategy feature-extraction with "
            "--cv, or --seeds N for the spread of a fine-tuned run."
        )


def cross_validate(run: RunState) -> None:
    """``run.cross_validation``: the head's K-fold figures on train + validation (module docstring)."""
    from tlzoo.evaluation.metrics import classification_report

    k = run.config.train.cv
    x, y = rows(run, NOT_TEST)
    smallest = int(np.bincount(y)[np.bincount(y) > 0].min())
    if smallest < k:
        raise TlzooError(
            f"--cv {k} needs at least {k} examples of every class outside the test split; the smallest class "
            f"has {smallest}. Use --cv {max(2, smallest)} or fewer folds, or add examples."
        )
    folds: list[dict[str, float]] = []
    fold_of = stratified_folds(y, k, run.config.seed)
    for fold in range(k):
        held = fold_of == fold
        pred = _fold_predictions(run, x[~held], y[~held], x[held])
        report = classification_report(y[held], pred, run.encoder.classes)
        folds.append({"accuracy": float(report["accuracy"]), "macro_f1": float(report["macro_f1"])})
    run.cross_validation = summary(folds, len(y))
    acc, f1 = run.cross_validation["accuracy"], run.cross_validation["macro_f1"]
    run.log(
        f"  {k}-fold cross-validation on train + validation ({len(y)} examples): accuracy {acc['mean']:.4f} "
        f"± {acc['sd']:.4f} (95% CI {acc['ci'][0]:.3f}-{acc['ci'][1]:.3f}), macro-F1 {f1['mean']:.4f} "
        f"± {f1['sd']:.4f} (95% CI {f1['ci'][0]:.3f}-{f1['ci'][1]:.3f})"
    )


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each row's fold in ``range(k)``: every class shuffled (``seed``) and dealt round the folds in
    turn, continuing where the previous class stopped, so folds differ in size by one row at most."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), np.int64)
    start = 0
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold_of[idx] = (start + np.arange(len(idx))) % k
        start += len(idx)
    return fold_of


def summary(folds: list[dict[str, float]], n: int) -> dict[str, Any]:
    """Per metric: each fold's value, mean, sd (ddof 1) and the t interval of the mean."""
    from scipy import stats

    k = len(folds)
    t = float(stats.t.ppf(0.975, k - 1))
    out: dict[str, Any] = {"folds": k, "rows": n, "method": "stratified K-fold; mean ± t(0.975, K-1) sd/sqrt(K)"}
    for metric in ("accuracy", "macro_f1"):
        values = np.array([f[metric] for f in folds])
        mean, sd = float(values.mean()), float(values.std(ddof=1))
        half = t * sd / math.sqrt(k)
        out[metric] = {
            "mean": round(mean, 5),
            "sd": round(sd, 5),
            "ci": [round(max(0.0, mean - half), 5), round(min(1.0, mean + half), 5)],
            "per_fold": [round(float(v), 5) for v in values],
        }
    return out


def _fold_predictions(run: RunState, x: np.ndarray, y: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Train a fresh head like the run's on (x, y) and predict ``held``'s classes."""
    n = len(run.encoder.classes)
    head = give_blocks(run, type(run.head)(**run.head.params))
    if isinstance(head, FittedHead):
        head.fit(x, y, n)
        return np.asarray(head.predict_proba(held)).argmax(1)
    assert isinstance(head, TorchHead)
    return _torch_fold(run, head, x, y, held)


def _torch_fold(run: RunState, head: TorchHead, x: np.ndarray, y: np.ndarray, held: np.ndarray) -> np.ndarray:
    """The fc head's fold: the head phase, as many epochs as the run kept, no validation, no history rows."""
    import dataclasses

    import torch

    from tlzoo.engine.training import History, Trainer

    seed_everything(run.train_seed)
    module = head.build(x.shape[1], len(run.encoder.classes))
    phase = run.plan.phases[0]
    kept = run.best_across_phases
    if kept is not None and kept["phase"] == phase.name:
        phase = dataclasses.replace(phase, epochs=int(kept["epoch"]))
    loader = row_loader(run, x, y)
    quiet = Trainer(
        device=run.device,
        loss=run.loss,
        history=History(None),
        weight_decay=run.config.train.weight_decay,
        progress=False,
        log=lambda m: None,
        amp=run.config.train.amp,
    )
    quiet.run_phase(
        module, phase, [{"params": list(module.parameters()), "lr": phase.lr}], loader, None, keep_best=False
    )
    with torch.inference_mode():
        logits = module.eval()(torch.from_numpy(np.asarray(held)).to(run.device)).float().cpu()
    return logits.argmax(1).numpy()
