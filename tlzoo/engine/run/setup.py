"""Steps 1-5 of a run: resolve the plugins and open the run folder, load the dataset, split it,
encode the labels, configure augmentation.

Each step is a function of the run's state (:class:`tlzoo.engine.run.state.RunState`).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
import warnings
from pathlib import Path

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import (
    BackboneRequest,
    DataOptions,
)
from tlzoo.engine import distributed
from tlzoo.engine.checkpoint import Checkpointer
from tlzoo.engine.config import RunConfig
from tlzoo.engine.data import (
    LabelEncoder,
    check_labels,
    look_alike_labels,
    read_dataset,
    stratified_limit,
    stratified_split,
)
from tlzoo.engine.run.state import RunState, pick_device
from tlzoo.engine.run.strict_inputs import refuse_unreadable_images, skip_unreadable_images
from tlzoo.infra.lifecycle import RunLock, os_error_message


def _prepare_out(run: RunState, out: Path) -> None:
    """Check ``--out`` before any work, and lock it: one line for every way it can be unusable."""
    if out.exists() and not out.is_dir():
        raise TlzooError(f"--out '{out}' is an existing file; choose a folder path for the run.")
    parent = out.parent
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise TlzooError(f"--out '{out}' is inside '{ancestor}', which is a file; choose a folder path.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        run.lock = RunLock(out).acquire()
    except OSError as exc:
        message = os_error_message(exc, parent)
        if message is None:
            raise
        raise TlzooError(f"Cannot use --out '{out}': {message}") from None


def resolve_plugins(run: RunState) -> None:
    """Resolve the plugins this run needs, check every choice before heavy work, open the run folder."""
    cfg = run.config
    if not cfg.data.path:
        raise TlzooError("No data given; pass --data PATH (a CSV/JSONL of texts or a folder of images).")
    cfg.validate()  # ranges and cross-key rules, before any data is read
    for note in dict.fromkeys(cfg.notes):  # old spellings read as their new keys (--epochs)
        run.log(f"  {note}")
    run.factory, run.model_name = run.zoo.resolve_backbone(cfg.model.plugin, cfg.model.name)
    with warnings.catch_warnings():  # engine settings inside options: warned about once, when the backbone is built
        warnings.simplefilter("ignore", DeprecationWarning)
        own = BackboneRequest(model=run.model_name, options=dict(cfg.model.options)).options
    run.factory.check_options(own)  # model.options names and types now, before any data is read
    head_cls = run.zoo.heads.get(cfg.head.name)
    run.head = head_cls(**cfg.head.params)
    if run.factory.head is not None:  # e.g. a fused run's --fusion late|mlp head over the configured one
        run.head = run.factory.head(own, run.head)
    run.strategy = run.zoo.strategies.get(cfg.train.strategy)
    run.plan = run.strategy.plan(run.head, cfg.train)
    if not cfg.model.pretrained:
        _plan_for_random_weights(run)
    from tlzoo.engine.run.crossval import check_cv

    check_cv(run)  # --cv under a plan that trains the backbone: one line, before any data is read
    run.device = pick_device(cfg.train.device)
    if cfg.train.batch_size < 1:
        raise TlzooError(f"train.batch_size must be at least 1, got {cfg.train.batch_size}.")
    if cfg.train.joint_epochs < 0:
        raise TlzooError(f"train.joint_epochs must be 1 or more, got {cfg.train.joint_epochs}.")
    if cfg.train.num_workers < 0:
        raise TlzooError(f"train.num_workers must be 0 or more, got {cfg.train.num_workers}.")
    if run.factory.modality == "vision" and cfg.model.image_size:  # one batch must fit, before any work
        from tlzoo.infra import memory

        memory.check_image_batch(cfg.train.batch_size, cfg.model.image_size, memory.available_bytes())
    run.cache.tidy()  # feature folders of extractions killed earlier
    if run.probe:  # tl compare: no run folder
        return
    # rank 0 alone locks --out and creates the run folder; under torchrun the others learn its paths
    run.final_dir, run.dir = distributed.run_on_main(functools.partial(_open_run_dir, run))
    run.checkpointer = Checkpointer(run.dir)
    if run.resume_from is not None:  # every rank continues from rank 0's checkpoint
        run.resume_state = run.checkpointer.load()
        if run.resume_state is not None:  # config.toml holds only the split's seed
            run.train_seed = int(run.resume_state.get("train_seed", run.train_seed))
    run.checkpointer.extra["train_seed"] = run.train_seed
    if run.resume_from is not None:
        where = (
            f"phase {run.resume_state['phase']} epoch {run.resume_state['epoch']}"
            if run.resume_state
            else "the start of training (no epoch had finished)"
        )
        run.log(f"  resuming {run.dir} from {where}")
        return
    plugin = run.zoo.plugins.info.get(run.factory.plugin)
    run.log(
        f"  plugin {run.factory.name} ({run.factory.plugin} {plugin.version if plugin else ''}), "
        f"model {run.model_name}, head {run.head.name}, strategy {run.strategy.name}, device {run.device}"
        + (f", {distributed.world_size()} processes" if distributed.active() else "")
    )


def _plan_for_random_weights(run: RunState) -> None:
    """--no-pretrained: the strategy's from-scratch plan (every layer trains from epoch 1), said in one line."""
    scratch = run.strategy.plan_from_scratch(run.head, run.config.train)
    if scratch is not None:
        run.plan = scratch
        phases = ", ".join(f"{p.name}, {p.epochs} epoch{'s' * (p.epochs != 1)} at lr {p.lr:g}" for p in scratch.phases)
        run.log(f"  --no-pretrained: random weights are not worth freezing; every layer trains from epoch 1 ({phases})")
    elif not run.plan.trains_backbone:
        run.log(
            "  warning: --no-pretrained with a frozen backbone: the head learns from features of random weights "
            "(a baseline, not transfer); use --head fc to train every layer"
        )


def _open_run_dir(run: RunState) -> tuple[Path, Path]:
    """Lock ``--out`` and create ``<out>.incomplete`` with config.toml (a resumed run: take its folder).

    Returns (the final folder, the folder written now)."""
    cfg = run.config
    if run.resume_from is not None:  # continue in the interrupted run's own folder
        final = run.resume_from.with_name(run.resume_from.name[: -len(".incomplete")])
        _prepare_out(run, final)
        run.dir = run.resume_from
        run.final_dir = final
        return run.final_dir, run.dir
    out = Path(cfg.out) if cfg.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{run.factory.name}"
    _prepare_out(run, out)
    if out.exists() and any(out.iterdir()):
        raise TlzooError(f"Output folder '{out}' already exists and is not empty; choose another --out or remove it.")
    run.final_dir = out
    interrupted = out.with_name(out.name + ".incomplete")
    if (interrupted / "checkpoint.pt").is_file():  # never throw away trained epochs silently
        raise TlzooError(
            f"An interrupted run with saved epochs is in '{interrupted}'; continue it with "
            f"`tl run --resume {out}`, or remove that folder to start over."
        )
    shutil.rmtree(interrupted, ignore_errors=True)  # an unresumable leftover (a SIGKILLed run)
    try:
        interrupted.mkdir(parents=True)
    except OSError as exc:
        message = os_error_message(exc, interrupted)
        if message is None:
            raise
        raise TlzooError(f"Cannot use --out '{out}': {message}") from None
    run.dir = interrupted  # from here on, a failure removes it (see after_failure)
    if out.exists():
        out.rmdir()
    (run.dir / "config.toml").write_text(_config_to_save(run).to_toml())
    return run.final_dir, run.dir


def _config_to_save(run: RunState) -> RunConfig:
    """The config, with a local data path made absolute (the run re-runs and resumes from any folder).

    Only when the absolute path reaches the same data source: a built-in name such as
    ``digits`` stays a name even where a folder of that name exists."""
    import copy

    cfg = copy.deepcopy(run.config)
    path = cfg.data.path
    if path and os.path.exists(path) and not os.path.isabs(path):
        absolute = os.path.abspath(path)
        try:
            same = run.zoo.data_source_for(path, run.factory.modality) is run.zoo.data_source_for(
                absolute, run.factory.modality
            )
        except TlzooError:
            same = False
        if same:
            cfg.data.path = absolute
    return cfg


def load_dataset(run: RunState) -> None:
    cfg = run.config.data
    if cfg.text_column == cfg.label_column:
        raise TlzooError(
            f"--text-column and --label-column are both '{cfg.text_column}'; the label must come from another "
            "column (--label-column NAME)."
        )
    fields = run.factory.fields(run.config.model.options) if run.factory.fields else ()
    if cfg.label_column in fields:  # the answer as an input: every record would carry its own label
        raise TlzooError(
            f"Column '{cfg.label_column}' is the --label-column; it cannot also be an input (--plugin "
            f"{cfg.label_column}=... or --tabular-columns). Drop it from the inputs, or name another --label-column."
        )
    options = DataOptions(cfg.text_column, cfg.label_column, cfg.encoding, fields=fields)
    ds, source = read_dataset(cfg.path, run.factory.modality, run.zoo, options)
    if cfg.strict_inputs:  # every image read now: the first bad one is fatal (else a counted placeholder)
        refuse_unreadable_images(ds)
    for note in [*ds.notes, *look_alike_labels(ds.labels)]:  # dropped rows, doubtful labels: never silent
        run.log(f"  warning: {note}")
    check_labels(ds)
    full = len(ds)
    ds = stratified_limit(ds, cfg.limit, run.config.seed)
    if not cfg.strict_inputs:  # a missing or non-image file is left out and counted, not fatal (issue 16 §3)
        ds, note = skip_unreadable_images(ds)
        if note:
            run.log(f"  warning: {note}")
    check_labels(ds)
    run.dataset = ds
    run.log(
        f"  {len(ds)} examples"
        + (f" (stratified subset of {full})" if len(ds) < full else "")
        + f" from {source.name}: {cfg.path}"
    )


def split(run: RunState) -> None:
    cfg = run.config.data
    run.splits = stratified_split(run.dataset, cfg.val_fraction, cfg.test_fraction, run.config.seed)
    s = run.splits
    run.log(
        f"  train {len(s.train)} / validation {len(s.val)} / test {len(s.test)} (stratified, seed {run.config.seed})"
    )
    for note in s.notes:  # e.g. a class too small to reach the test set
        run.log(f"  warning: {note}")
    if not len(s.val):  # --val-fraction 0: what validation decides falls back, and the log says how
        run.log(
            "  no validation split (--val-fraction 0): no early stopping, the last epoch's weights are kept, "
            "and fitted heads choose their settings by cross-validation on the training split"
        )


def encode_labels(run: RunState) -> None:
    run.encoder = LabelEncoder.fit(run.dataset.labels)
    for name in ("train", "val", "test"):
        run.targets[name] = run.encoder.one_hot(getattr(run.splits, name).labels)
    run.log(
        f"  {len(run.encoder.classes)} classes: {', '.join(run.encoder.classes[:12])}"
        + (" ..." if len(run.encoder.classes) > 12 else "")
    )


def configure_augmentation(run: RunState) -> None:
    """Augmentation applies to training examples only, and only where the backbone sees them."""
    run.augment_train = run.config.data.augment and run.plan.trains_backbone
    why = (
        "none: training texts are used as they are"  # a text backbone's request still carries augment
        if run.factory.modality == "text"
        else "on for training examples"
        if run.augment_train
        else "off (disabled)"
        if not run.config.data.augment
        else "off: features are extracted once from unaugmented examples"
    )
    run.log(f"  augmentation {why}")
