"""The report's words for a fitted head's one-step "curves" (tlzoo/commands/report.py)."""

from __future__ import annotations

from types import SimpleNamespace

from tlzoo.commands.report import _curves_caption


def _files(*rows: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(history=list(rows))


def test_a_head_refitted_on_validation_is_said_to_have_no_validation_score() -> None:
    caption = _curves_caption(_files({"phase": "fit", "train_accuracy": "1.0", "val_accuracy": ""}))
    assert "the bar is the fitted head's training accuracy" in caption and "has no score" in caption


def test_a_head_scored_on_validation_shows_both_bars() -> None:
    caption = _curves_caption(_files({"phase": "fit", "train_accuracy": "1.0", "val_accuracy": "0.7"}))
    assert "bars are the fitted head's training and validation" in caption and "no score" not in caption


def test_epochs_get_the_curves_caption() -> None:
    assert "per epoch" in _curves_caption(_files({"phase": "head", "epoch": "1"}))
