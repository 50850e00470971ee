"""AlexNet and GoogLeNet from torchvision (timm has neither).

``alexnet`` is its own family; ``googlenet`` is a member of the ``inception`` family,
whose factory (in timm_vision.py) hands it to :class:`TorchvisionBackbone`.  Weights
follow the order in vision_weights.py; the hub is torchvision's download URL (or the
copy torch.hub already cached).  Preprocessing comes from the weights' own
``transforms()`` (resize 256, centre-crop 224, ImageNet mean/std, bilinear).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from tlzoo.api.interfaces import BackboneRequest
from tlzoo.infra import network
from tlzoo.lib.vision.images import ImageBackbone
from tlzoo.lib.vision.weights import Loaded, missing_weights, network_refusal, obtain, probe_early, save_to_cache

MODELS = ("alexnet", "googlenet")


def _weights_enum(name: str) -> Any:
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT


def _data_config(name: str) -> dict[str, Any]:
    """torchvision's ImageClassification preset, as a timm data config."""
    preset = _weights_enum(name).transforms()
    crop, resize = int(preset.crop_size[0]), int(preset.resize_size[0])
    return {
        "input_size": (3, crop, crop),
        "interpolation": preset.interpolation.value,
        "mean": tuple(preset.mean),
        "std": tuple(preset.std),
        "crop_pct": crop / resize,
        "crop_mode": "center",
    }


def _build(name: str) -> nn.Module:
    import torchvision

    if name == "alexnet":
        return torchvision.models.alexnet(weights=None)
    # the ImageNet weights expect transform_input (they were ported from TensorFlow);
    # the auxiliary classifiers only matter for training GoogLeNet on ImageNet itself
    return torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=True)


def _from_hub(name: str) -> Loaded:
    weights = _weights_enum(name)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    with network.hub_access(weights.url) as why:  # torch.hub's own download has no timeout at all
        if why and not os.path.isfile(cached):
            raise missing_weights(name, why=why)
        state = weights.get_state_dict(progress=False)
    return Loaded(_drop_aux(state), f"hub {weights.url}", _data_config(name))


def _drop_aux(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GoogLeNet checkpoints carry the auxiliary ImageNet classifiers, which tlzoo never builds."""
    return {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}


class TorchvisionBackbone(ImageBackbone):
    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        self.name = request.model
        probe_early(request.model, request.weights, request.pretrained)  # torchvision's import is slow
        model = _build(request.model)
        self.weights_source, cfg = obtain(
            model,
            request.model,
            request.weights,
            request.pretrained,
            hub=lambda: _from_hub(request.model),
            adapt=_drop_aux,
        )
        if request.model == "alexnet":
            assert isinstance(model.classifier, nn.Sequential)
            model.classifier = model.classifier[:-1]  # keep fc6/fc7: 4096-wide features
            self.num_features = 4096
        else:
            model.fc = nn.Identity()
            self.num_features = 1024
        self.model = model
        self.set_preprocessing(dict(cfg) if cfg else _data_config(request.model), request)

    def layer_groups(self) -> list[nn.Module]:
        m: Any = self.model
        if self.name == "alexnet":  # conv1 | conv2 | conv3-5 | fc6-7
            f = m.features
            return [f[0:3], f[3:6], f[6:], m.classifier]
        return [
            nn.ModuleList([m.conv1, m.conv2, m.conv3]),
            nn.ModuleList([m.inception3a, m.inception3b]),
            nn.ModuleList([m.inception4a, m.inception4b, m.inception4c, m.inception4d, m.inception4e]),
            nn.ModuleList([m.inception5a, m.inception5b]),
        ]


def pull(name: str) -> str:
    weights = _weights_enum(name)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    why = "" if os.path.isfile(cached) else network.unreachable(weights.url)
    if why:
        raise network_refusal(name, why)
    try:
        found = _from_hub(name)
    except Exception as exc:
        from tlzoo.api.errors import TlzooError

        if isinstance(exc, TlzooError):
            raise
        raise TlzooError(f"Could not download '{name}' ({type(exc).__name__}); `tl pull` needs the network.") from None
    return str(save_to_cache(name, found.state, found.config, found.source))
