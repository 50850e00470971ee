"""``pixels``: a vision backbone with nothing to learn: the image resized and flattened.

The image (any raw example tlzoo's vision data sources give: a path, a PIL image, an
array) is converted to grey (or kept RGB with ``--set model.options.grey=false``),
resized to ``size`` x ``size`` (``pixels-32`` and ``pixels-16``; ``--image-size`` overrides)
with bilinear filtering, scaled to [0, 1] and flattened.  No parameters, no layer groups,
no fitted state: the floor any transferred representation should beat, and the smallest
backbone a plugin can be.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo import Backbone, BackboneRequest, TlzooError, check_options

from .plugin import (
    PIXELS_DEFAULTS as DEFAULTS,
    PIXELS_SIZES as SIZES,
    pixels_factory as pixels_factory,  # the factory lives in the light hooks module
)


class RawPixelsBackbone(Backbone):
    modality = "vision"
    weights_source = "none (raw pixels)"

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        if request.model not in SIZES:
            raise TlzooError(f"Unknown pixels model '{request.model}'; use {' or '.join(SIZES)}.")
        self.name = request.model
        self.grey = bool(check_options("pixels", request.options, DEFAULTS)["grey"])
        self.size = request.image_size or SIZES[request.model]
        self.num_features = self.size * self.size * (1 if self.grey else 3)

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        from PIL import Image

        from tlzoo.lib.vision.images import to_pil

        image = to_pil(example, mode="L" if self.grey else "RGB")
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(image, dtype=np.float32).reshape(-1) / 255.0)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.float()

    def layer_groups(self) -> list[nn.Module]:
        return []  # parameter-free

    def preprocessing(self) -> dict[str, Any]:
        return {"size": self.size, "mode": "L" if self.grey else "RGB", "resize": "bilinear", "scale": "1/255"}
