"""Steps 9 (save the model) to 12: the training curves, the test predictions and metrics, the
confusion matrix.

Each step is a function of the run's state (:class:`tlzoo.engine.run.state.RunState`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import (
    FittableBackbone,
    FittedHead,
    TorchHead,
)
from tlzoo.engine import artifacts
from tlzoo.engine.loaders import example_loader
from tlzoo.engine.run import feature_sample
from tlzoo.engine.run.ablation import input_ablation
from tlzoo.engine.run.fit import head_tuning
from tlzoo.engine.run.model import _inference_batch_size, _spec_keys_features
from tlzoo.engine.run.state import RunState
from tlzoo.engine.training import (
    predict_logits,
)
from tlzoo.evaluation import plots
from tlzoo.evaluation.metrics import classification_report


def _head_tensors(run: RunState) -> tuple[dict[str, torch.Tensor], str]:
    """The head's tensors for model.safetensors, and its kind: torch, linear (a fitted linear head saved as
    the equivalent torch layer) or fitted (its own state)."""
    if isinstance(run.head, TorchHead):
        assert run.model is not None
        return {f"head.{k}": v for k, v in run.model.head.state_dict().items()}, "torch"
    head = run.head
    assert isinstance(head, FittedHead)
    linear = head.to_linear()
    if linear is not None:
        return {
            "head.weight": torch.from_numpy(np.ascontiguousarray(linear[0], dtype=np.float32)),
            "head.bias": torch.from_numpy(np.ascontiguousarray(linear[1], dtype=np.float32)),
        }, "linear"
    return {f"head.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in head.state().items()}, "fitted"


def save_model(run: RunState) -> None:
    """model.safetensors (head, and the backbone when trained or random), model.json, assets/."""
    if not run.main:
        return
    # random-init weights cannot be rebuilt at prediction time: save them as fine-tuned ones are
    save_backbone = run.plan.trains_backbone or not run.request.pretrained
    tensors, head_kind = _head_tensors(run)
    if save_backbone:
        tensors.update({f"backbone.{k}": v for k, v in run.backbone.state_dict().items()})
    assets = run.dir / "assets"
    assets.mkdir(exist_ok=True)  # a strategy may have written files there already
    run.backbone.save_assets(str(assets))
    description = {
        "backbone": {
            **run.backbone.spec(),
            "request": {**run.request.to_json(), "augment": False},
            "fitted": isinstance(run.backbone, FittableBackbone),
            "num_features": run.backbone.num_features,
            "weights_saved": save_backbone,
            "fingerprint": None if save_backbone else run.backbone.fingerprint(),
            # tl predict checks these files' digest (remembered per file version) instead of hashing tensors
            "weights_digest": run.feature_spec["weights_files"]
            if run.feature_spec is not None and not save_backbone and _spec_keys_features(run)
            else None,
            "preprocessing": run.backbone.preprocessing(),
        },
        "head": {
            "name": run.head.name,
            "params": run.head.params,
            "kind": head_kind,
            **({"tuned": head_tuning(run)} if head_tuning(run) else {}),
            **({"trained_on": run.trained_on} if run.trained_on else {}),
        },
        "classes": run.encoder.classes,
        "modality": run.backbone.modality,
        "versions": artifacts.versions(),
    }
    artifacts.save_model(run.dir, tensors, description)
    # a few training examples and their features (the head's own, when cached): tl predict recomputes them
    # and refuses features that moved
    sampled = feature_sample.write_sample(
        run.dir,
        run.backbone,
        run.splits.train.examples,
        None if run.plan.trains_backbone else run.features.get("train"),
    )
    run.log(
        f"  saved model.safetensors ({'backbone and ' if save_backbone else ''}head {run.head.name}) and model.json"
        + (f", and the features of {sampled} training examples" if sampled else "")
    )


def plot_history(run: RunState) -> None:
    if not run.main:
        return
    plots.plot_history(
        run.history.rows,
        run.dir / "history.png",
        title=f"{run.backbone.name} · {run.strategy.name} · head {run.head.name}"
        + ("" if run.config.model.pretrained else " · random init"),
        best=(run.best_across_phases["phase"], run.best_across_phases["epoch"]) if run.best_across_phases else None,
    )


def evaluate(run: RunState) -> None:
    """Predict the test split and score it: predictions.csv and the metrics."""
    if not run.main:  # rank 0 predicts; its metrics reach every rank when the run finishes
        return
    test = run.splits.test
    if not len(test):  # --test-fraction 0 with --cv K: the folds' figures are the run's result
        _cv_result(run)
        return
    proba = _test_probabilities(run)
    check_probabilities(proba, run.head.name)
    run.test_proba = proba
    classes = run.encoder.classes
    y_true = run.encoder.encode(test.labels)
    y_pred = proba.argmax(1)
    report = classification_report(y_true, y_pred, classes)
    from tlzoo.evaluation.uncertainty import (  # 95 % intervals: how far the test figures can be trusted
        METHOD,
        bootstrap_ci,
    )

    ci = bootstrap_ci(y_true, y_pred, len(classes), seed=run.config.seed)
    report.update(accuracy_ci=ci["accuracy"], macro_f1_ci=ci["macro_f1"], ci_method=METHOD)
    # the input beside each prediction (text or image path; in-memory images by id) for `tl errors`
    inputs = [ex if isinstance(ex, str) else ident for ex, ident in zip(test.examples, test.ids)]
    artifacts.write_predictions(
        run.dir / "predictions.csv",
        test.ids,
        test.labels,
        [classes[i] for i in y_pred],
        proba,
        classes,
        inputs=inputs,
    )
    run.metrics = _metrics(run, report)
    table = input_ablation(run)  # a fused run: each input alone, all but one, all (cached features)
    if table is not None:
        run.metrics["ablation"] = table
    run.log(
        f"  test accuracy {report['accuracy']:.4f} (95% CI {ci['accuracy'][0]:.3f}-{ci['accuracy'][1]:.3f}), "
        f"macro-F1 {report['macro_f1']:.4f} (95% CI {ci['macro_f1'][0]:.3f}-{ci['macro_f1'][1]:.3f}) "
        f"on {len(test)} examples"
    )


def _cv_result(run: RunState) -> None:
    """No test split (``--test-fraction 0 --cv K``): metrics.json's result is the cross-validation's,
    in the test report's shape (mean, 95 % interval, rows) with ``scored_by`` saying so; no predictions.csv."""
    cv = run.cross_validation
    assert cv is not None, "--test-fraction 0 needs --cv K (RunConfig.validate says so)"
    acc, f1 = cv["accuracy"], cv["macro_f1"]
    report = {
        "accuracy": acc["mean"],
        "macro_f1": f1["mean"],
        "accuracy_ci": acc["ci"],
        "macro_f1_ci": f1["ci"],
        "ci_method": cv["method"],
        "n": cv["rows"],
        "classes": list(run.encoder.classes),
        "scored_by": SCORED_BY_CV.format(k=cv["folds"], n=cv["rows"]),
    }
    run.metrics = _metrics(run, report)
    run.log(
        f"  no test split (--test-fraction 0): the run's result is its {cv['folds']}-fold cross-validation, "
        f"accuracy {acc['mean']:.4f}, macro-F1 {f1['mean']:.4f} on {cv['rows']} examples; no predictions.csv"
    )


# metrics.json's test.scored_by when there is no test split
SCORED_BY_CV = "{k}-fold cross-validation on all {n} examples (no test split: --test-fraction 0)"


def check_probabilities(proba: np.ndarray, head: str) -> None:
    """A head's probabilities must be finite: one line naming the head otherwise (never a crash in a later step)."""
    bad = ~np.isfinite(proba).all(axis=1) if len(proba) else np.zeros(0, bool)
    if bad.any():
        raise TlzooError(
            f"Head '{head}' returned non-finite probabilities (NaN or inf) for {int(bad.sum())} of {len(proba)} "
            "test examples; check the head's predict_proba (tlzoo.testing.check_head finds this), or lower --lr "
            "if training diverged."
        )


def _test_probabilities(run: RunState) -> np.ndarray:
    """Class probabilities of the test split: from cached features, or through the whole model."""
    if "test" in run.features:
        x = run.features["test"]
        if not isinstance(run.head, TorchHead):
            assert isinstance(run.head, FittedHead)
            return np.asarray(run.head.predict_proba(x))
        assert run.model is not None
        head = run.model.head.eval().to(run.device)
        step = _inference_batch_size(run)
        with torch.inference_mode():  # in batches: the features may be memory-mapped, never all copied
            parts = [
                head(torch.from_numpy(np.array(x[i : i + step])).to(run.device)).float().cpu()
                for i in range(0, len(x), step)
            ]
        logits = torch.cat(parts) if parts else torch.zeros(0, len(run.encoder.classes))
        return torch.softmax(logits, 1).numpy()
    assert run.model is not None
    loader = example_loader(
        run.splits.test.examples,
        run.backbone,
        train=False,
        batch_size=_inference_batch_size(run),
        num_workers=run.config.train.num_workers,
        device=run.device,
    )
    logits = predict_logits(run.model, loader, run.device, amp=run.config.train.amp)
    return torch.softmax(logits, 1).numpy()


def _metrics(run: RunState, report: dict[str, Any]) -> dict[str, Any]:
    """metrics.json: the test report, the validation figures and what the run was."""
    val = {}
    scored = [r for r in run.history.rows if r.get("val_accuracy") not in (None, "")]  # a refit has no val rows
    if scored and (scored[-1] is run.history.rows[-1] or run.trained_on.get("splits") == ["train", "val"]):
        val = {"accuracy": scored[-1]["val_accuracy"], "loss": scored[-1]["val_loss"]}
    return {
        "test": report,
        **({"cross_validation": run.cross_validation} if run.cross_validation else {}),
        **({"trained_on": run.trained_on} if run.trained_on else {}),
        "validation_last_epoch": val,
        **({"validation_kept": run.best_across_phases} if run.best_across_phases else {}),
        **({"head_tuning": head_tuning(run)} if head_tuning(run) else {}),
        # what extraction did to the inputs (texts cut at --max-length), by split: kept from step 9
        **({"input_reports": run.metrics["input_reports"]} if run.metrics.get("input_reports") else {}),
        "run": {
            "plugin": run.factory.name,
            "model": run.backbone.name,
            "weights": run.backbone.weights_source,
            "head": run.head.name,
            "strategy": run.strategy.name,
            "seed": run.config.seed,
            "train_seed": run.train_seed,  # differs from seed under tl run --seeds (the split is seed's)
            "n_train": len(run.splits.train),
            "n_val": len(run.splits.val),
            "n_test": len(run.splits.test),
            "versions": artifacts.versions(_plugin_version(run)),
            "weights_fingerprint": run.weights_fingerprint,
        },
    }


def _plugin_version(run: RunState) -> str | None:
    info = run.zoo.plugins.info.get(run.factory.plugin)
    return info.version if info else None


def plot_confusion(run: RunState) -> None:
    if not run.main:
        return
    if "confusion_matrix" not in run.metrics["test"]:  # no test split: nothing to confuse
        run.log("  no test split: no confusion matrix (the folds' figures are in metrics.json)")
        return
    plots.plot_confusion(
        np.array(run.metrics["test"]["confusion_matrix"]),
        run.encoder.classes,
        run.dir / "confusion.png",
        title=f"{run.backbone.name} · {run.strategy.name}",
    )
