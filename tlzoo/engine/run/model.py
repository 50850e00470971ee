"""Steps 6-8: create the backbone (or find its features in the cache), build the model, compile;
and feature extraction, which training and lr-find share.

Each step is a function of the run's state (:class:`tlzoo.engine.run.state.RunState`).
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from tlzoo.api.backbone import UnbuiltBackbone
from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import (
    BackboneRequest,
    Dataset,
    FittableBackbone,
    FittedHead,
    Head,
    Strategy,
    TorchHead,
    fit_backbone,
)
from tlzoo.engine import distributed
from tlzoo.engine.extraction import extract, say_input_report
from tlzoo.engine.features import CachedSplits, cached_splits, feature_spec
from tlzoo.engine.loaders import example_loader
from tlzoo.engine.run.state import RunState
from tlzoo.engine.training import (
    History,
    Trainer,
    TransferModel,
    amp_dtype,
    autocast,
    count_parameters,
    inference_batch_size,
    set_trainable,
    soft_cross_entropy,
)
from tlzoo.infra import memory

AnyHead = TypeVar("AnyHead", bound=Head)


def create_backbone(run: RunState) -> None:
    m = run.config.model
    # train_backbone: whether any phase updates the backbone (a static-vector backbone then adds its encoder)
    request = BackboneRequest(
        model=run.model_name,
        weights=m.weights or None,
        pretrained=m.pretrained,
        options=dict(m.options),
        pooling=m.pooling,
        max_length=m.max_length,
        image_size=m.image_size,
        augment=run.augment_train,
        train_backbone=run.plan.trains_backbone,
    )
    run.request = request
    run.feature_spec = feature_spec(run.factory, request)
    precision = amp_dtype(run.device, run.config.train.amp)
    if run.feature_spec is not None and precision is not None:  # bfloat16 features: their own entries
        run.feature_spec = {**run.feature_spec, "autocast": str(precision).removeprefix("torch.")}
    cached = _cached_features(run)
    if cached is not None:  # nothing but its features is needed, and they are all cached: no build
        run.backbone, run.features = UnbuiltBackbone(cached.backbone), cached.features
        run._cached_keys = cached.keys
        run.weights_fingerprint = run.backbone.fingerprint()
        run.log(
            f"  {run.backbone.name}: not built, every split's features are cached "
            f"({run.backbone.num_features} features); weights: {run.backbone.weights_source}"
        )
        for split, text in cached.reports.items():  # what extraction did to the inputs, said again
            say_input_report(split, text, run.log, run.metrics.setdefault("input_reports", {}))
        return
    run.backbone = run.factory.create(request)  # the factory checks the options and sets backbone.plugin
    fit_backbone(run.backbone, run.splits.train, run.log)  # a FittableBackbone learns from the train split
    if isinstance(run.backbone, FittableBackbone):  # its features depend on the training split too
        run.feature_spec = None
    run.weights_fingerprint = run.backbone.fingerprint()  # the weights transferred (and fitted state)
    _, total = count_parameters(run.backbone)
    run.log(
        f"  {run.backbone.name}: {total / 1e6:.2f} M parameters, {run.backbone.num_features} features, "
        f"{len(run.backbone.layer_groups())} layer groups; weights: {run.backbone.weights_source}"
    )
    if run.augment_train and run.backbone.modality == "vision":
        from tlzoo.evaluation.augment_preview import save_augment_grid

        if run.main and save_augment_grid(
            run.backbone,
            run.splits.train.examples,
            run.dir / "augment.png",
            run.splits.train.labels,
            seed=run.config.seed,
        ):
            run.log(f"  augmented training samples: {run.final_dir / 'augment.png'}")


def _spec_keys_features(run: RunState) -> bool:
    """Whether ``feature_spec`` may key the features: a strategy's ``before_training`` may change the
    weights (ULMFiT's language-model stage), and then only the fingerprint taken after it can."""
    return run.feature_spec is not None and type(run.strategy).before_training is Strategy.before_training


def _cached_features(run: RunState) -> CachedSplits | None:
    """Every split's features from the cache when the plan needs nothing else of the backbone."""
    if not _spec_keys_features(run) or not run.plan.extract_features or run.plan.trains_backbone:
        return None
    if distributed.active():  # torchrun: rank 0 decides hits in extract, the backbone is built
        return None
    assert run.feature_spec is not None
    s = run.splits
    return cached_splits(run.cache, run.feature_spec, {"train": s.train, "val": s.val, "test": s.test})


def build_model(run: RunState) -> None:
    n_classes = len(run.encoder.classes)
    give_blocks(run, run.head)
    if isinstance(run.head, TorchHead):
        run.model = TransferModel(run.backbone, run.head.build(run.backbone.num_features, n_classes))
        run.log(
            f"  new model = {run.backbone.name} + head {run.head.name} "
            f"({count_parameters(run.model.head)[1]:,} new parameters, {n_classes} outputs)"
        )
    else:
        run.log(f"  new model = {run.backbone.name} features + fitted {run.head.name} head ({n_classes} classes)")


def give_blocks(run: RunState, head: AnyHead, inputs: list[str] | None = None) -> AnyHead:
    """``head`` told which columns each input gives, when the backbone's features hold several inputs
    (``inputs``: only those inputs' columns, in order, as a head fitted on that subset sees them)."""
    blocks = run.backbone.feature_blocks()
    if inputs is not None:
        blocks = subset_blocks(blocks, inputs)
    if len(blocks) > 1:
        head.use_blocks(blocks)
    return head


def subset_blocks(blocks: list[tuple[str, list[int]]], inputs: list[str]) -> list[tuple[str, list[int]]]:
    """The blocks of ``inputs`` re-indexed to the columns ``x[:, subset_columns(blocks, inputs)]`` keeps."""
    position = {c: i for i, c in enumerate(subset_columns(blocks, inputs))}
    return [(name, [position[c] for c in columns]) for name, columns in blocks if name in inputs]


def subset_columns(blocks: list[tuple[str, list[int]]], inputs: list[str]) -> list[int]:
    """The feature columns of ``inputs``, ascending."""
    return sorted(c for name, columns in blocks if name in inputs for c in columns)


def compile(run: RunState) -> None:
    t = run.config.train
    run.loss = soft_cross_entropy(t.label_smoothing)
    run.history = History(run.dir / "history.csv" if run.main and not run.probe else None)  # rows kept on every rank
    if run.resume_state is not None:
        run.history.restore(run.resume_state["history"])
    run.trainer = Trainer(
        device=run.device,
        loss=run.loss,
        history=run.history,
        weight_decay=t.weight_decay,
        progress=run.config.progress,
        log=run.log,
        amp=t.amp,
    )
    if amp_dtype(run.device, t.amp) is not None:
        run.log(f"  {run.device}: bfloat16 autocast (--no-amp: float32)")
    if _inference_batch_size(run) != t.batch_size:
        run.log(
            f"  batch size {_inference_batch_size(run)} for extraction and prediction on {run.device}, "
            f"{t.batch_size} for training (--batch-size sets both)"
        )
    total = count_parameters(run.backbone)[1]
    head_params = count_parameters(run.model.head)[1] if run.model is not None else 0
    if run.plan.extract_features and isinstance(run.head, FittedHead):
        run.log(f"  plan: backbone frozen (0 of {total:,} parameters train); fit {run.head.name} on its features")
        return
    run.log(
        f"  optimizer AdamW (weight decay {t.weight_decay}), soft-target cross-entropy"
        f" (label smoothing {t.label_smoothing})"
        + (
            f", early stopping after {t.patience} epoch{'s' * (t.patience != 1)} without a better val loss"
            if t.patience
            else ""
        )
        + "; the best val-loss weights of all phases are kept; frozen groups (BatchNorm too) stay in eval mode"
    )
    run.log("  plan:")
    groups = run.backbone.layer_groups()
    for p in run.plan.phases:
        live = set_trainable(run.backbone, p.train_groups)
        trainable = count_parameters(run.backbone)[0]
        first = len(groups) - len(live) + 1  # groups numbered 1 (input side) .. len(groups)
        names = f"top {len(live)} of {len(groups)} (groups {first}-{len(groups)})" if live else "none (backbone frozen)"
        lowest = p.lr * p.lr_decay ** max(0, len(live) - 1)
        lrs = (
            f"lr {p.lr:g} head and top group, x{p.lr_decay:g} per group below (lowest {lowest:.2g})"
            if live and p.lr_decay != 1
            else f"lr {p.lr:g}"
        )
        warm = (
            f"{p.warmup_fraction:.0%} warm-up, " if p.warmup_fraction and p.schedule in ("cosine", "constant") else ""
        )
        run.log(
            f"    phase {p.name}: {p.epochs} {_epochs_kind(p)}epoch{'s' * (p.epochs != 1)}, {lrs}, {warm}"
            f"{p.schedule} schedule; "
            f"backbone groups training: {names}; "
            f"trainable {trainable + head_params:,} / {total + head_params:,} parameters"
        )
    set_trainable(run.backbone, 0)


def _epochs_kind(phase: Any) -> str:
    """``head `` or ``joint `` before "epochs" in a plan line: which setting (--head-epochs, --joint-epochs)
    counts a built-in strategy's phase."""
    if phase.name == "head":
        return "head "
    return "joint " if phase.name in ("fine-tune", "scratch", "unfreeze-all") else ""


def _raw_loader(run: RunState, split: str) -> Any:
    ds = getattr(run.splits, split)
    if len(ds) == 0:
        return None
    return example_loader(
        ds.examples,
        run.backbone,
        train=False,
        batch_size=_inference_batch_size(run),
        num_workers=run.config.train.num_workers,
        targets=run.targets[split],
        device=run.device,
    )


def _inference_batch_size(run: RunState) -> int:
    """The batch size of extraction and prediction: ``train.batch_size``, or on a GPU, when the user
    set none, one chosen for its memory (no gradients are kept: only the speed changes)."""
    t = run.config.train
    if run.config.given("train.batch_size"):
        return t.batch_size
    return inference_batch_size(run.device, t.batch_size)


def extract_cached_features(run: RunState) -> None:
    t = run.config.train
    if isinstance(run.backbone, UnbuiltBackbone):  # create_backbone read every split from the cache
        for split, key in run._cached_keys.items():
            n = len(getattr(run.splits, split))
            run.log(f"  features for {split} ({n} examples) read from cache {key}")
        run.log(f"  features: {' / '.join(f'{k} {v.shape}' for k, v in run.features.items())}")
        return
    fingerprint = run.backbone.fingerprint()  # once: it hashes every weight (before_training may change them)
    precision = amp_dtype(run.device, t.amp)
    if precision is not None:  # bfloat16 features are not the float32 ones: their own cache entries
        fingerprint += f"/autocast-{str(precision).removeprefix('torch.')}"
    spec = run.feature_spec if _spec_keys_features(run) else None
    for split in ("train", "val", "test"):
        ds = getattr(run.splits, split)
        with autocast(run.device, t.amp):
            run.features[split] = _extract_split(run, ds, split, fingerprint, spec)
        check_features(run.features[split], run.backbone.name, split)
        memory.trim()  # the batches' memory back to the system before the next split
    run.log(f"  features: {' / '.join(f'{k} {v.shape}' for k, v in run.features.items())}")


def check_features(features: Any, backbone: str, split: str) -> None:
    """Non-finite features would train a NaN model: one line naming the backbone instead."""
    bad = int((~np.isfinite(np.asarray(features)).all(axis=1)).sum()) if len(features) else 0
    if bad:
        raise TlzooError(
            f"Backbone '{backbone}' produced non-finite features (NaN or inf) for {bad} of {len(features)} "
            f"{split} examples; check its weights (--weights) and its forward, or try --no-amp."
        )


def _extract_split(run: RunState, ds: Dataset, split: str, fingerprint: str, spec: dict[str, Any] | None) -> Any:
    t = run.config.train
    return extract(
        run.backbone,
        ds,
        batch_size=_inference_batch_size(run),
        device=run.device,
        num_workers=t.num_workers,
        cache=run.cache,
        progress=run.config.progress,
        log=run.log,
        label=split,
        fingerprint=fingerprint,
        spec=spec,
        reports=run.metrics.setdefault("input_reports", {}),  # the model card lists them
    )
