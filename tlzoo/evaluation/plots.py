"""The PNGs a person looks at: training curves (or a fitted head's one fit) and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(rows: list[dict[str, Any]], path: Path, title: str = "", best: tuple[str, int] | None = None) -> None:
    """Accuracy and loss per epoch, training vs validation, phases marked.

    ``best`` (phase, epoch): the weights the run kept (the best validation loss of all
    phases), marked on the curves.  A fitted (scikit-learn) head has no epochs: its one fit
    is drawn as bars of training and validation accuracy and loss.  Language-model phases
    (``lm-*``, e.g. ULMFiT's LM fine-tuning) measure next-word prediction, not the
    classification task, so they get a panel of their own instead of squashing the
    classifier's curves.
    """
    fig = history_figure(rows, title, best)
    fig.savefig(path, dpi=110)
    _plt().close(fig)


def history_figure(rows: list[dict[str, Any]], title: str = "", best: tuple[str, int] | None = None) -> Any:
    """The matplotlib figure :func:`plot_history` saves."""
    plt = _plt()
    lm = [r for r in rows if str(r["phase"]).startswith("lm-")]
    fits = [r for r in rows if r["phase"] == "fit"]
    clf = [r for r in rows if not str(r["phase"]).startswith("lm-") and r["phase"] != "fit"]
    panels = (
        ([("accuracy", clf), ("loss", clf)] if clf else [])
        + ([("fit: accuracy", fits), ("fit: loss", fits)] if fits else [])
        + ([("language-model loss", lm)] if lm else [])
    )
    if not panels:
        panels = [("accuracy", [])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.4), squeeze=False, layout="constrained")
    for ax, (name, part) in zip(axes[0], panels):
        metric = "loss" if "loss" in name else "accuracy"
        if name.startswith("fit"):
            _fit_bars(ax, part[-1], metric)
            continue
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
        if best is not None and part is clf:
            _mark_best(ax, part, best, metric)
        ax.set_xlabel("epoch (all phases)")
        ax.set_ylabel(metric)
        ax.set_title(name[0].upper() + name[1:])
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
        integer_ticks(ax, list(x))
    if title:
        fig.suptitle(title)
    return fig


def integer_ticks(ax: Any, xs: list[Any]) -> None:
    """Epochs are whole numbers: ticks on them (each one up to 20), never 0.945 ... 1.050."""
    import matplotlib.ticker

    xs = [int(v) for v in xs]
    if xs and len(xs) <= 20:
        ax.set_xticks(xs)
    else:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if len(set(xs)) == 1:  # one epoch: a window around it, not matplotlib's +-5 %
        ax.set_xlim(xs[0] - 1, xs[0] + 1)


def _mark_best(ax: Any, rows: list[dict[str, Any]], best: tuple[str, int], metric: str) -> None:
    """A ring on the validation curve where the kept weights come from, and a note saying so."""
    where = [i for i, r in enumerate(rows) if r["phase"] == best[0] and str(r.get("epoch")) == str(best[1])]
    if not where:
        return
    i = where[0]
    y = _num(rows[i].get(f"val_{metric}"))
    ax.axvline(i + 1, color="tab:green", lw=1, alpha=0.6)
    if y is not None:
        ax.plot([i + 1], [y], "o", ms=11, mfc="none", mec="tab:green", mew=2, label=f"kept: {best[0]} epoch {best[1]}")


def _fit_bars(ax: Any, row: dict[str, Any], metric: str) -> None:
    """One fit, no epochs: training and validation side by side, values written on the bars."""
    names, values = [], []
    for split, label in (("train", "training"), ("val", "validation")):
        v = _num(row.get(f"{split}_{metric}"))
        if v is not None:
            names.append(label)
            values.append(v)
    bars = ax.bar(names, values, color=["tab:blue", "tab:orange"][: len(values)], width=0.5)
    for bar, v in zip(bars, values):
        ax.annotate(
            bar_value(v),
            (bar.get_x() + bar.get_width() / 2, v),
            ha="center",
            va="bottom",
            fontsize=9,
            xytext=(0, 2),
            textcoords="offset points",
        )
    if metric == "accuracy":
        ax.set_ylim(0, 1.08)
    elif values:
        ax.set_ylim(0, max(values) * 1.15 or 1)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric.capitalize()} of the fitted head (one fit, no epochs)")
    ax.grid(alpha=0.3, axis="y")


def bar_value(v: float) -> str:
    """A value written on a bar: three decimals, or three significant digits below 0.01 (a loss of 7e-5
    reads 0.00007, not 0.000)."""
    if v == 0 or abs(v) >= 0.01 or not np.isfinite(v):
        return f"{v:.3f}"
    return np.format_float_positional(v, precision=3, fractional=False, trim="-")


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
    # slanted when the names would run into each other: many classes, or names wider than a cell
    # (about 0.09 inch per character at this font size; beside the colour bar a cell is some 0.6 * size / n
    # inches wide)
    slant = n > 4 or max((len(str(c)) for c in classes), default=0) * 0.09 > 0.6 * size / max(1, n)
    ax.set_xticks(range(n), classes, rotation=45 if slant else 0, ha="right" if slant else "center")
    if slant:
        for label in ax.get_xticklabels():
            label.set_rotation_mode("anchor")  # the end of each name sits under its column
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
