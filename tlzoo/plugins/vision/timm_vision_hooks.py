"""The ``timm_vision`` plugin's registration: the timm families (``efficientnet``, ``resnet``, ``vit``, ...).

Light on purpose (no torch, no timm): listing commands import it.  :mod:`tlzoo.plugins.vision.timm_vision`
loads when one of these backbones is built.
"""

from __future__ import annotations

import sys
from typing import Any

from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import BackboneFactory
from tlzoo.api.steps import TRAIN, step_wrapper

from .._lazy import lazy

# tlzoo.lib.vision.images.AUGMENT_OPTIONS, which imports torch; this torch-free copy is what the
# vision built-ins register (tests/system/test_startup.py checks that the two agree)
AUGMENT_OPTIONS: dict[str, Any] = {"augment_policy": "", "crop_scale": 0.7, "hflip": 0.0}
AUGMENT_HELP: dict[str, str] = {  # tlzoo.lib.vision.images.AUGMENT_HELP, for `tl config`
    "augment_policy": "training augmentation policy: randaugment, trivialaugment or a timm auto_augment string",
    "crop_scale": "training crops keep at least this share of the image area, in (0, 1]",
    "hflip": "probability of mirroring a training image left-right (0 = never)",
}

# the timm families' model.options: augmentation, and the extraction runtime (tlzoo.lib.runtime)
OPTIONS: dict[str, Any] = {**AUGMENT_OPTIONS, "runtime": "torch"}
HELP: dict[str, str] = {
    **AUGMENT_HELP,
    "runtime": "feature extraction runtime on the CPU: torch, or onnx (ONNX Runtime, about 2x faster, same features)",
}

# family -> (default model, models); googlenet joins inception from torchvision_models.py
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "vgg": ("vgg16", ("vgg16", "vgg19")),
    "resnet": ("resnet50", ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")),
    "densenet": ("densenet121", ("densenet121", "densenet161", "densenet201")),
    "mobilenet": (
        "mobilenetv2_100",
        ("mobilenetv1_100", "mobilenetv2_100", "mobilenetv3_large_100", "mobilenetv3_small_100"),
    ),
    "nasnet": ("nasnetalarge", ("nasnetalarge",)),
    "inception": ("inception_v3", ("inception_v3", "googlenet")),
    "efficientnet": ("efficientnet_lite0", ("efficientnet_lite0", *(f"efficientnet_b{i}" for i in range(8)))),
    "xception": ("xception", ("xception", "xception41", "xception65", "xception71")),
    "vit": ("vit_base_patch16_224", tuple(f"vit_{s}_patch16_224" for s in ("tiny", "small", "base"))),
    "deit": ("deit_base_patch16_224", tuple(f"deit_{s}_patch16_224" for s in ("tiny", "small", "base"))),
    "clip": ("clip_vit_b32", ("clip_vit_b32", "clip_vit_b16", "clip_vit_l14")),
    "convnext": ("convnext_tiny", tuple(f"convnext_{s}" for s in ("atto", "nano", "tiny", "small", "base"))),
    "efficientnetv2": ("efficientnetv2_s", tuple(f"efficientnetv2_{s}" for s in ("b0", "b3", "s", "m"))),
    "regnet": ("regnety_032", ("regnetx_002", "regnety_008", "regnety_016", "regnety_032", "regnety_040")),
}

DESCRIPTIONS = {
    "vgg": "VGG-16/19 (timm): plain 3x3 conv stacks",
    "resnet": "ResNet-18 ... 152 (timm): residual networks",
    "densenet": "DenseNet-121/161/201 (timm): densely connected blocks",
    "mobilenet": "MobileNet v1/v2/v3 (timm): depthwise-separable, for phones",
    "nasnet": "NASNet-A Large (timm): architecture found by search",
    "inception": "Inception-v3 (timm) and GoogLeNet (torchvision)",
    "efficientnet": "EfficientNet-B0 ... B7 and Lite0 (timm)",
    "xception": "Xception (Keras, timm's legacy_xception) and Xception-41/65/71 (timm)",
    "vit": "Vision Transformer ViT-Ti/S/B, patch 16 (timm, AugReg ImageNet-21k -> 1k)",
    "deit": "DeiT-Ti/S/B, patch 16 (timm): data-efficient ViTs trained on ImageNet-1k",
    "clip": "CLIP image encoders ViT-B/32, B/16, L/14 (timm, OpenAI weights)",
    "convnext": "ConvNeXt atto ... base (timm): a CNN modernised after the ViTs",
    "efficientnetv2": "EfficientNetV2-B0/B3/S/M (timm, TensorFlow weights): faster training EfficientNets",
    "regnet": "RegNetX/Y 200MF ... 4GF (timm): designed network spaces",
}


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    create = lazy("tlzoo.plugins.vision.timm_vision:create")
    weights_files = lazy("tlzoo.plugins.vision.timm_vision:weights_files")
    for family, (default, models) in FAMILIES.items():
        register(
            BackboneFactory(
                name=family,
                modality="vision",
                create=create,
                weights_files=weights_files,
                default_model=default,
                models=models,
                description=DESCRIPTIONS[family],
                options=OPTIONS,
                option_help=HELP,
            )
        )


@step_wrapper(TRAIN)
def onnx_cost(run: Any) -> Any:
    """--runtime onnx: the log says that ONNX Runtime ran the extraction, and what it cost."""
    result = yield
    module = sys.modules.get("tlzoo.lib.vision.images")  # loaded once such a backbone exists; no other run needs it
    if module is not None and isinstance(getattr(run, "backbone", None), module.ImageBackbone):
        from tlzoo.lib.runtime import onnx_report

        line = onnx_report(run.backbone)
        if line:
            run.log(line)
    return result
