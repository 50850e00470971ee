"""The PNGs a person looks at: training curves and the confusion matrix."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Accuracy and loss per epoch, training vs validation, phases marked."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.arange(1, len(rows) + 1)
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for split, style in (("train", "-o"), ("val", "-s")):
            ys = [_num(r.get(f"{split}_{metric}")) for r in rows]
            if any(y is not None for y in ys):
                ax.plot(x, [np.nan if y is None else y for y in ys], style, ms=4,
                        label="training" if split == "train" else "validation")
        # phase boundaries
        for i in range(1, len(rows)):
            if rows[i]["phase"] != rows[i - 1]["phase"]:
                ax.axvline(i + 0.5, color="grey", ls=":", lw=1)
        for i, r in enumerate(rows):
            if i == 0 or r["phase"] != rows[i - 1]["phase"]:
                ax.annotate(str(r["phase"]), (i + 1, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(2, -12), textcoords="offset points", fontsize=8, color="grey")
        ax.set_xlabel("epoch (all phases)")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric.capitalize()}")
        ax.grid(alpha=0.3)
        ax.legend()
        if len(x) <= 20:
            ax.set_xticks(x)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str = "") -> None:
    """Counts, with each row coloured by its share (recall) so small classes stay visible."""
    plt = _plt()
    cm = np.asarray(cm)
    n = len(classes)
    size = max(4.5, 0.55 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=9 if n <= 12 else 7,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(cm) / max(1, cm.sum())
    ax.set_title((title + "\n" if title else "") + f"test accuracy {acc:.3f} (n={cm.sum()})")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
