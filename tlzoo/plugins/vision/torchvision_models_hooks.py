"""The ``torchvision_models`` plugin's registration: ``alexnet`` (GoogLeNet joins the inception family).

Light on purpose (no torch): listing commands import it.  :mod:`tlzoo.plugins.vision.torchvision_models`
loads when the backbone is built.
"""

from __future__ import annotations

from typing import Any

from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import BackboneFactory

from .._lazy import lazy
from .timm_vision_hooks import AUGMENT_HELP, AUGMENT_OPTIONS


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    register(
        BackboneFactory(
            name="alexnet",
            modality="vision",
            create=lazy("tlzoo.plugins.vision.torchvision_models:TorchvisionBackbone"),
            default_model="alexnet",
            models=("alexnet",),
            description="AlexNet (torchvision): the 2012 ImageNet winner",
            options=AUGMENT_OPTIONS,
            option_help=AUGMENT_HELP,
        )
    )
