"""The run's PNGs say what happened: a fitted head's one fit, the kept epoch, whole-number epochs."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tlzoo.commands.pretraining import plot_pretraining
from tlzoo.evaluation.plots import _plt, history_figure, integer_ticks, plot_history


def _curves() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(1, 6):
        rows.append(
            {
                "phase": "head",
                "epoch": i,
                "train_loss": 1.5 / i,
                "train_accuracy": 1 - 0.5 / i,
                "val_loss": 1.4 / i + 0.02 * i,
            }
        )
        rows[-1]["val_accuracy"] = 0.9 - 0.4 / i
    for i in range(1, 4):
        rows.append(
            {
                "phase": "fine-tune",
                "epoch": i,
                "train_loss": 0.2 / i,
                "train_accuracy": 0.95,
                "val_loss": 0.4 + 0.05 * i,
            }
        )
        rows[-1]["val_accuracy"] = 0.85
    return rows


def test_a_fitted_head_is_drawn_as_one_fit_not_two_dots_at_epoch_1(tmp_path: Path) -> None:
    row = {
        "phase": "fit",
        "epoch": 1,
        "train_loss": 0.1,
        "train_accuracy": 0.98,
        "val_loss": 0.35,
        "val_accuracy": 0.91,
    }
    fig = history_figure([row], title="lenet5 · feature-extraction · head logreg")
    try:
        titles = [ax.get_title() for ax in fig.axes]
        assert all("one fit" in t for t in titles), titles
        for ax in fig.axes:
            assert len(ax.patches) == 2  # a bar for training, one for validation
            assert not ax.lines  # no curve of a single point
            assert [t.get_text() for t in ax.get_xticklabels()] == ["training", "validation"]
        accuracy = fig.axes[0]
        assert sorted(round(p.get_height(), 3) for p in accuracy.patches) == [0.91, 0.98]
    finally:
        _plt().close(fig)
    plot_history([row], tmp_path / "history.png")
    assert Image.open(tmp_path / "history.png").size[0] > 500


def test_the_kept_epoch_is_marked_on_the_curves_and_epochs_are_whole_numbers() -> None:
    fig = history_figure(_curves(), best=("head", 5))
    try:
        for ax in fig.axes:
            labels = ax.get_legend_handles_labels()[1]
            assert "kept: head epoch 5" in labels
            ring = [ln for ln in ax.lines if ln.get_label() == "kept: head epoch 5"][0]
            assert list(ring.get_xdata()) == [5]  # the 5th epoch of all phases
            assert list(ax.get_xticks()) == list(range(1, 9))
    finally:
        _plt().close(fig)
    fig = history_figure(_curves())  # no validation-kept weights: no mark
    try:
        assert not any("kept" in label for ax in fig.axes for label in ax.get_legend_handles_labels()[1])
    finally:
        _plt().close(fig)


def test_one_epoch_gets_the_tick_1_and_long_runs_whole_number_ticks(tmp_path: Path) -> None:
    plt = _plt()
    fig, (one, many) = plt.subplots(1, 2)
    try:
        one.plot([1], [0.5], "o")
        integer_ticks(one, [1])
        fig.canvas.draw()
        assert list(one.get_xticks()) == [1]
        assert one.get_xlim() == (0, 2)
        many.plot(range(1, 61), range(60))
        integer_ticks(many, list(range(1, 61)))
        fig.canvas.draw()
        assert all(float(t).is_integer() for t in many.get_xticks())
    finally:
        plt.close(fig)
    row = {"epoch": 1, "train_loss": 5.2, "val_loss": 5.4, "train_perplexity": 180.0, "val_perplexity": 220.0}
    plot_pretraining([row], tmp_path / "curve.png", title="one epoch")
    assert Image.open(tmp_path / "curve.png").size[0] > 500
