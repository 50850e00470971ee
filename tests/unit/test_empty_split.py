"""An empty split (``--val-fraction 0``) extracts to zero rows without running the backbone (issue 17 §1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tlzoo.api.data import Dataset
from tlzoo.api.interfaces import Backbone
from tlzoo.engine.extraction import extract
from tlzoo.engine.features import FeatureCache


class _Strict(Backbone):
    """Like a tokenizer-based backbone: ordering an empty list of texts raises IndexError."""

    modality, num_features, weights_source, name = "text", 3, "none", "strict"

    def extraction_order(self, examples: list[Any]) -> list[int] | None:
        if not examples:
            raise IndexError("list index out of range")
        return None

    def transform(self, example: Any, train: bool) -> Any:
        return torch.tensor([float(len(example)), 1.0, 0.0])

    def forward(self, batch: Any) -> torch.Tensor:
        return batch

    def layer_groups(self) -> list[nn.Module]:
        return []


@pytest.mark.parametrize("cached", [False, True])
def test_an_empty_split_gives_zero_rows_of_the_backbone_width(tmp_path: Path, cached: bool) -> None:
    empty = Dataset(examples=[], labels=[], modality="text", name="val")
    cache = FeatureCache(tmp_path) if cached else None
    feats = extract(_Strict(), empty, batch_size=4, device=torch.device("cpu"), cache=cache, progress=False, log=print)
    assert feats.shape == (0, 3)
    full = Dataset(examples=["ab", "abc"], labels=["x", "y"], modality="text", name="train")
    got = extract(_Strict(), full, batch_size=4, device=torch.device("cpu"), cache=cache, progress=False, log=print)
    assert got[:, 0].tolist() == [2.0, 3.0]  # the non-empty split still runs the backbone
