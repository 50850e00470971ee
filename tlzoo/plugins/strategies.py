"""Feature extraction and fine-tuning, each a short plan of phases."""
from __future__ import annotations

from typing import Any

from tlzoo.core.errors import TlzooError
from tlzoo.core.hookspecs import hookimpl
from tlzoo.core.interfaces import Head, Phase, Plan, Strategy


class FeatureExtraction(Strategy):
    name = "feature-extraction"
    description = "Frozen backbone; features extracted once (cached) feed a new head."

    def plan(self, head: Head, train: Any) -> Plan:
        epochs = train.epochs or 30  # head on cached features: an epoch costs milliseconds
        phases = [Phase("head", epochs=epochs, lr=train.lr)] if head.trainable else []
        return Plan(phases=phases, extract_features=True)


class FineTune(Strategy):
    name = "fine-tune"
    description = ("Freeze the base and train the new head, then unfreeze the top layer groups "
                   "and train jointly at a lower, discriminative learning rate.")

    def plan(self, head: Head, train: Any) -> Plan:
        if not head.trainable:
            raise TlzooError(f"Strategy fine-tune needs a trainable head, and '{head.name}' is fitted; "
                             "use --head fc or --strategy feature-extraction.")
        if train.unfreeze == 0:
            raise TlzooError("train.unfreeze is 0, so nothing would be fine-tuned; set it to 1 or more (-1 = all groups).")
        phases = []
        if train.head_epochs > 0:
            phases.append(Phase("head", epochs=train.head_epochs, lr=train.lr))
        phases.append(Phase("fine-tune", epochs=train.epochs or 3, lr=train.finetune_lr, train_groups=train.unfreeze,
                            lr_decay=train.lr_decay, warmup_fraction=train.warmup_fraction))
        return Plan(phases=phases, extract_features=False)


@hookimpl
def tlzoo_register_strategies(register: Any) -> None:
    register(FeatureExtraction())
    register(FineTune())
