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

import functools
import os
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlzoo.api.backbone import UnbuiltBackbone
from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import (
    Backbone,
    BackboneFactory,
    BackboneRequest,
    DataOptions,
    Dataset,
    FittableBackbone,
    FittedHead,
    Head,
    Plan,
    Strategy,
    StrategyContext,
    TorchHead,
    fit_backbone,
)
from tlzoo.api.steps import LABELS, STEPS, StepName  # STEPS re-exported: tlzoo.engine.runner.STEPS of 0.1
from tlzoo.engine import artifacts, distributed
from tlzoo.engine.checkpoint import Checkpointer, incomplete_dir
from tlzoo.engine.config import RunConfig
from tlzoo.engine.data import LabelEncoder, Splits, check_labels, stratified_limit, stratified_split
from tlzoo.engine.features import CachedSplits, FeatureCache, cached_splits, extract, feature_spec
from tlzoo.engine.loaders import example_loader
from tlzoo.engine.training import (
    History,
    Trainer,
    TransferModel,
    amp_dtype,
    autocast,
    count_parameters,
    frozen_to_eval,
    inference_batch_size,
    param_groups,
    predict_logits,
    set_trainable,
    soft_cross_entropy,
)
from tlzoo.engine.zoo import Zoo
from tlzoo.evaluation.metrics import classification_report
from tlzoo.evaluation.plots import plot_confusion, plot_history
from tlzoo.infra import memory
from tlzoo.infra.lifecycle import RunLock, os_error_message


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]

    @property
    def accuracy(self) -> float:
        return float(self.metrics["test"]["accuracy"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return distributed.local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise TlzooError(f"Unknown device '{name}'; use auto, cpu or cuda.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TlzooError("train.device is cuda but no GPU is visible; use --device cpu or auto.")
    return distributed.local_device(dev)  # under torchrun: cuda -> this process's GPU


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# called once a run has written metrics.json, before its folder takes its final name:
# (run folder, log, test examples by id, final folder); the Engine passes the report writer
FinishHook = Callable[[Path, Callable[[str], None], dict[str, Any], Path], None]


class Run:
    """One transfer-learning job; ``execute()`` runs the steps (``tlzoo.steps.STEPS``) in order.

    Each step is the method of the same name, called through the ``tlzoo_run_step`` hook so
    plugins can wrap it.  The attributes below are the run's whole state, each set by the
    step named in its docstring (``tlzoo.steps.STATE`` lists them per step).
    """

    config: RunConfig
    """The configuration; checked by resolve_plugins."""
    zoo: Zoo
    """Every registered plugin."""
    log: Callable[[str], None]
    """Where progress lines go (nothing on the other ranks under torchrun)."""
    cache: FeatureCache
    """The feature cache under ``$TLZOO_HOME``."""
    resume_from: Path | None
    """An interrupted run's ``.incomplete`` folder to continue (Engine.resume), else None."""
    probe: bool
    """A ``tl compare`` probe: no run folder, no lock; only ``steps.PROBE_STEPS`` run."""
    main: bool
    """Whether this process logs and writes the run folder (False on the other torchrun ranks)."""
    step: str
    """The step running now, named in the message of an unexpected error."""
    train_seed: int
    """The seed of training (weights drawn, batch order, augmentation); ``config.seed`` unless
    ``tl run --seeds`` varies it.  ``config.seed`` alone decides the subset and the split."""

    # resolve_plugins
    factory: BackboneFactory
    """resolve_plugins: the backbone factory of ``--plugin``."""
    model_name: str
    """resolve_plugins: the model the factory builds."""
    head: Head
    """resolve_plugins: the head (a TorchHead or a FittedHead) with its options."""
    strategy: Strategy
    """resolve_plugins: the training strategy."""
    plan: Plan
    """resolve_plugins: the strategy's plan of phases."""
    device: torch.device
    """resolve_plugins: where training and extraction run."""
    final_dir: Path
    """resolve_plugins: the run folder once complete (``--out``); not for probes."""
    dir: Path
    """resolve_plugins: the folder written now, ``<out>.incomplete``, renamed at the end; not for probes."""
    checkpointer: Checkpointer
    """resolve_plugins: epoch checkpoints in ``dir``; not for probes."""
    lock: RunLock | None
    """resolve_plugins: the lock on ``--out`` (rank 0), held until execute returns."""
    resume_state: dict[str, Any] | None
    """resolve_plugins: the checkpoint a resumed run continues from, else None."""
    # load_dataset, split, encode_labels, configure_augmentation
    dataset: Dataset
    """load_dataset: every labelled example, after ``--limit``."""
    splits: Splits
    """split: the train / validation / test datasets."""
    encoder: LabelEncoder
    """encode_labels: the class names and their order."""
    targets: dict[str, np.ndarray]
    """encode_labels: one-hot targets per split ("train", "val", "test")."""
    augment_train: bool
    """configure_augmentation: whether training examples are augmented."""
    # create_backbone, build_model, compile
    backbone: Backbone
    """create_backbone: the pretrained network (a FittableBackbone fitted on the train split)."""
    request: BackboneRequest
    """create_backbone: what the backbone was built from (saved in model.json)."""
    weights_fingerprint: str
    """create_backbone: a hash of the transferred weights, recorded in metrics.json."""
    feature_spec: dict[str, Any] | None
    """create_backbone: the request and a digest of its weight files, keying cached features
    (``features.backbone_spec``), or None: they are keyed by the backbone's fingerprint."""
    model: TransferModel | None
    """build_model: backbone + torch head; None for a FittedHead."""
    loss: Callable[..., torch.Tensor]
    """compile: the training loss."""
    history: History
    """compile: the epoch rows (history.csv)."""
    trainer: Trainer
    """compile: runs the phases."""
    # train, save_model, evaluate
    features: dict[str, np.ndarray]
    """train: features per split when the plan uses them; emptied once the backbone trains."""
    best_across_phases: dict[str, Any] | None
    """train: phase, epoch and val loss of the weights kept, or None."""
    test_proba: np.ndarray
    """evaluate: test-set class probabilities."""
    metrics: dict[str, Any]
    """evaluate: the test report and the run's description (metrics.json)."""

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
        self._old_names: set[str] = set()  # 0.1 step names a plugin compared with, warned about once

    # ------------------------------------------------------------------ driver
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
            f"done in {self.metrics['seconds']:.1f}s: test accuracy {self.metrics['test']['accuracy']:.4f}, "
            f"macro-F1 {self.metrics['test']['macro_f1']:.4f} -> {self.final_dir}"
        )
        return RunResult(self.final_dir, self.metrics)

    def run_steps(self, names: tuple[str, ...]) -> None:
        """Run the steps ``names`` in order, each through the ``tlzoo_run_step`` hook (wrappers apply)."""
        hook = self.zoo.plugins.pm.hook.tlzoo_run_step
        for name in names:
            self.step = name
            if name in LABELS:  # the guide's twelve numbered lines; save_model is part of 9 (train)
                number, label = LABELS[name]
                self.log(f"[{number:>2}/12] {label}")
            hook(step=StepName(name, self._old_step_name), run=self)

    def _old_step_name(self, old: str, new: str, module: str) -> None:
        """A wrapper compared the step with its 0.1 name: say so once per run (the match still holds)."""
        if old not in self._old_names:
            self._old_names.add(old)
            self.log(
                f"  warning: {module} compares the step with its old name '{old}'; it is '{new}' now "
                f"(tlzoo.steps.{new.upper()}), and the old name stops working in tlzoo 2.0"
            )

    def _finish(self) -> dict[str, Any]:
        """metrics.json, the report, and the rename of ``<out>.incomplete`` to ``<out>``."""
        artifacts.write_json(self.dir / "metrics.json", self.metrics)
        if self.on_finish is not None:  # Engine: report.html + README.md (a failure there only warns)
            self.on_finish(
                self.dir, self.log, dict(zip(self.splits.test.ids, self.splits.test.examples)), self.final_dir
            )
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
        """The plugin whose code raised (innermost plugin frame), else the run's backbone plugin."""
        name = self.zoo.plugins.plugin_of_traceback(exc.__traceback__)
        if name is None and getattr(self, "factory", None) is not None:
            name = self.factory.plugin or self.factory.name
        return name

    def _prepare_out(self, out: Path) -> None:
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
            self.lock = RunLock(out).acquire()
        except OSError as exc:
            message = os_error_message(exc, parent)
            if message is None:
                raise
            raise TlzooError(f"Cannot use --out '{out}': {message}") from None

    # ------------------------------------------------------------------ 1
    def resolve_plugins(self) -> None:
        """Resolve the plugins this run needs, check every choice before heavy work, open the run folder."""
        cfg = self.config
        if not cfg.data.path:
            raise TlzooError("No data given; pass --data PATH (a CSV/JSONL of texts or a folder of images).")
        cfg.validate()  # ranges and cross-key rules, before any data is read
        self.factory, self.model_name = self.zoo.resolve_backbone(cfg.model.plugin, cfg.model.name)
        with warnings.catch_warnings():  # engine settings inside options: warned about once, when the backbone is built
            warnings.simplefilter("ignore", DeprecationWarning)
            own = BackboneRequest(model=self.model_name, options=dict(cfg.model.options)).options
        self.factory.check_options(own)  # model.options names and types now, before any data is read
        head_cls = self.zoo.heads.get(cfg.head.name)
        self.head = head_cls(**cfg.head.params)
        self.strategy = self.zoo.strategies.get(cfg.train.strategy)
        self.plan = self.strategy.plan(self.head, cfg.train)
        if not cfg.model.pretrained:
            self._plan_for_random_weights()
        self.device = pick_device(cfg.train.device)
        if cfg.train.batch_size < 1:
            raise TlzooError(f"train.batch_size must be at least 1, got {cfg.train.batch_size}.")
        for key in ("epochs", "head_epochs"):
            if getattr(cfg.train, key) < 0:
                raise TlzooError(f"train.{key} must be 0 or more, got {getattr(cfg.train, key)}.")
        if cfg.train.num_workers < 0:
            raise TlzooError(f"train.num_workers must be 0 or more, got {cfg.train.num_workers}.")
        self.cache.tidy()  # feature folders of extractions killed earlier
        if self.probe:  # tl compare: no run folder
            return
        # rank 0 alone locks --out and creates the run folder; under torchrun the others learn its paths
        self.final_dir, self.dir = distributed.run_on_main(self._open_run_dir)
        self.checkpointer = Checkpointer(self.dir)
        if self.resume_from is not None:  # every rank continues from rank 0's checkpoint
            self.resume_state = self.checkpointer.load()
            if self.resume_state is not None:  # config.toml holds only the split's seed
                self.train_seed = int(self.resume_state.get("train_seed", self.train_seed))
        self.checkpointer.extra["train_seed"] = self.train_seed
        if self.resume_from is not None:
            where = (
                f"phase {self.resume_state['phase']} epoch {self.resume_state['epoch']}"
                if self.resume_state
                else "the start of training (no epoch had finished)"
            )
            self.log(f"  resuming {self.dir} from {where}")
            return
        plugin = self.zoo.plugins.info.get(self.factory.plugin)
        self.log(
            f"  plugin {self.factory.name} ({self.factory.plugin} {plugin.version if plugin else ''}), "
            f"model {self.model_name}, head {self.head.name}, strategy {self.strategy.name}, device {self.device}"
            + (f", {distributed.world_size()} processes" if distributed.active() else "")
        )

    def _plan_for_random_weights(self) -> None:
        """--no-pretrained: the strategy's from-scratch plan (every layer trains from epoch 1), said in one line."""
        scratch = self.strategy.plan_from_scratch(self.head, self.config.train)
        if scratch is not None:
            self.plan = scratch
            phases = ", ".join(
                f"{p.name}, {p.epochs} epoch{'s' * (p.epochs != 1)} at lr {p.lr:g}" for p in scratch.phases
            )
            self.log(
                f"  --no-pretrained: random weights are not worth freezing; every layer trains from epoch 1 ({phases})"
            )
        elif not self.plan.trains_backbone:
            self.log(
                "  warning: --no-pretrained with a frozen backbone: the head learns from features of random weights "
                "(a baseline, not transfer); use --head fc to train every layer"
            )

    def _open_run_dir(self) -> tuple[Path, Path]:
        """Lock ``--out`` and create ``<out>.incomplete`` with config.toml (a resumed run: take its folder).

        Returns (the final folder, the folder written now)."""
        cfg = self.config
        if self.resume_from is not None:  # continue in the interrupted run's own folder
            final = self.resume_from.with_name(self.resume_from.name[: -len(".incomplete")])
            self._prepare_out(final)
            self.dir = self.resume_from
            self.final_dir = final
            return self.final_dir, self.dir
        out = Path(cfg.out) if cfg.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.factory.name}"
        self._prepare_out(out)
        if out.exists() and any(out.iterdir()):
            raise TlzooError(
                f"Output folder '{out}' already exists and is not empty; choose another --out or remove it."
            )
        self.final_dir = out
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
        self.dir = interrupted  # from here on, a failure removes it (see after_failure)
        if out.exists():
            out.rmdir()
        (self.dir / "config.toml").write_text(self._config_to_save().to_toml())
        return self.final_dir, self.dir

    def _config_to_save(self) -> RunConfig:
        """The config, with a local data path made absolute (the run re-runs and resumes from any folder).

        Only when the absolute path reaches the same data source: a built-in name such as
        ``digits`` stays a name even where a folder of that name exists."""
        import copy

        cfg = copy.deepcopy(self.config)
        path = cfg.data.path
        if path and os.path.exists(path) and not os.path.isabs(path):
            absolute = os.path.abspath(path)
            try:
                same = self.zoo.data_source_for(path, self.factory.modality) is self.zoo.data_source_for(
                    absolute, self.factory.modality
                )
            except TlzooError:
                same = False
            if same:
                cfg.data.path = absolute
        return cfg

    # ------------------------------------------------------------------ 2
    def load_dataset(self) -> None:
        cfg = self.config.data
        source = self.zoo.data_source_for(cfg.path, self.factory.modality)
        ds = source.load(cfg.path, DataOptions(cfg.text_column, cfg.label_column, cfg.encoding))
        for note in ds.notes:  # rows dropped while reading, doubtful labels: never silent
            self.log(f"  warning: {note}")
        check_labels(ds)
        full = len(ds)
        ds = stratified_limit(ds, cfg.limit, self.config.seed)
        check_labels(ds)
        self.dataset = ds
        self.log(
            f"  {len(ds)} examples"
            + (f" (stratified subset of {full})" if len(ds) < full else "")
            + f" from {source.name}: {cfg.path}"
        )

    # ------------------------------------------------------------------ 3
    def split(self) -> None:
        cfg = self.config.data
        self.splits = stratified_split(self.dataset, cfg.val_fraction, cfg.test_fraction, self.config.seed)
        s = self.splits
        self.log(
            f"  train {len(s.train)} / validation {len(s.val)} / test {len(s.test)} "
            f"(stratified, seed {self.config.seed})"
        )
        for note in s.notes:  # e.g. a class too small to reach the test set
            self.log(f"  warning: {note}")

    # ------------------------------------------------------------------ 4
    def encode_labels(self) -> None:
        self.encoder = LabelEncoder.fit(self.dataset.labels)
        for name in ("train", "val", "test"):
            self.targets[name] = self.encoder.one_hot(getattr(self.splits, name).labels)
        self.log(
            f"  {len(self.encoder.classes)} classes: {', '.join(self.encoder.classes[:12])}"
            + (" ..." if len(self.encoder.classes) > 12 else "")
        )

    # ------------------------------------------------------------------ 5
    def configure_augmentation(self) -> None:
        """Augmentation applies to training examples only, and only where the backbone sees them."""
        self.augment_train = self.config.data.augment and self.plan.trains_backbone
        why = (
            "none: training texts are used as they are"  # a text backbone's request still carries augment
            if self.factory.modality == "text"
            else "on for training examples"
            if self.augment_train
            else "off (disabled)"
            if not self.config.data.augment
            else "off: features are extracted once from unaugmented examples"
        )
        self.log(f"  augmentation {why}")

    # ------------------------------------------------------------------ 6
    def create_backbone(self) -> None:
        m = self.config.model
        # train_backbone: whether any phase updates the backbone (a static-vector backbone then adds its encoder)
        request = BackboneRequest(
            model=self.model_name,
            weights=m.weights or None,
            pretrained=m.pretrained,
            options=dict(m.options),
            pooling=m.pooling,
            max_length=m.max_length,
            image_size=m.image_size,
            augment=self.augment_train,
            train_backbone=self.plan.trains_backbone,
        )
        self.request = request
        self.feature_spec = feature_spec(self.factory, request)
        precision = amp_dtype(self.device, self.config.train.amp)
        if self.feature_spec is not None and precision is not None:  # bfloat16 features: their own entries
            self.feature_spec = {**self.feature_spec, "autocast": str(precision).removeprefix("torch.")}
        cached = self._cached_features()
        if cached is not None:  # nothing but its features is needed, and they are all cached: no build
            self.backbone, self.features = UnbuiltBackbone(cached.backbone), cached.features
            self._cached_keys = cached.keys
            self.weights_fingerprint = self.backbone.fingerprint()
            self.log(
                f"  {self.backbone.name}: not built, every split's features are cached "
                f"({self.backbone.num_features} features); weights: {self.backbone.weights_source}"
            )
            return
        self.backbone = self.factory.create(request)  # the factory checks the options and sets backbone.plugin
        fit_backbone(self.backbone, self.splits.train, self.log)  # a FittableBackbone learns from the train split
        if isinstance(self.backbone, FittableBackbone):  # its features depend on the training split too
            self.feature_spec = None
        self.weights_fingerprint = self.backbone.fingerprint()  # the weights transferred (and fitted state)
        _, total = count_parameters(self.backbone)
        self.log(
            f"  {self.backbone.name}: {total / 1e6:.2f} M parameters, {self.backbone.num_features} features, "
            f"{len(self.backbone.layer_groups())} layer groups; weights: {self.backbone.weights_source}"
        )
        if self.augment_train and self.backbone.modality == "vision":
            from tlzoo.evaluation.augment_preview import save_augment_grid

            if self.main and save_augment_grid(
                self.backbone,
                self.splits.train.examples,
                self.dir / "augment.png",
                self.splits.train.labels,
                seed=self.config.seed,
            ):
                self.log(f"  augmented training samples: {self.final_dir / 'augment.png'}")

    def _spec_keys_features(self) -> bool:
        """Whether ``feature_spec`` may key the features: a strategy's ``before_training`` may change the
        weights (ULMFiT's language-model stage), and then only the fingerprint taken after it can."""
        return self.feature_spec is not None and type(self.strategy).before_training is Strategy.before_training

    def _cached_features(self) -> CachedSplits | None:
        """Every split's features from the cache when the plan needs nothing else of the backbone."""
        if not self._spec_keys_features() or not self.plan.extract_features or self.plan.trains_backbone:
            return None
        if distributed.active():  # torchrun: rank 0 decides hits in extract, the backbone is built
            return None
        assert self.feature_spec is not None
        s = self.splits
        return cached_splits(self.cache, self.feature_spec, {"train": s.train, "val": s.val, "test": s.test})

    # ------------------------------------------------------------------ 7
    def build_model(self) -> None:
        n_classes = len(self.encoder.classes)
        if isinstance(self.head, TorchHead):
            self.model = TransferModel(self.backbone, self.head.build(self.backbone.num_features, n_classes))
            self.log(
                f"  new model = {self.backbone.name} + head {self.head.name} "
                f"({count_parameters(self.model.head)[1]:,} new parameters, {n_classes} outputs)"
            )
        else:
            self.log(
                f"  new model = {self.backbone.name} features + fitted {self.head.name} head ({n_classes} classes)"
            )

    # ------------------------------------------------------------------ 8
    def compile(self) -> None:
        t = self.config.train
        self.loss = soft_cross_entropy(t.label_smoothing)
        self.history = History(
            self.dir / "history.csv" if self.main and not self.probe else None
        )  # rows kept on every rank
        if self.resume_state is not None:
            self.history.restore(self.resume_state["history"])
        self.trainer = Trainer(
            device=self.device,
            loss=self.loss,
            history=self.history,
            weight_decay=t.weight_decay,
            progress=self.config.progress,
            log=self.log,
            amp=t.amp,
        )
        if amp_dtype(self.device, t.amp) is not None:
            self.log(f"  {self.device}: bfloat16 autocast (--no-amp: float32)")
        if self._inference_batch_size() != t.batch_size:
            self.log(
                f"  batch size {self._inference_batch_size()} for extraction and prediction on {self.device}, "
                f"{t.batch_size} for training (--batch-size sets both)"
            )
        total = count_parameters(self.backbone)[1]
        head_params = count_parameters(self.model.head)[1] if self.model is not None else 0
        if self.plan.extract_features and isinstance(self.head, FittedHead):
            self.log(f"  plan: backbone frozen (0 of {total:,} parameters train); fit {self.head.name} on its features")
            return
        self.log(
            f"  optimizer AdamW (weight decay {t.weight_decay}), soft-target cross-entropy"
            f" (label smoothing {t.label_smoothing})"
            + (
                f", early stopping after {t.patience} epoch{'s' * (t.patience != 1)} without a better val loss"
                if t.patience
                else ""
            )
            + "; the best val-loss weights of all phases are kept; frozen groups (BatchNorm too) stay in eval mode"
        )
        self.log("  plan:")
        groups = self.backbone.layer_groups()
        for p in self.plan.phases:
            live = set_trainable(self.backbone, p.train_groups)
            trainable = count_parameters(self.backbone)[0]
            first = len(groups) - len(live) + 1  # groups numbered 1 (input side) .. len(groups)
            names = (
                f"top {len(live)} of {len(groups)} (groups {first}-{len(groups)})" if live else "none (backbone frozen)"
            )
            lowest = p.lr * p.lr_decay ** max(0, len(live) - 1)
            lrs = (
                f"lr {p.lr:g} head and top group, x{p.lr_decay:g} per group below (lowest {lowest:.2g})"
                if live and p.lr_decay != 1
                else f"lr {p.lr:g}"
            )
            warm = (
                f"{p.warmup_fraction:.0%} warm-up, "
                if p.warmup_fraction and p.schedule in ("cosine", "constant")
                else ""
            )
            self.log(
                f"    phase {p.name}: {p.epochs} epoch{'s' * (p.epochs != 1)}, {lrs}, {warm}{p.schedule} schedule; "
                f"backbone groups training: {names}; "
                f"trainable {trainable + head_params:,} / {total + head_params:,} parameters"
            )
        set_trainable(self.backbone, 0)

    # ------------------------------------------------------------------ 9
    def train(self) -> None:
        t = self.config.train
        self.strategy.before_training(self.strategy_context())
        needs_features = self.plan.extract_features or any(p.train_groups == 0 for p in self.plan.phases)
        if needs_features:
            self.extract_cached_features()
        if isinstance(self.head, FittedHead):
            if self.main:  # a fitted (scikit-learn) head: rank 0 alone, it predicts the test set too
                self._fit_head()
        else:
            assert self.model is not None
            done = self.resume_state["phase_index"] if self.resume_state else 0  # phases before it are finished
            # the best val-loss weights of the finished phases, kept in every checkpoint (resume is exact)
            across = self.resume_state.get("best_across_phases") if self.resume_state else None
            self.checkpointer.extra["best_across_phases"] = across
            for index, phase in enumerate(self.plan.phases):
                if phase.train_groups != 0:
                    self.features = {}  # the backbone changes: cached features are stale now
                if index < done:
                    continue  # its result is inside the checkpoint's weights
                resume = self.resume_state if self.resume_state and index == done else None
                ckpt: dict[str, Any] = {
                    "phase_index": index,
                    "checkpoint": self.checkpointer,
                    "resume": resume,
                    "patience": t.patience,
                }
                if phase.train_groups == 0:
                    self._train_head_on_features(phase, **ckpt)
                else:
                    live = set_trainable(self.backbone, phase.train_groups)
                    train = example_loader(
                        self.splits.train.examples,
                        self.backbone,
                        train=self.augment_train,
                        batch_size=t.batch_size,
                        num_workers=t.num_workers,
                        shuffle=True,
                        targets=self.targets["train"],
                        seed=self.train_seed,
                        device=self.device,
                    )
                    val = self._raw_loader("val")
                    self.trainer.run_phase(
                        self.model,
                        phase,
                        param_groups(self.model, live, phase),
                        train,
                        val,
                        on_train=functools.partial(frozen_to_eval, self.backbone, live),
                        **ckpt,
                    )
                last = index == len(self.plan.phases) - 1
                across = self._best_across_phases(phase.name, across, copy=not last)
                self.checkpointer.extra["best_across_phases"] = across
            self._restore_best_across_phases(across)
            set_trainable(self.backbone, 0)

    def strategy_context(self) -> StrategyContext:
        """What the strategy's ``before_training`` sees: the parts of the run it needs, never the test split."""
        assets = None if self.probe else self.dir / "assets"
        if assets is not None and self.main:
            assets.mkdir(exist_ok=True)
        return StrategyContext(
            backbone=self.backbone,
            head=self.head,
            plan=self.plan,
            train_set=self.splits.train,
            val_set=self.splits.val,
            train=self.config.train,
            seed=self.train_seed,
            device=self.device,
            log=self.log,
            record=self.history.append,
            assets=assets,
            main=self.main and not self.probe,
            _run=self,
        )

    def _phase_best(self, name: str) -> tuple[float, int] | None:
        """(best val loss, its epoch) of the phase ``name`` from the history, or None without validation."""
        rows = [
            (float(r["val_loss"]), int(r["epoch"]))
            for r in self.history.rows
            if r.get("phase") == name and r.get("val_loss") not in (None, "")
        ]
        return min(rows, key=lambda x: (x[0], x[1])) if rows else None

    def _best_across_phases(self, name: str, across: dict[str, Any] | None, copy: bool) -> dict[str, Any] | None:
        """The finished phase ``name`` (its best weights are in the model now) if it beats ``across``.

        ``copy``: keep a copy of the weights (not needed after the last phase: they stay in the model)."""
        from tlzoo.engine.checkpoint import state_dict_copy

        best = self._phase_best(name)
        if best is None or (across is not None and best[0] >= across["loss"]):
            return across
        assert self.model is not None
        return {
            "loss": best[0],
            "phase": name,
            "epoch": best[1],
            "state": state_dict_copy(self.model) if copy else None,
        }

    def _restore_best_across_phases(self, across: dict[str, Any] | None) -> None:
        """End on the best val-loss weights of all phases: a later phase that did worse is undone."""
        self.best_across_phases = None
        if across is None:
            return
        self.best_across_phases = {k: across[k] for k in ("phase", "epoch", "loss")}
        last = self.plan.phases[-1].name
        if across["phase"] == last or across["state"] is None:
            return
        assert self.model is not None
        self.model.load_state_dict(across["state"])
        later = self._phase_best(last)
        worse = f" (val loss {later[0]:.4f} vs {across['loss']:.4f})" if later else ""
        self.log(
            f"  {last} phase did not beat the {across['phase']} phase{worse}: keeping the "
            f"{across['phase']}-phase weights (epoch {across['epoch']})"
        )

    def _raw_loader(self, split: str) -> Any:
        ds = getattr(self.splits, split)
        if len(ds) == 0:
            return None
        return example_loader(
            ds.examples,
            self.backbone,
            train=False,
            batch_size=self._inference_batch_size(),
            num_workers=self.config.train.num_workers,
            targets=self.targets[split],
            device=self.device,
        )

    def _inference_batch_size(self) -> int:
        """The batch size of extraction and prediction: ``train.batch_size``, or on a GPU, when the user
        set none, one chosen for its memory (no gradients are kept: only the speed changes)."""
        t = self.config.train
        if self.config.given("train.batch_size"):
            return t.batch_size
        return inference_batch_size(self.device, t.batch_size)

    def extract_cached_features(self) -> None:
        t = self.config.train
        if isinstance(self.backbone, UnbuiltBackbone):  # create_backbone read every split from the cache
            for split, key in self._cached_keys.items():
                n = len(getattr(self.splits, split))
                self.log(f"  features for {split} ({n} examples) read from cache {key}")
            self.log(f"  features: {' / '.join(f'{k} {v.shape}' for k, v in self.features.items())}")
            return
        fingerprint = self.backbone.fingerprint()  # once: it hashes every weight (before_training may change them)
        precision = amp_dtype(self.device, t.amp)
        if precision is not None:  # bfloat16 features are not the float32 ones: their own cache entries
            fingerprint += f"/autocast-{str(precision).removeprefix('torch.')}"
        spec = self.feature_spec if self._spec_keys_features() else None
        for split in ("train", "val", "test"):
            ds = getattr(self.splits, split)
            with autocast(self.device, t.amp):
                self.features[split] = self._extract_split(ds, split, fingerprint, spec)
            memory.trim()  # the batches' memory back to the system before the next split
        self.log(f"  features: {' / '.join(f'{k} {v.shape}' for k, v in self.features.items())}")

    def _extract_split(self, ds: Dataset, split: str, fingerprint: str, spec: dict[str, Any] | None) -> Any:
        t = self.config.train
        return extract(
            self.backbone,
            ds,
            batch_size=self._inference_batch_size(),
            device=self.device,
            num_workers=t.num_workers,
            cache=self.cache,
            progress=self.config.progress,
            log=self.log,
            label=split,
            fingerprint=fingerprint,
            spec=spec,
        )

    def feature_loader(self, split: str, shuffle: bool) -> Any:
        if len(self.features[split]) == 0:
            return None
        g = torch.Generator()
        g.manual_seed(self.train_seed)
        return torch.utils.data.DataLoader(
            FeatureRows(self.features[split], self.targets[split]),
            batch_size=self.config.train.batch_size,
            shuffle=shuffle,
            generator=g,
            collate_fn=_as_batch,
        )

    def _train_head_on_features(self, phase: Any, **checkpointing: Any) -> None:
        assert self.model is not None
        head = self.model.head
        self.trainer.run_phase(
            head,
            phase,
            [{"params": list(head.parameters()), "lr": phase.lr}],
            self.feature_loader("train", True),
            self.feature_loader("val", False),
            **checkpointing,
        )

    def _fit_head(self) -> None:
        head = self.head
        assert isinstance(head, FittedHead)
        start = time.perf_counter()
        n = len(self.encoder.classes)
        y_train = self.targets["train"].argmax(1)
        head.fit(self.features["train"], y_train, n)
        self._log_tuning()
        row: dict[str, Any] = {"phase": "fit", "epoch": 1}
        for split, prefix in (("train", "train"), ("val", "val")):
            if len(self.features[split]):
                p = head.predict_proba(self.features[split])
                y = self.targets[split].argmax(1)
                row[f"{prefix}_loss"] = round(float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean()), 5)
                row[f"{prefix}_accuracy"] = round(float((p.argmax(1) == y).mean()), 5)
        row["seconds"] = round(time.perf_counter() - start, 2)
        self.history.append(row)
        self.log(f"  fitted {self.head.name}: train acc {row.get('train_accuracy')}, val acc {row.get('val_accuracy')}")

    def head_tuning(self) -> dict[str, Any]:
        """What a fitted head chose by cross-validation (its ``tuned`` dict), else {}."""
        tuned = getattr(self.head, "tuned", None)
        return dict(tuned) if isinstance(tuned, dict) else {}

    def _log_tuning(self) -> None:
        tuned = self.head_tuning()
        how = ("cv_folds", "cv_accuracy", "best_cv_accuracy", "cv_log_loss", "note", "grid_points", "search_rows")
        chosen = {k: v for k, v in tuned.items() if k not in how}
        if not chosen:
            return
        values = ", ".join(f"{k}={v}" for k, v in chosen.items())
        if not tuned.get("cv_folds"):
            self.log(f"  {self.head.name}: {values} ({tuned.get('note', 'not cross-validated')})")
            return
        score = (
            f"accuracy {tuned['cv_accuracy']:.3f}"
            if "cv_accuracy" in tuned
            else f"log loss {tuned['cv_log_loss']:.3f}"
            if "cv_log_loss" in tuned
            else ""
        )
        best = tuned.get("best_cv_accuracy")
        if isinstance(best, (int, float)) and "cv_accuracy" in tuned and best > tuned["cv_accuracy"]:
            score += f"; best {best:.3f}, within the folds' noise"  # the simplest setting that close is kept
        over = f" over {tuned['grid_points']} settings" if tuned.get("grid_points") else ""
        self.log(
            f"  {self.head.name}: chose {values} (CV {score}, {tuned['cv_folds']}-fold cross-validation{over} "
            "on the training features)"
        )

    # ------------------------------------------------------------------ 9 (save model)
    def save_model(self) -> None:
        """model.safetensors (head, and the backbone when trained or random), model.json, assets/."""
        if not self.main:
            return
        # random-init weights cannot be rebuilt at prediction time: save them as fine-tuned ones are
        save_backbone = self.plan.trains_backbone or not self.request.pretrained
        tensors: dict[str, torch.Tensor] = {}
        head_kind = "torch"
        if isinstance(self.head, TorchHead):
            assert self.model is not None
            tensors.update({f"head.{k}": v for k, v in self.model.head.state_dict().items()})
        else:
            head = self.head
            assert isinstance(head, FittedHead)
            linear = head.to_linear()
            if linear is not None:  # a fitted linear head is saved as the equivalent torch layer
                head_kind = "linear"
                tensors["head.weight"] = torch.from_numpy(np.ascontiguousarray(linear[0], dtype=np.float32))
                tensors["head.bias"] = torch.from_numpy(np.ascontiguousarray(linear[1], dtype=np.float32))
            else:
                head_kind = "fitted"
                tensors.update(
                    {f"head.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in head.state().items()}
                )
        if save_backbone:
            tensors.update({f"backbone.{k}": v for k, v in self.backbone.state_dict().items()})
        assets = self.dir / "assets"
        assets.mkdir(exist_ok=True)  # a strategy may have written files there already
        self.backbone.save_assets(str(assets))
        description = {
            "backbone": {
                **self.backbone.spec(),
                "request": {**self.request.to_json(), "augment": False},
                "fitted": isinstance(self.backbone, FittableBackbone),
                "num_features": self.backbone.num_features,
                "weights_saved": save_backbone,
                "fingerprint": None if save_backbone else self.backbone.fingerprint(),
                # tl predict checks these files' digest (remembered per file version) instead of hashing tensors
                "weights_digest": self.feature_spec["weights_files"]
                if self.feature_spec is not None and not save_backbone and self._spec_keys_features()
                else None,
                "preprocessing": self.backbone.preprocessing(),
            },
            "head": {
                "name": self.head.name,
                "params": self.head.params,
                "kind": head_kind,
                **({"tuned": self.head_tuning()} if self.head_tuning() else {}),
            },
            "classes": self.encoder.classes,
            "modality": self.backbone.modality,
            "versions": artifacts.versions(),
        }
        artifacts.save_model(self.dir, tensors, description)
        self.log(
            f"  saved model.safetensors ({'backbone and ' if save_backbone else ''}head {self.head.name}) "
            f"and model.json"
        )

    # ------------------------------------------------------------------ 10
    def plot_history(self) -> None:
        if not self.main:
            return
        plot_history(
            self.history.rows,
            self.dir / "history.png",
            title=f"{self.backbone.name} · {self.strategy.name} · head {self.head.name}"
            + ("" if self.config.model.pretrained else " · random init"),
            best=(self.best_across_phases["phase"], self.best_across_phases["epoch"])
            if self.best_across_phases
            else None,
        )

    # ------------------------------------------------------------------ 11
    def evaluate(self) -> None:
        """Predict the test split and score it: predictions.csv and the metrics."""
        if not self.main:  # rank 0 predicts; its metrics reach every rank when the run finishes
            return
        test = self.splits.test
        if "test" in self.features:
            x = self.features["test"]
            if isinstance(self.head, TorchHead):
                assert self.model is not None
                head = self.model.head.eval().to(self.device)
                step = self._inference_batch_size()
                with torch.inference_mode():  # in batches: the features may be memory-mapped, never all copied
                    parts = [
                        head(torch.from_numpy(np.array(x[i : i + step])).to(self.device)).float().cpu()
                        for i in range(0, len(x), step)
                    ]
                logits = torch.cat(parts) if parts else torch.zeros(0, len(self.encoder.classes))
                proba = torch.softmax(logits, 1).numpy()
            else:
                assert isinstance(self.head, FittedHead)
                proba = self.head.predict_proba(x)
        else:
            assert self.model is not None
            logits = predict_logits(
                self.model,
                example_loader(
                    test.examples,
                    self.backbone,
                    train=False,
                    batch_size=self._inference_batch_size(),
                    num_workers=self.config.train.num_workers,
                    device=self.device,
                ),
                self.device,
                amp=self.config.train.amp,
            )
            proba = torch.softmax(logits, 1).numpy()
        self.test_proba = proba
        classes = self.encoder.classes
        y_true = self.encoder.encode(test.labels)
        y_pred = proba.argmax(1)
        report = classification_report(y_true, y_pred, classes)
        from tlzoo.evaluation.uncertainty import (  # 95 % intervals: how far the test figures can be trusted
            METHOD,
            bootstrap_ci,
        )

        ci = bootstrap_ci(y_true, y_pred, len(classes), seed=self.config.seed)
        report.update(accuracy_ci=ci["accuracy"], macro_f1_ci=ci["macro_f1"], ci_method=METHOD)
        # the input beside each prediction (text or image path; in-memory images by id) for `tl errors`
        inputs = [ex if isinstance(ex, str) else ident for ex, ident in zip(test.examples, test.ids)]
        artifacts.write_predictions(
            self.dir / "predictions.csv",
            test.ids,
            test.labels,
            [classes[i] for i in y_pred],
            proba,
            classes,
            inputs=inputs,
        )
        val = {}
        if self.history.rows and self.history.rows[-1].get("val_accuracy") not in (None, ""):
            val = {"accuracy": self.history.rows[-1]["val_accuracy"], "loss": self.history.rows[-1]["val_loss"]}
        self.metrics = {
            "test": report,
            "validation_last_epoch": val,
            **({"validation_kept": self.best_across_phases} if self.best_across_phases else {}),
            **({"head_tuning": self.head_tuning()} if self.head_tuning() else {}),
            "run": {
                "plugin": self.factory.name,
                "model": self.backbone.name,
                "weights": self.backbone.weights_source,
                "head": self.head.name,
                "strategy": self.strategy.name,
                "seed": self.config.seed,
                "train_seed": self.train_seed,  # differs from seed under tl run --seeds (the split is seed's)
                "n_train": len(self.splits.train),
                "n_val": len(self.splits.val),
                "n_test": len(test),
                "versions": artifacts.versions(self._plugin_version()),
                "weights_fingerprint": self.weights_fingerprint,
            },
        }
        self.log(
            f"  test accuracy {report['accuracy']:.4f} (95% CI {ci['accuracy'][0]:.3f}-{ci['accuracy'][1]:.3f}), "
            f"macro-F1 {report['macro_f1']:.4f} (95% CI {ci['macro_f1'][0]:.3f}-{ci['macro_f1'][1]:.3f}) "
            f"on {len(test)} examples"
        )

    def _plugin_version(self) -> str | None:
        info = self.zoo.plugins.info.get(self.factory.plugin)
        return info.version if info else None

    # ------------------------------------------------------------------ 12
    def plot_confusion(self) -> None:
        if not self.main:
            return
        plot_confusion(
            np.array(self.metrics["test"]["confusion_matrix"]),
            self.encoder.classes,
            self.dir / "confusion.png",
            title=f"{self.backbone.name} · {self.strategy.name}",
        )


class FeatureRows(torch.utils.data.Dataset):
    """Rows of (possibly memory-mapped, read-only) features with their targets, gathered a batch at a
    time (``__getitems__``): a shuffled epoch copies one batch of rows, never the whole array."""

    def __init__(self, features: np.ndarray, targets: np.ndarray) -> None:
        self.features, self.targets = features, targets

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(self.features[i])), torch.from_numpy(np.array(self.targets[i]))

    def __getitems__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.asarray(index, dtype=np.int64)
        return torch.from_numpy(np.take(self.features, rows, axis=0)), torch.from_numpy(self.targets[rows])


def _as_batch(batch: Any) -> Any:
    """The collate of :class:`FeatureRows` batches: already stacked by ``__getitems__`` (a list of
    (x, y) pairs, from a sampler that asks one index at a time, is stacked here)."""
    if isinstance(batch, tuple):
        return batch
    xs, ys = zip(*batch)
    return torch.stack(xs), torch.stack(ys)


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
