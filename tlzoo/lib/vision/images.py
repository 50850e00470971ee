"""Shared image plumbing for the vision plugins: decoding, timm-style transforms, and
the ImageBackbone base class.

Every vision backbone accepts the same raw examples: an image file path, a PIL image,
a numpy array (H, W) or (H, W, C), or a lazy reference with an ``open_image()``
method (rows of an on-disk Hugging Face dataset).  Decoding happens here, inside
DataLoader workers, so memory does not grow with the dataset.  Grey, palette and RGBA
images are converted to the mode the network wants.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Backbone, BackboneRequest, check_options
from tlzoo.engine.data import image_pixel_cap
from tlzoo.lib.runtime import OnnxForward, check_runtime

# augmentation policies by short name; any other string is handed to timm as an
# auto_augment configuration (e.g. "rand-m7-n2-mstd0.5", "augmix-m5-w4", "original")
POLICIES = {"randaugment": "rand-m9-mstd0.5-inc1", "trivialaugment": "trivial"}


# Images above PIL's decompression-bomb limit (about 179 million pixels) are decoded only
# up to this many pixels, then shrunk to at most LARGE_SIDE on the long side, with a warning;
# larger ones are refused.  TLZOO_MAX_IMAGE_PIXELS raises the cap (memory: 3 bytes a pixel).
MAX_PIXELS = image_pixel_cap()
LARGE_SIDE = 4096


def to_pil(example: Any, mode: str = "RGB") -> Any:
    """Decode one raw example into a PIL image of ``mode``."""
    from PIL import Image

    if isinstance(example, (str, os.PathLike)):
        try:
            with warnings.catch_warnings():  # PIL only warns between 1x and 2x its limit: shrink those too
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(example) as im:
                    return _convert(im, mode)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return _open_large(example, mode)
        except (OSError, ValueError, SyntaxError) as exc:
            raise TlzooError(f"Cannot read image '{example}': {exc}; remove or fix the file.") from None
    if isinstance(example, Image.Image):
        return _convert(example, mode)
    opener = getattr(example, "open_image", None)
    if callable(opener):
        try:
            return _convert(opener(), mode)
        except Image.DecompressionBombError as exc:  # decoded by the datasets library: cannot be shrunk first
            raise TlzooError(
                f"Image {example!r} is too large to decode safely ({exc}); shrink the images of "
                "that dataset, or raise PIL.Image.MAX_IMAGE_PIXELS in your own script."
            ) from None
    import numpy as np

    arr = np.asarray(example)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise TlzooError(f"An image array must be (H, W) or (H, W, C); got shape {arr.shape}.")
    if arr.dtype != np.uint8:  # scale any numeric range into 0..255
        lo, hi = float(arr.min()), float(arr.max())
        arr = (255 * (arr - lo) / max(1e-8, hi - lo)).round().astype(np.uint8)
    return _convert(Image.fromarray(arr), mode)


def _open_large(path: Any, mode: str) -> Any:
    """A very large image, decoded under a pixel cap and shrunk, with a warning on stderr."""
    import sys

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        limit = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = None  # the size is checked against MAX_PIXELS below instead
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise TlzooError(
                        f"Image '{path}' is {w}x{h} pixels, over the {MAX_PIXELS:,}-pixel cap; "
                        f"shrink it (e.g. to {LARGE_SIDE} pixels on the long side) or raise "
                        "TLZOO_MAX_IMAGE_PIXELS if memory allows."
                    )
                im.draft(im.mode if im.mode in ("RGB", "L") else None, (LARGE_SIDE, LARGE_SIDE))  # JPEG: decode small
                im.thumbnail((LARGE_SIDE, LARGE_SIDE))
                small = _convert(im, mode)
        except (OSError, ValueError, SyntaxError, MemoryError) as exc:
            raise TlzooError(f"Cannot read image '{path}': {exc}; shrink or fix the file.") from None
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    if str(path) not in _WARNED:  # once per file and process: augmentation decodes it every epoch
        _WARNED.add(str(path))
        print(
            f"warning: image '{path}' is {w}x{h} pixels (over PIL's decompression-bomb limit); downscaled to "
            f"{small.size[0]}x{small.size[1]} before preprocessing; shrink large images beforehand to save time.",
            file=sys.stderr,
            flush=True,
        )
    return small


_WARNED: set[str] = set()


def _to_8bit(image: Any) -> Any:
    """A 16-bit, 32-bit or float grey image as 8-bit "L": PIL's own convert clips values over 255 to white.

    ``I;16*`` images, and ``I`` images decoded from a PNG or TIFF (16-bit grey), span 0..65535:
    divided by 257 (65535 -> 255).  Other ``I``/``F`` images keep values already in 0..255,
    scale 0..1 floats by 255, and otherwise map their own min..max onto 0..255.
    """
    import numpy as np
    from PIL import Image

    arr = np.asarray(image, dtype=np.float64)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    sixteen = image.mode.startswith("I;16") or (image.mode == "I" and getattr(image, "format", None) in ("PNG", "TIFF"))
    if sixteen and lo >= 0 and hi <= 65535:
        scaled = arr / 257.0
    elif image.mode == "F" and lo >= 0 and hi <= 1:
        scaled = arr * 255.0
    elif lo >= 0 and hi <= 255:
        scaled = arr
    else:
        scaled = (arr - lo) * (255.0 / max(hi - lo, 1e-12))
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _convert(image: Any, mode: str) -> Any:
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        if mode in ("I", "F") or image.mode == mode:
            return image.copy()
        image = _to_8bit(image)
    if image.mode == mode:
        return image.copy()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # composite transparent pixels on white rather than letting them turn black
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(mode)


#: the vision backbones' own options (``--set model.options.KEY=VALUE``): training augmentation
#: (used only when the backbone trains on augmented examples); a backbone may change the defaults.
#: Mild on purpose: ImageNet's recipe (crops down to 8 % of the image, mirror half the images)
#: cut the digit out of small images and mirrored oriented ones (digits, letters, text, road
#: signs), so the defaults keep at least 70 % of the image, near its aspect ratio, and flip only
#: on request (``hflip=0.5`` for photos of objects, where a mirror image is still the class).
AUGMENT_OPTIONS: dict[str, Any] = {"augment_policy": "", "crop_scale": 0.7, "hflip": 0.0}
#: what each of them means, for ``tl config``
AUGMENT_HELP: dict[str, str] = {
    "augment_policy": "training augmentation policy: randaugment, trivialaugment or a timm auto_augment string",
    "crop_scale": "training crops keep at least this share of the image area, in (0, 1]",
    "hflip": "probability of mirroring a training image left-right (0 = never)",
}
CROP_RATIO = (0.9, 1.1)  # training crops' aspect ratios: near the image's own, so shapes are not squashed


def augment_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """The training-augmentation knobs from the backbone's options (:data:`AUGMENT_OPTIONS`)."""
    policy = str(options.get("augment_policy") or "").strip()
    # 0 / negative / absent mean "the default"
    scale = float(options.get("crop_scale") or 0) or AUGMENT_OPTIONS["crop_scale"]
    raw_flip = options.get("hflip")
    hflip = AUGMENT_OPTIONS["hflip"] if raw_flip is None or float(raw_flip) < 0 else float(raw_flip)
    if not 0 < scale <= 1:
        raise TlzooError(f"model.options.crop_scale must be in (0, 1], got {scale}.")
    if hflip > 1:
        raise TlzooError(f"model.options.hflip must be a probability in [0, 1], got {hflip}.")
    return {"policy": POLICIES.get(policy.lower(), policy), "scale": scale, "hflip": hflip}


def build_transforms(data_config: dict[str, Any], options: Mapping[str, Any], augment: bool = False) -> tuple[Any, Any]:
    """(training transform or None, evaluation transform) from a timm data config.

    Evaluation: resize to ``input_size / crop_pct`` then centre-crop, exactly as the
    weights were evaluated.  Training (only when ``augment``, the request's field):
    random-resized crop (at least ``crop_scale`` of the area, aspect ratio in
    :data:`CROP_RATIO`), a flip with probability ``hflip`` (default none) and timm's colour
    jitter, plus RandAugment / TrivialAugment / any timm auto_augment on request
    (``options``: :data:`AUGMENT_OPTIONS`).
    """
    from timm.data import create_transform

    cfg: dict[str, Any] = {
        k: data_config[k]
        for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        if k in data_config
    }
    eval_tf = create_transform(**cfg, is_training=False)
    if not augment:
        return None, eval_tf
    aug = augment_settings(options)
    train_cfg = {k: v for k, v in cfg.items() if k not in ("crop_pct", "crop_mode")}
    common: dict[str, Any] = {**train_cfg, "is_training": True, "scale": (aug["scale"], 1.0), "hflip": aug["hflip"]}
    common["ratio"] = CROP_RATIO
    if aug["policy"] == "trivial":
        from torchvision import transforms

        primary, _colour, final = create_transform(**common, separate=True)
        return transforms.Compose([primary, transforms.TrivialAugmentWide(), final]), eval_tf
    try:
        train_tf = create_transform(**common, auto_augment=aug["policy"] or None)
    except Exception as exc:  # timm asserts on a malformed policy string
        raise TlzooError(
            f"Unknown augmentation policy '{aug['policy']}' ({exc}); use randaugment, "
            "trivialaugment or a timm auto_augment string such as rand-m9-mstd0.5."
        ) from None
    return train_tf, eval_tf


def plain_config(data_config: dict[str, Any]) -> dict[str, Any]:
    """A JSON-able copy of a timm data config (tuples to lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()}


class ImageBackbone(Backbone):
    """What the ImageNet-style vision backbones share: decoding, the weights' own
    transforms (``self.data_config``), and ``self.model`` returning pooled features."""

    modality = "vision"
    model: nn.Module  # set by the subclass: images -> pooled features
    data_config: dict[str, Any]
    _train_tf: Any = None
    _eval_tf: Any = None
    runtime: str = "torch"  # model.options.runtime (tlzoo.lib.runtime)
    _onnx: OnnxForward | None = None

    def set_preprocessing(
        self, data_config: dict[str, Any], request: BackboneRequest, defaults: Mapping[str, Any] = AUGMENT_OPTIONS
    ) -> None:
        """Use the weights' data config; ``request.image_size`` overrides only the input size, and
        ``request.augment`` with the options (checked against ``defaults``) sets the training transform."""
        options = check_options(self.plugin or self.name, request.options, {"runtime": "torch", **defaults})
        self.runtime = check_runtime(options["runtime"], self.plugin or self.name)
        if request.image_size:
            data_config = {**data_config, "input_size": (3, request.image_size, request.image_size)}
        self.data_config = data_config
        self._train_tf, self._eval_tf = build_transforms(data_config, options, request.augment)

    def preprocessing(self) -> dict[str, Any]:
        runtime = {"runtime": self.runtime} if self.runtime != "torch" else {}  # torch: the keys of 0.1
        return {**plain_config(self.data_config), **runtime}

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        tf = self._train_tf if (train and self._train_tf is not None) else self._eval_tf
        return tf(to_pil(example))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.runtime == "onnx":
            if self._onnx is None:
                self._onnx = OnnxForward(self.model, self.model, ("images",), {"images": [0]})
            if self._onnx.serves((batch,)):
                return self._onnx(batch)
        if batch.dim() == 4 and not torch.is_grad_enabled():
            # channels_last input: oneDNN's fast convolution path on CPU (efficientnet_lite0, 224 px,
            # 2 threads: 1.3-1.7x); the weights keep their layout, so nothing saved changes
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.model(batch)
