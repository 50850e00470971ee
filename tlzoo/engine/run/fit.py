"""Step 9, train: the strategy's phases on cached features or on the backbone, the fitted heads,
and the best weights across phases.

Each step is a function of the run's state (:class:`tlzoo.engine.run.state.RunState`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import numpy as np
import torch

from tlzoo.api.interfaces import (
    Dataset,
    FittedHead,
    StrategyContext,
    TorchHead,
)
from tlzoo.engine.loaders import example_loader
from tlzoo.engine.run.model import _raw_loader, extract_cached_features
from tlzoo.engine.run.refit import (  # FeatureRows, _as_batch: re-exported, their home of 0.3's first steps
    NO_TEST_NOTE,
    NOT_TEST,
    FeatureRows as FeatureRows,
    _as_batch as _as_batch,
    fit_rows,
    fitted_refit_note,
    record,
    refits_on_all,
    row_loader,
    rows,
)
from tlzoo.engine.run.state import RunState, seed_everything
from tlzoo.engine.training import (
    frozen_to_eval,
    param_groups,
    set_trainable,
)


def train(run: RunState) -> None:
    run.strategy.before_training(strategy_context(run))
    needs_features = run.plan.extract_features or any(p.train_groups == 0 for p in run.plan.phases)
    if needs_features:
        extract_cached_features(run)
    if isinstance(run.head, FittedHead):
        if run.main:  # a fitted (scikit-learn) head: rank 0 alone, it predicts the test set too
            _fit_head(run)
    else:
        assert run.model is not None
        train_phases(run, run.plan.phases)
        record(run, ("train",), "the training split; validation chose the weights kept")
        if refits_on_all(run):  # --refit-full, or --test-fraction 0 (the model learns from all the data)
            refit_full(run)
    if run.config.train.cv:
        from tlzoo.engine.run.crossval import cross_validate

        cross_validate(run)


def train_phases(run: RunState, phases: list[Any], checkpoint: bool = True) -> None:
    """Train ``phases`` in order on the train split (cached features while the backbone is frozen),
    and end on the best val-loss weights of all of them; ``checkpoint``: every epoch saved (resume)."""
    t = run.config.train
    assert run.model is not None
    done = run.resume_state["phase_index"] if run.resume_state and checkpoint else 0  # phases before it are finished
    # the best val-loss weights of the finished phases, kept in every checkpoint (resume is exact)
    across = run.resume_state.get("best_across_phases") if run.resume_state and checkpoint else None
    if checkpoint:
        run.checkpointer.extra["best_across_phases"] = across
    for index, phase in enumerate(phases):
        if phase.train_groups != 0:
            run.features = {}  # the backbone changes: cached features are stale now
        elif not run.features:  # a head phase after a fresh backbone (--refit-full)
            extract_cached_features(run)
        if index < done:
            continue  # its result is inside the checkpoint's weights
        resume = run.resume_state if checkpoint and run.resume_state and index == done else None
        ckpt: dict[str, Any] = {
            "phase_index": index,
            "checkpoint": run.checkpointer if checkpoint else None,
            "resume": resume,
            "patience": t.patience,
        }
        if phase.train_groups == 0:
            _train_head_on_features(run, phase, **ckpt)
        else:
            live = set_trainable(run.backbone, phase.train_groups)
            train = example_loader(
                run.splits.train.examples,
                run.backbone,
                train=run.augment_train,
                batch_size=t.batch_size,
                num_workers=t.num_workers,
                shuffle=True,
                targets=run.targets["train"],
                seed=run.train_seed,
                device=run.device,
            )
            run.trainer.run_phase(
                run.model,
                phase,
                param_groups(run.model, live, phase),
                train,
                _raw_loader(run, "val"),
                on_train=functools.partial(frozen_to_eval, run.backbone, live),
                **ckpt,
            )
        last = index == len(phases) - 1
        across = _best_across_phases(run, phase.name, across, copy=not last)
        if checkpoint:
            run.checkpointer.extra["best_across_phases"] = across
    if checkpoint:
        _restore_best_across_phases(run, across)
    set_trainable(run.backbone, 0)


def strategy_context(run: RunState) -> StrategyContext:
    """What the strategy's ``before_training`` sees: the parts of the run it needs, never the test split."""
    assets = None if run.probe else run.dir / "assets"
    if assets is not None and run.main:
        assets.mkdir(exist_ok=True)
    return StrategyContext(
        backbone=run.backbone,
        head=run.head,
        plan=run.plan,
        train_set=run.splits.train,
        val_set=run.splits.val,
        train=run.config.train,
        seed=run.train_seed,
        device=run.device,
        log=run.log,
        record=run.history.append,
        assets=assets,
        main=run.main and not run.probe,
        _run=run,
    )


def _phase_best(run: RunState, name: str) -> tuple[float, int] | None:
    """(best val loss, its epoch) of the phase ``name`` from the history, or None without validation."""
    rows = [
        (float(r["val_loss"]), int(r["epoch"]))
        for r in run.history.rows
        if r.get("phase") == name and r.get("val_loss") not in (None, "")
    ]
    return min(rows, key=lambda x: (x[0], x[1])) if rows else None


def _best_across_phases(run: RunState, name: str, across: dict[str, Any] | None, copy: bool) -> dict[str, Any] | None:
    """The finished phase ``name`` (its best weights are in the model now) if it beats ``across``.

    ``copy``: keep a copy of the weights (not needed after the last phase: they stay in the model)."""
    from tlzoo.engine.checkpoint import state_dict_copy

    best = _phase_best(run, name)
    if best is None or (across is not None and best[0] >= across["loss"]):
        return across
    assert run.model is not None
    return {
        "loss": best[0],
        "phase": name,
        "epoch": best[1],
        "state": state_dict_copy(run.model) if copy else None,
    }


def _restore_best_across_phases(run: RunState, across: dict[str, Any] | None) -> None:
    """End on the best val-loss weights of all phases: a later phase that did worse is undone."""
    run.best_across_phases = None
    if across is None:
        return
    run.best_across_phases = {k: across[k] for k in ("phase", "epoch", "loss")}
    last = run.plan.phases[-1].name
    if across["phase"] == last or across["state"] is None:
        return
    assert run.model is not None
    run.model.load_state_dict(across["state"])
    later = _phase_best(run, last)
    worse = f" (val loss {later[0]:.4f} vs {across['loss']:.4f})" if later else ""
    run.log(
        f"  {last} phase did not beat the {across['phase']} phase{worse}: keeping the "
        f"{across['phase']}-phase weights (epoch {across['epoch']})"
    )


def feature_loader(run: RunState, split: str, shuffle: bool) -> Any:
    if len(run.features[split]) == 0:
        return None
    g = torch.Generator()
    g.manual_seed(run.train_seed)
    return torch.utils.data.DataLoader(
        FeatureRows(run.features[split], run.targets[split]),
        batch_size=run.config.train.batch_size,
        shuffle=shuffle,
        generator=g,
        collate_fn=_as_batch,
    )


def _train_head_on_features(run: RunState, phase: Any, **checkpointing: Any) -> None:
    assert run.model is not None
    head = run.model.head
    run.trainer.run_phase(
        head,
        phase,
        [{"params": list(head.parameters()), "lr": phase.lr}],
        feature_loader(run, "train", True),
        feature_loader(run, "val", False),
        **checkpointing,
    )


def _fit_head(run: RunState) -> None:
    head = run.head
    assert isinstance(head, FittedHead)
    start = time.perf_counter()
    n = len(run.encoder.classes)
    splits = fit_rows(run)  # train + validation for a head that cross-validates (or --refit-full)
    x, y = rows(run, splits)
    head.fit(x, y, n)
    learnt = len(y)  # the rows it learnt from (train + validation for a head that cross-validates)
    _log_tuning(run)
    record(run, splits, fitted_refit_note(run, splits))
    row: dict[str, Any] = {"phase": "fit", "epoch": 1}
    for split in ("train", "val"):
        if len(run.features[split]) and (split == "train" or split not in splits):  # a val it learnt from: no score
            p = head.predict_proba(run.features[split])
            truth = run.targets[split].argmax(1)
            row[f"{split}_loss"] = round(float(-np.log(np.clip(p[np.arange(len(truth)), truth], 1e-12, 1)).mean()), 5)
            row[f"{split}_accuracy"] = round(float((p.argmax(1) == truth).mean()), 5)
    row["seconds"] = round(time.perf_counter() - start, 2)
    run.history.append(row)
    if splits == ("train",):
        run.log(f"  fitted {run.head.name}: train acc {row.get('train_accuracy')}, val acc {row.get('val_accuracy')}")
    else:
        run.log(
            f"  fitted {run.head.name} on {learnt} examples, {fitted_refit_note(run, splits)}; "
            f"train acc {row.get('train_accuracy')}" + (f" ({_UNTOUCHED})" if len(run.splits.test) else "")
        )


# said of the test split where a model learns from train + validation; never with --test-fraction 0 (no test split)
_UNTOUCHED = "the test split stays untouched"


def head_tuning(run: RunState) -> dict[str, Any]:
    """What a fitted head chose by cross-validation (its ``tuned`` dict), else {}."""
    tuned = getattr(run.head, "tuned", None)
    return dict(tuned) if isinstance(tuned, dict) else {}


def _log_tuning(run: RunState) -> None:
    tuned = head_tuning(run)
    how = {"cv_folds", "cv_accuracy", "best_cv_accuracy", "cv_log_loss", "note", "grid_points", "search_rows"}
    how |= {"cv_repeats", "cv_macro_f1", "degenerate_settings"}
    chosen = {k: v for k, v in tuned.items() if k not in how}
    if not chosen:
        return
    values = ", ".join(f"{k}={v}" for k, v in chosen.items())
    if not tuned.get("cv_folds"):
        run.log(f"  {run.head.name}: {values} ({tuned.get('note', 'not cross-validated')})")
        return
    score = (
        f"accuracy {tuned['cv_accuracy']:.3f}"
        if "cv_accuracy" in tuned
        else f"log loss {tuned['cv_log_loss']:.3f}"
        if "cv_log_loss" in tuned
        else ""
    )
    if isinstance(tuned.get("cv_macro_f1"), (int, float)):
        score += f", macro-F1 {tuned['cv_macro_f1']:.3f}"
    best = tuned.get("best_cv_accuracy")
    if isinstance(best, (int, float)) and "cv_accuracy" in tuned and best > tuned["cv_accuracy"]:
        score += f"; best {best:.3f}, within the folds' noise"  # the simplest setting that close is kept
    over = f" over {tuned['grid_points']} settings" if tuned.get("grid_points") else ""
    repeats = f" x {tuned['cv_repeats']}" if (tuned.get("cv_repeats") or 1) > 1 else ""
    left = tuned.get("degenerate_settings")
    left_out = f"; {left} collapsed setting{'s' if left != 1 else ''} left out" if left else ""
    run.log(
        f"  {run.head.name}: chose {values} (CV {score}, {tuned['cv_folds']}-fold{repeats} cross-validation{over} "
        f"on the training features{left_out})"
    )


def refit_full(run: RunState) -> None:
    """``--refit-full`` for a torch head: train it (feature extraction) or the whole plan (fine-tuning)
    again from the start on train + validation, for the phases and epochs selection kept."""
    phases = _kept_phases(run)
    epochs = sum(p.epochs for p in phases)
    run.log(
        f"  refit on train + validation ({len(run.splits.train) + len(run.splits.val)} examples"
        + (", test untouched): " if len(run.splits.test) else "): ")
        + ", ".join(f"{p.name} {p.epochs} epoch{'s' * (p.epochs != 1)}" for p in phases)
    )
    seed_everything(run.train_seed)
    assert run.model is not None and isinstance(run.head, TorchHead)
    if run.plan.trains_backbone:
        from tlzoo.api.interfaces import fit_backbone
        from tlzoo.engine.training import TransferModel

        run.backbone = run.factory.create(run.request)
        fit_backbone(run.backbone, _joined(run.splits.train, run.splits.val), run.log)  # a vocabulary: all but test
        run.model = TransferModel(run.backbone, run.head.build(run.backbone.num_features, len(run.encoder.classes)))
        run.features = {}
        splits, targets = run.splits, run.targets
        both = _joined(splits.train, splits.val)
        run.splits = dataclasses.replace(
            splits, train=both, val=dataclasses.replace(splits.val, examples=[], labels=[], ids=[])
        )
        run.targets = {
            **targets,
            "train": np.concatenate([targets["train"], targets["val"]]),
            "val": targets["val"][:0],
        }
        try:
            train_phases(run, phases, checkpoint=False)
        finally:
            run.splits, run.targets = splits, targets
    else:
        run.model.head = run.head.build(run.backbone.num_features, len(run.encoder.classes))
        loader = row_loader(run, *rows(run, NOT_TEST))
        for phase in phases:
            head = run.model.head
            run.trainer.run_phase(
                head, phase, [{"params": list(head.parameters()), "lr": phase.lr}], loader, None, keep_best=False
            )
    why = "--refit-full: the kept phases and epochs, trained again on train + validation"
    record(run, NOT_TEST, why if run.config.train.refit_full else f"{NO_TEST_NOTE}; the kept epochs", epochs=epochs)


def _kept_phases(run: RunState) -> list[Any]:
    """The plan's phases up to the one whose weights were kept, that one cut at the kept epoch."""
    kept = run.best_across_phases
    phases = list(run.plan.phases)
    if kept is None:
        return [dataclasses.replace(p, name=f"refit-{p.name}") for p in phases]
    names = [p.name for p in phases]
    i = names.index(kept["phase"]) if kept["phase"] in names else len(phases) - 1
    chosen = [*phases[:i], dataclasses.replace(phases[i], epochs=int(kept["epoch"]))]
    return [dataclasses.replace(p, name=f"refit-{p.name}") for p in chosen]  # their own history rows


def _joined(a: Dataset, b: Dataset) -> Dataset:
    return Dataset(
        examples=[*a.examples, *b.examples],
        labels=[*a.labels, *b.labels],
        ids=[*a.ids, *b.ids],
        modality=a.modality,
        name=a.name,
    )
