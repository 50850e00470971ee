"""What a run holds: :class:`RunState` declares every field with the step that sets it, and
:class:`RunView` is what a step wrapper receives — the same state, read-only except for
``RunView.WRITABLE``.  Also the small helpers every step module shares.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import (
    Backbone,
    BackboneFactory,
    BackboneRequest,
    Dataset,
    Head,
    Plan,
    Strategy,
)
from tlzoo.engine import distributed
from tlzoo.engine.checkpoint import Checkpointer
from tlzoo.engine.config import RunConfig
from tlzoo.engine.data import LabelEncoder, Splits
from tlzoo.engine.features import FeatureCache
from tlzoo.engine.training import (
    History,
    Trainer,
    TransferModel,
)
from tlzoo.engine.zoo import Zoo
from tlzoo.infra.lifecycle import RunLock
from tlzoo.infra.safe_text import printable


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]

    @property
    def accuracy(self) -> float:
        return float(self.metrics["test"]["accuracy"])


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators: with ``seed`` itself in one process (and on
    rank 0), with a stream of its own on each other torchrun rank, so that the example at one position
    of each rank's share of a batch does not get the same crop, jitter or dropout mask on every rank.
    (The batch order comes from the loader's own generator, the same on every rank; DDP broadcasts
    rank 0's initial weights.)"""
    seed = distributed.rank_seed(seed)
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
    print(printable(msg), file=sys.stderr, flush=True)  # labels and texts may hold escape sequences


# called once a run has written metrics.json, before its folder takes its final name:
# (run folder, log, test examples by id, final folder); the Engine passes the report writer
FinishHook = Callable[[Path, Callable[[str], None], dict[str, Any], Path], None]


class RunState:
    """The run's whole state: each field is set by the step named in its docstring
    (``tlzoo.steps.STATE`` lists them per step) and read by later steps only."""

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
    trained_on: dict[str, Any]
    """train: the splits and rows the saved model learnt from (train, or train + val for a head that
    cross-validates or ``--refit-full``), and why; in metrics.json and model.json."""
    cross_validation: dict[str, Any] | None
    """train: ``--cv K``'s accuracy and macro-F1 per fold, mean, sd and 95 % interval, else None."""
    test_proba: np.ndarray
    """evaluate: test-set class probabilities."""
    metrics: dict[str, Any]
    """evaluate: the test report and the run's description (metrics.json)."""
    extras: dict[str, Any]
    """Any step or wrapper: what a plugin keeps between the steps of one run (``run.extras["oov"]``)."""
    on_finish: FinishHook | None
    """The Engine's hook after metrics.json (the report), or None."""
    _cached_keys: dict[str, str]
    """create_backbone: the cache key of each split read from the cache."""
    _old_names: set[str]
    """0.1 step names a plugin compared with, warned about once."""


class RunView:
    """A step wrapper's view of the run: every field of :class:`RunState` reads through; a wrapper
    may set only the fields in ``WRITABLE`` (and mutate ``metrics`` and ``extras``).  A plugin keeps
    its own values in ``run.extras``, never in new attributes."""

    WRITABLE = frozenset({"extras", "metrics"})
    __slots__ = ("_run",)

    def __init__(self, run: RunState) -> None:
        object.__setattr__(self, "_run", run)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_run"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.WRITABLE:
            raise TlzooError(
                f"A step wrapper may not set run.{name}: the run's state belongs to its steps. "
                f"Keep a plugin's own values in run.extras['{name}']."
            )
        setattr(object.__getattribute__(self, "_run"), name, value)

    def __dir__(self) -> list[str]:
        return dir(object.__getattribute__(self, "_run"))

    def __repr__(self) -> str:
        return f"RunView({object.__getattribute__(self, '_run')!r})"
