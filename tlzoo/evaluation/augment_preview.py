"""``augment.png``: what the network was shown while training, so a person can judge it.

Each row is one training example: first as evaluation sees it (no augmentation), then
several independent draws of the training transform.  Tensors come straight from the
backbone's own ``transform`` and are un-normalised with its ``preprocessing()`` mean
and std, so the picture is exactly the network's input, not a re-creation of it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlzoo.api.interfaces import Backbone


def _to_image(x: Any, mean: Sequence[float], std: Sequence[float]) -> np.ndarray | None:
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        return None  # not an image tensor (C, H, W): nothing to show
    c = x.shape[0]
    m = torch.tensor(list(mean)[:c] or [0.0] * c, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(list(std)[:c] or [1.0] * c, dtype=torch.float32).view(-1, 1, 1)
    img = (x.float() * s + m).clamp(0, 1).permute(1, 2, 0).numpy()
    return img[..., 0] if c == 1 else img


def save_augment_grid(
    backbone: Backbone,
    examples: Sequence[Any],
    path: Path,
    labels: Sequence[str] = (),
    rows: int = 6,
    draws: int = 5,
    seed: int = 0,
) -> bool:
    """Write the grid; returns False (and writes nothing) when the inputs are not images."""
    if not examples:
        return False
    pre = backbone.preprocessing()
    mean, std = pre.get("mean", ()), pre.get("std", ())
    rng = random.Random(seed)
    picks = rng.sample(range(len(examples)), min(rows, len(examples)))
    # the transforms draw from torch's and python's global generators: keep the run's
    # random stream exactly where it was, so the preview never changes the training
    torch_state, py_state, np_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
    try:
        torch.manual_seed(seed)
        views = [
            [_to_image(backbone.transform(examples[i], train=t), mean, std) for t in (False, *([True] * draws))]
            for i in picks
        ]
    finally:
        torch.set_rng_state(torch_state)
        random.setstate(py_state)
        np.random.set_state(np_state)
    if any(img is None for row in views for img in row):
        return False
    grid = [[img for img in row if img is not None] for row in views]  # all of them, as arrays
    from tlzoo.evaluation.plots import _plt

    plt = _plt()
    fig, axes = plt.subplots(len(grid), draws + 1, figsize=(1.7 * (draws + 1), 1.8 * len(grid)), squeeze=False)
    for r, (i, row) in enumerate(zip(picks, grid)):
        for c, img in enumerate(row):
            ax = axes[r][c]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("evaluation view" if c == 0 else f"training draw {c}", fontsize=8)
        if labels:
            axes[r][0].set_ylabel(str(labels[i])[:14], fontsize=8)
    h, w = grid[0][0].shape[:2]
    fig.suptitle(f"{backbone.name}: augmented training inputs ({w}x{h} px, as the network sees them)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
