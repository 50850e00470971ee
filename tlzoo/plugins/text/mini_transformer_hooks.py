"""The ``mini_transformer`` plugin's registration: the ``transformer`` backbone and its pretrainer.

Light on purpose (no torch): listing commands import it.  :mod:`tlzoo.plugins.text.mini_transformer`
loads when the backbone is built or ``tl pretrain --plugin transformer`` runs.
"""

from __future__ import annotations

from typing import Any

from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import BackboneFactory

from .._lazy import LazyPretrainer, lazy

ARCH_DEFAULTS: dict[str, Any] = {"dim": 128, "layers": 2, "heads": 4, "ff": 512, "max_length": 128, "dropout": 0.1}
# the plugin's own model.options (max_length is the engine's --max-length); they apply without --weights only
DEFAULTS: dict[str, Any] = {**{k: v for k, v in ARCH_DEFAULTS.items() if k != "max_length"}, "vocab_size": 20000}
HELP: dict[str, str] = {  # the architecture of a new encoder; --weights brings its own
    "dim": "without --weights: width of the token states",
    "layers": "without --weights: Transformer layers",
    "heads": "without --weights: attention heads per layer",
    "ff": "without --weights: units of each feed-forward block",
    "dropout": "without --weights: dropout in the encoder",
    "vocab_size": "without --weights: words in the vocabulary",
}


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    register(
        BackboneFactory(
            name="transformer",
            modality="text",
            create=lazy("tlzoo.plugins.text.mini_transformer:MiniTransformerBackbone"),
            default_model="mini-transformer",
            models=("mini-transformer",),
            options=DEFAULTS,
            option_help=HELP,
            description="a small Transformer encoder pretrained by `tl pretrain --plugin transformer` (masked LM)",
        )
    )


@hookimpl
def tlzoo_register_pretrainers(register: Any) -> None:
    register(LazyPretrainer("transformer", "tlzoo.plugins.text.mini_transformer:MLMPretrainer"))
