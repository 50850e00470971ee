"""``series``: a backbone for a kind of input tlzoo has never heard of: a sequence of numbers.

Its modality is ``"sequence"``.  tlzoo's engine knows vision and text; it needs to know nothing
more, because in a fused run (``tl run --plugin image=pixels --plugin readings=series ...``) the
``fusion`` backbone hands each column's cell to that column's backbone as it is, and asks the
backbone for features.  A cell reads "0.5 1.25 -2" (numbers separated by spaces, commas or
semicolons); a list or array of numbers works too; an empty cell is an empty sequence (the fused
run flags it as missing and zeroes its features).

Features, per sequence (its first ``length`` numbers, default 64): five summary statistics (mean,
standard deviation, minimum, maximum, the slope of a least-squares line) and, from one small 1-D
convolution with ``channels`` filters of width 5, the mean and the maximum of each filter's
response: ``5 + 2 * channels`` numbers.  The filters start from a generator seeded by the
``seed`` option, so two builds agree without any weights file; fine-tuning trains them (one layer
group).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo import Backbone, BackboneRequest, TlzooError, check_options

from .plugin import (
    SERIES_DEFAULTS as DEFAULTS,
    series_factory as series_factory,  # the factory lives in the light hooks module
)

_SEPARATORS = re.compile(r"[\s,;]+")


def parse_series(cell: Any) -> np.ndarray:
    """A cell's numbers as float32 (empty: no numbers); a non-number is a one-line error naming it."""
    if cell is None:
        return np.zeros(0, np.float32)
    if isinstance(cell, list | tuple | np.ndarray):
        return np.asarray(cell, dtype=np.float32).reshape(-1)
    parts = [p for p in _SEPARATORS.split(str(cell).strip()) if p]
    try:
        values = np.array([float(p) for p in parts], dtype=np.float32)
    except ValueError:
        bad = next(p for p in parts if not _is_number(p))
        raise TlzooError(
            f"series: '{bad}' in '{str(cell)[:40]}' is not a number; give numbers separated by spaces or commas."
        ) from None
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class SeriesBackbone(Backbone):
    modality = "sequence"
    weights_source = "none (filters from a seeded generator; summary statistics)"

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        if request.model != "series-conv":
            raise TlzooError(f"Unknown series model '{request.model}'; use series-conv.")
        opts = check_options("series", request.options, DEFAULTS)
        self.name = request.model
        self.length, self.channels, self.seed = int(opts["length"]), int(opts["channels"]), int(opts["seed"])
        if self.length < 5 or self.channels < 1:
            raise TlzooError("series: length must be at least 5 and channels at least 1.")
        self.conv = nn.Conv1d(1, self.channels, kernel_size=5, padding=2)
        gen = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen) * 0.3)
            nn.init.zeros_(self.conv.bias)  # type: ignore[arg-type]
        self.num_features = 5 + 2 * self.channels

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        """Row 0: the first ``length`` numbers, zero-padded; row 1: 1 where a number was given."""
        values = parse_series(example)[: self.length]
        out = torch.zeros(2, self.length)
        out[0, : len(values)] = torch.from_numpy(values.copy())
        out[1, : len(values)] = 1.0
        return out

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x, mask = batch[:, 0].float(), batch[:, 1].float()
        count = mask.sum(1, keepdim=True).clamp(min=1.0)
        mean = (x * mask).sum(1, keepdim=True) / count
        sd = (((x - mean) * mask) ** 2).sum(1, keepdim=True).div(count).sqrt()
        big = torch.finfo(x.dtype).max
        given = mask.sum(1, keepdim=True) > 0  # an empty sequence: 0 for its minimum and maximum
        lo = torch.where(given, torch.where(mask > 0, x, big).amin(1, keepdim=True), 0.0)
        hi = torch.where(given, torch.where(mask > 0, x, -big).amax(1, keepdim=True), 0.0)
        t = torch.arange(self.length, dtype=x.dtype, device=x.device).expand_as(x)
        t_mean = (t * mask).sum(1, keepdim=True) / count
        slope = ((t - t_mean) * (x - mean) * mask).sum(1, keepdim=True)
        slope = slope / (((t - t_mean) ** 2) * mask).sum(1, keepdim=True).clamp(min=1e-6)
        response = torch.relu(self.conv(x.unsqueeze(1)))  # (batch, channels, length)
        m = mask.unsqueeze(1)
        pooled_mean = (response * m).sum(2) / count
        pooled_max = (response * m).amax(2)
        return torch.cat([mean, sd, lo, hi, slope, pooled_mean, pooled_max], dim=1)

    def layer_groups(self) -> list[nn.Module]:
        return [self.conv]

    def preprocessing(self) -> dict[str, Any]:
        return {"length": self.length, "parse": "numbers separated by spaces, commas or semicolons", "pad": 0.0}
