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
    """Accuracy and loss per epoch, training vs validation, phases marked.

    Language-model phases (``lm-*``, e.g. ULMFiT's LM fine-tuning) measure next-word
    prediction, not the classification task, so they get a panel of their own instead
    of squashing the classifier's curves.
    """
    plt = _plt()
    lm = [r for r in rows if str(r["phase"]).startswith("lm-")]
    clf = [r for r in rows if not str(r["phase"]).startswith("lm-")]
    panels = ([("accuracy", clf), ("loss", clf)] if clf else []) + ([("language-model loss", lm)] if lm else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.4), squeeze=False, layout="constrained")
    for ax, (name, part) in zip(axes[0], panels):
        metric = "loss" if "loss" in name else "accuracy"
        x = np.arange(1, len(part) + 1)
        for split, style in (("train", "-o"), ("val", "-s")):
            ys = [_num(r.get(f"{split}_{metric}")) for r in part]
            if any(y is not None for y in ys):
                ax.plot(
                    x,
                    [np.nan if y is None else y for y in ys],
                    style,
                    ms=4,
                    label="training" if split == "train" else "validation",
                )
        _mark_phases(ax, part)
        ax.set_xlabel("epoch (all phases)")
        ax.set_ylabel(metric)
        ax.set_title(name[0].upper() + name[1:])
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
        if len(x) <= 20:
            ax.set_xticks(x)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mark_phases(ax: Any, rows: list[dict[str, Any]]) -> None:
    """A dotted line where a phase starts and its name written upwards beside it."""
    for i, r in enumerate(rows):
        if i and r["phase"] != rows[i - 1]["phase"]:
            ax.axvline(i + 0.5, color="grey", ls=":", lw=1)
        if i == 0 or r["phase"] != rows[i - 1]["phase"]:
            # the first phase at the left edge of the axes, the others just right of their line
            where, coords = ((0.01, 0.98), "axes fraction") if i == 0 else ((i + 0.5, 0.98), ("data", "axes fraction"))
            label = ax.annotate(
                str(r["phase"]),
                where,
                xycoords=coords,
                xytext=(2, 0),
                textcoords="offset points",
                rotation=90,
                va="top",
                ha="left",
                fontsize=8,
                color="grey",
            )
            label.set_in_layout(False)  # inside the axes: the layout engine need not make room for it


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
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=9 if n <= 12 else 7,
                color="white" if share[i, j] > 0.5 else "black",
            )
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
