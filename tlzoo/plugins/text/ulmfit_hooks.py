"""The ``ulmfit`` plugin's registration: the AWD-LSTM backbone, its pretrainer and the strategy.

Light on purpose (no torch): listing commands import it.  The strategy is plain Python and
lives here; :mod:`tlzoo.plugins.text.ulmfit` (the network) loads when a backbone is built or
``tl pretrain --plugin ulmfit`` runs.
"""

from __future__ import annotations

from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import (
    BackboneFactory,
    Head,
    LanguageModelBackbone,
    Phase,
    Plan,
    Strategy,
    StrategyContext,
    TorchHead,
)

from .._lazy import LazyPretrainer, lazy


# --------------------------------------------------------------------------- strategy
class UlmfitStrategy(Strategy):
    name = "ulmfit"
    description = (
        "ULMFiT: fine-tune the language model on the training texts, then the classifier with "
        "gradual unfreezing, discriminative (/2.6 per group) and slanted triangular learning rates."
    )
    groups = 4  # unfreezing steps planned before the backbone exists; extra steps unfreeze everything

    def plan(self, head: Head, train: Any) -> Plan:
        if not isinstance(head, TorchHead):
            raise TlzooError(f"Strategy ulmfit needs a trainable head, and '{head.name}' is fitted; use --head fc.")
        decay = 1 / 2.6
        phases = [Phase("head", epochs=max(1, train.head_epochs_or(10)), lr=train.lr, schedule="slanted")]
        for k in range(1, self.groups):  # one more layer group learns at each step, at half the rate
            phases.append(
                Phase(
                    f"unfreeze-{k}",
                    epochs=1,
                    lr=train.lr * 0.5 ** (k - 1),
                    train_groups=k,
                    lr_decay=decay,
                    schedule="slanted",
                )
            )
        phases.append(
            Phase(
                "unfreeze-all",
                epochs=train.joint_epochs_or(getattr(train, "_old_epochs", 0) or 2),
                lr=train.lr * 0.5 ** (self.groups - 1),
                train_groups=-1,
                lr_decay=decay,
                schedule="slanted",
            )
        )
        return Plan(phases=phases, extract_features=False)

    def before_training(self, ctx: StrategyContext) -> None:
        bb = ctx.backbone
        if not isinstance(bb, LanguageModelBackbone):
            raise TlzooError(
                f"Strategy ulmfit needs a language-model backbone (--plugin ulmfit or elmo), "
                f"not {bb.name}; use --strategy fine-tune."
            )
        epochs = int(ctx.train.lm_epochs)
        if epochs <= 0:
            ctx.log("  ulmfit stage 2 skipped (train.lm_epochs = 0)")
            return
        ctx.log(
            f"  ulmfit stage 2: language-model fine-tuning on the {len(ctx.train_set)} training texts "
            f"(test texts never seen), {epochs} epoch{'s' * (epochs != 1)}"
        )

        def record(row: dict[str, Any]) -> None:
            ctx.record(
                {
                    k: row[k]
                    for k in (
                        "phase",
                        "epoch",
                        "train_loss",
                        "train_accuracy",
                        "val_loss",
                        "val_accuracy",
                        "lr",
                        "seconds",
                    )
                    if k in row
                }
            )

        bb.finetune_language_model(
            list(ctx.train_set.examples),
            list(ctx.val_set.examples),
            epochs=epochs,
            lr=ctx.train.lr,
            batch_size=ctx.train.batch_size,
            seed=ctx.seed,
            device=ctx.device,
            log=ctx.log,
            on_epoch=record,
        )


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    register(
        BackboneFactory(
            name="ulmfit",
            modality="text",
            create=lazy("tlzoo.plugins.text.ulmfit:UlmfitBackbone"),
            default_model="ulmfit",
            models=("ulmfit",),
            description="ULMFiT AWD-LSTM language model; pretrain with `tl pretrain --plugin ulmfit`",
        )
    )


@hookimpl
def tlzoo_register_pretrainers(register: Any) -> None:
    register(LazyPretrainer("ulmfit", "tlzoo.plugins.text.ulmfit:UlmfitPretrainer"))


@hookimpl
def tlzoo_register_strategies(register: Any) -> None:
    register(UlmfitStrategy())
