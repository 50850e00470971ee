"""LeNet-5 (LeCun et al. 1998) for small grey images, defined here: no library ships it.

Layers as in the paper: C1 (6 maps, 5x5) -> S2 (average pool) -> C3 (16 maps, 5x5) ->
S4 -> C5 (120 units) -> F6 (84 units), tanh activations, on 32x32 grey input.  The
84-wide F6 output is the feature vector; the new head replaces the paper's output
layer.  There are no pretrained LeNet weights anywhere, so it trains from scratch
(``--no-pretrained``) or loads ``--weights`` saved from an earlier run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tlzoo.api.interfaces import Backbone, BackboneRequest, check_options
from tlzoo.lib.vision.images import build_transforms, plain_config, to_pil
from tlzoo.lib.vision.weights import obtain

from .lenet_hooks import OPTIONS

# its own preprocessing: grey, 32x32 (digits are padded into the frame by the resize),
# pixels scaled to [-1, 1]; gentle crops and no flips, since a mirrored digit is wrong
DATA_CONFIG: dict[str, Any] = {
    "input_size": (1, 32, 32),
    "interpolation": "bilinear",
    "mean": (0.5,),
    "std": (0.5,),
    "crop_pct": 1.0,
    "crop_mode": "center",
}


class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2))  # 32 -> 28 -> 14
        self.c3 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2))  # 14 -> 10 -> 5
        self.f = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 32 or x.shape[-2] != 32:  # any --image-size still reaches C5 as 5x5
            x = nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        return self.f(self.c3(self.c1(x)))


class LeNetBackbone(Backbone):
    modality = "vision"
    num_features = 84

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        self.name = request.model
        self.model = LeNet5()
        self.weights_source, _ = obtain(self.model, request.model, request.weights, request.pretrained)
        cfg = dict(DATA_CONFIG)
        if request.image_size:
            cfg["input_size"] = (1, request.image_size, request.image_size)
        self.data_config = cfg
        options = check_options("lenet", request.options, OPTIONS)
        if not options["crop_scale"]:  # 0 -> LeNet's own gentler defaults
            options["crop_scale"] = OPTIONS["crop_scale"]
        if float(options["hflip"]) < 0:
            options["hflip"] = OPTIONS["hflip"]
        self._train_tf, self._eval_tf = build_transforms(cfg, options, request.augment)

    def preprocessing(self) -> dict[str, Any]:
        return plain_config(self.data_config)

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        tf = self._train_tf if (train and self._train_tf is not None) else self._eval_tf
        return tf(to_pil(example, mode="L"))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)

    def layer_groups(self) -> list[nn.Module]:
        return [self.model.c1, self.model.c3, self.model.f]
