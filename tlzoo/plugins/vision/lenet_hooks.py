"""The ``lenet`` plugin's registration: LeNet-5 for small grey images.

Light on purpose (no torch): listing commands import it.  :mod:`tlzoo.plugins.vision.lenet`
loads when the backbone is built.
"""

from __future__ import annotations

from typing import Any

from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import BackboneFactory

from .._lazy import lazy
from .timm_vision_hooks import AUGMENT_HELP, AUGMENT_OPTIONS

# gentle crops and no flips, since a mirrored digit is wrong
OPTIONS: dict[str, Any] = {**AUGMENT_OPTIONS, "crop_scale": 0.6, "hflip": 0.0}  # its own model.options


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    register(
        BackboneFactory(
            name="lenet",
            modality="vision",
            create=lazy("tlzoo.plugins.vision.lenet:LeNetBackbone"),
            default_model="lenet5",
            models=("lenet5",),
            description="LeNet-5 for small grey images (trained from scratch)",
            options=OPTIONS,
            option_help=AUGMENT_HELP,
        )
    )
