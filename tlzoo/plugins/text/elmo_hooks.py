"""The ``elmo`` plugin's registration: the backbone and its pretrainer.

Light on purpose (no torch): listing commands import it.  :mod:`tlzoo.plugins.text.elmo`
loads when an ELMo backbone is built or ``tl pretrain --plugin elmo`` runs.
"""

from __future__ import annotations

from typing import Any

from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import BackboneFactory

from .._lazy import LazyPretrainer, lazy


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    register(
        BackboneFactory(
            name="elmo",
            modality="text",
            create=lazy("tlzoo.plugins.text.elmo:ElmoBackbone"),
            default_model="elmo",
            models=("elmo",),
            description="ELMo: char-CNN + biLSTM LM, scalar mix of layers; pretrain with `tl pretrain --plugin elmo`",
        )
    )


@hookimpl
def tlzoo_register_pretrainers(register: Any) -> None:
    register(LazyPretrainer("elmo", "tlzoo.plugins.text.elmo:ElmoPretrainer"))
