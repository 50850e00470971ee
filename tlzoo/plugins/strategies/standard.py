"""Feature extraction and fine-tuning, each a short plan of phases.

Epochs come in two kinds: ``train.head_epochs``, the new head alone with the backbone frozen
(feature extraction's only phase, 30 by default; fine-tune's first, 10), and
``train.joint_epochs``, the backbone training (fine-tune's joint phase, 3; from scratch, 10).

Fine-tuning is the classic five steps: build on the base, freeze it, train the new part
(on cached features: cheap), unfreeze the top ``train.unfreeze`` layer groups, train
jointly at a lower, discriminative learning rate.  ``train.gradual_unfreezing`` inserts
one-epoch phases that thaw one more group at a time (ULMFiT); ``train.schedule`` picks
warm-up + cosine, one-cycle, slanted-triangular or constant rates; ``train.patience``
stops a phase early on validation loss (the best weights are always restored).

With random weights (``--no-pretrained``) there is nothing worth freezing: both strategies
then train every layer, head included, from the first epoch at ``train.lr`` (one phase,
``scratch``, ``train.joint_epochs`` or 10 epochs).  Measured on digits with LeNet and 5 epochs:
0.81 test accuracy with fine-tune's frozen head phase and two top groups, 0.9+ from
scratch; feature extraction on a frozen random backbone predicted one class (0.10).
A plan of the user's own is kept: fine-tune with ``train.head_epochs``, ``train.unfreeze``
or ``train.gradual_unfreezing`` changed, or feature extraction with ``train.unfreeze=0``
(a frozen random backbone: the random-features baseline).  A fitted head keeps the
backbone frozen whatever the weights.
"""

from __future__ import annotations

from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import Head, Phase, Plan, Strategy, TorchHead
from tlzoo.engine.config import TrainConfig
from tlzoo.infra.epochs_compat import old_epochs_of

SCHEDULES = ("cosine", "onecycle", "slanted", "constant")
SCRATCH_EPOCHS = 10  # --no-pretrained, train.joint_epochs unset: every layer learns, so more than fine-tune's 3
PLAN_KEYS = ("head_epochs", "unfreeze", "gradual_unfreezing")  # fine-tune: set one and the plan is the user's


def scratch_plan(train: Any) -> Plan:
    """Every layer group and the head train together from epoch 1, at the head's learning rate."""
    phase = Phase(
        "scratch",
        epochs=train.joint_epochs_or(old_epochs_of(train) or SCRATCH_EPOCHS),
        lr=train.lr,
        train_groups=-1,
        warmup_fraction=train.warmup_fraction,
        schedule=train.schedule,
        lr_flag="--lr",  # every layer at the head's rate
    )
    return Plan(phases=[phase], extract_features=False)


def user_set_plan(train: Any) -> bool:
    """Whether a fine-tune plan key differs from its default (then a random backbone keeps that plan)."""
    defaults = TrainConfig()
    return any(getattr(train, k) != getattr(defaults, k) for k in PLAN_KEYS)


def _check(train: Any) -> None:
    if train.schedule not in SCHEDULES:
        from tlzoo.api.errors import suggest

        raise TlzooError(
            f"Unknown train.schedule '{train.schedule}'.{suggest(train.schedule, SCHEDULES)} "
            f"Use one of {', '.join(SCHEDULES)}."
        )
    if train.patience < 0:
        raise TlzooError(f"train.patience must be 0 (off) or more, got {train.patience}.")
    if not 0 <= train.warmup_fraction < 1:
        raise TlzooError(f"train.warmup_fraction must be in [0, 1), got {train.warmup_fraction}.")
    if not 0 < train.lr_decay <= 1:
        raise TlzooError(f"train.lr_decay must be in (0, 1], got {train.lr_decay}.")


class FeatureExtraction(Strategy):
    name = "feature-extraction"
    description = "Frozen backbone; features extracted once (cached) feed a new head."

    def plan(self, head: Head, train: Any) -> Plan:
        _check(train)
        epochs = train.head_epochs_or(
            old_epochs_of(train) or 30
        )  # head on cached features: an epoch costs milliseconds
        if epochs == 0 and isinstance(head, TorchHead):
            raise TlzooError(
                "--head-epochs 0 trains no head under feature-extraction; give 1 or more, or leave it out (30)."
            )
        phases = (
            [Phase("head", epochs=epochs, lr=train.lr, warmup_fraction=train.warmup_fraction, schedule=train.schedule)]
            if isinstance(head, TorchHead)
            else []
        )
        return Plan(phases=phases, extract_features=True)

    def plan_from_scratch(self, head: Head, train: Any) -> Plan | None:
        if not isinstance(head, TorchHead) or train.unfreeze == 0:  # fitted head, or a frozen backbone asked for
            return None
        return scratch_plan(train)


class FineTune(Strategy):
    name = "fine-tune"
    description = (
        "Freeze the base and train the new head, then unfreeze the top layer groups "
        "and train jointly at a lower, discriminative learning rate."
    )

    def plan(self, head: Head, train: Any) -> Plan:
        _check(train)
        if not isinstance(head, TorchHead):
            raise TlzooError(
                f"Strategy fine-tune needs a trainable head, and '{head.name}' is fitted; "
                "use --head fc or --strategy feature-extraction."
            )
        if train.unfreeze == 0 or train.unfreeze < -1:
            raise TlzooError(
                f"train.unfreeze is {train.unfreeze}, so nothing would be fine-tuned; "
                "set it to 1 or more (-1 = all groups)."
            )
        if train.gradual_unfreezing and train.unfreeze == -1:
            raise TlzooError("train.gradual_unfreezing needs a number of groups; set train.unfreeze to 2 or more.")
        phases = []
        head_epochs = train.head_epochs_or(10)
        if head_epochs > 0:
            phases.append(
                Phase(
                    "head",
                    epochs=head_epochs,
                    lr=train.lr,
                    warmup_fraction=train.warmup_fraction,
                    schedule=train.schedule,
                )
            )
        if train.gradual_unfreezing:  # thaw one more group per epoch, top first
            for k in range(1, train.unfreeze):
                phases.append(
                    Phase(
                        f"unfreeze-{k}",
                        epochs=1,
                        lr=train.finetune_lr,
                        train_groups=k,
                        lr_decay=train.lr_decay,
                        warmup_fraction=train.warmup_fraction,
                        schedule=train.schedule,
                    )
                )
        phases.append(
            Phase(
                "fine-tune",
                epochs=train.joint_epochs_or(old_epochs_of(train) or 3),
                lr=train.finetune_lr,
                train_groups=train.unfreeze,
                lr_decay=train.lr_decay,
                warmup_fraction=train.warmup_fraction,
                schedule=train.schedule,
            )
        )
        return Plan(phases=phases, extract_features=False)

    def plan_from_scratch(self, head: Head, train: Any) -> Plan | None:
        return None if user_set_plan(train) else scratch_plan(train)


@hookimpl
def tlzoo_register_strategies(register: Any) -> None:
    register(FeatureExtraction())
    register(FineTune())
