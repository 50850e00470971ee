"""Feature extraction and fine-tuning, each a short plan of phases.

Fine-tuning is the classic five steps: build on the base, freeze it, train the new part
(on cached features: cheap), unfreeze the top ``train.unfreeze`` layer groups, train
jointly at a lower, discriminative learning rate.  ``train.gradual_unfreezing`` inserts
one-epoch phases that thaw one more group at a time (ULMFiT); ``train.schedule`` picks
warm-up + cosine, one-cycle, slanted-triangular or constant rates; ``train.patience``
stops a phase early on validation loss (the best weights are always restored).
"""

from __future__ import annotations

from typing import Any

from tlzoo.core.errors import TlzooError
from tlzoo.core.hookspecs import hookimpl
from tlzoo.core.interfaces import Head, Phase, Plan, Strategy, TorchHead

SCHEDULES = ("cosine", "onecycle", "slanted", "constant")


def _check(train: Any) -> None:
    if train.schedule not in SCHEDULES:
        from tlzoo.core.errors import suggest

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
        epochs = train.epochs or 30  # head on cached features: an epoch costs milliseconds
        phases = (
            [Phase("head", epochs=epochs, lr=train.lr, warmup_fraction=train.warmup_fraction, schedule=train.schedule)]
            if isinstance(head, TorchHead)
            else []
        )
        return Plan(phases=phases, extract_features=True)


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
        if train.head_epochs > 0:
            phases.append(
                Phase(
                    "head",
                    epochs=train.head_epochs,
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
                epochs=train.epochs or 3,
                lr=train.finetune_lr,
                train_groups=train.unfreeze,
                lr_decay=train.lr_decay,
                warmup_fraction=train.warmup_fraction,
                schedule=train.schedule,
            )
        )
        return Plan(phases=phases, extract_features=False)


@hookimpl
def tlzoo_register_strategies(register: Any) -> None:
    register(FeatureExtraction())
    register(FineTune())
