"""``tl compare``'s advice and figures can be relied on (issue 17 §5).

The suggested ``tl run`` keeps the winner's head and its options; fine-tuning is suggested only
where it applies (never for a backbone with nothing to train, never after an earlier fine-tune run of
the same backbone on the same data showed it did not help); LogME is a note, never the ranking, and
says when it orders the backbones otherwise; the table, leaderboard.csv and leaderboard.png carry the
95 % bootstrap interval of each test figure, not only the seeds' sd.
"""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.helpers import one_line_error
from tlzoo import Backbone, BackboneFactory, hookimpl
from tlzoo.commands.compare import compare, format_leaderboard, leaderboard_notes
from tlzoo.commands.leaderboard import _error_bars, advise, csv_row, logme_disagreement, plot_leaderboard
from tlzoo.engine.config import RunConfig
from tlzoo.evaluation.uncertainty import bootstrap_ci


def _config(data: Path) -> RunConfig:
    cfg = RunConfig()
    cfg.model.max_length, cfg.train.device, cfg.progress = 16, "cpu", False
    cfg.data.path = str(data)
    return cfg


# --------------------------------------------------------------------------- the winner's head is kept
def test_compare_keeps_the_winning_head_its_options_and_shows_intervals(
    run_cli: Any, word_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    args = ["compare", "--plugins", f"bert={word_bert_dir}", "--data", text_csv, "--heads", "logreg,nb"]
    res = run_cli(*args, "--set", "head.C=0.5", "--max-length", 16, "--device", "cpu", "--out", out)
    assert res.exit_code == 0, res
    with (out / "leaderboard.csv").open() as f:
        rows = {r["head"]: r for r in csv.DictReader(f)}
    assert json.loads(rows["logreg"]["head_params"]) == {"C": 0.5} and json.loads(rows["nb"]["head_params"]) == {}
    for r in rows.values():  # each figure with its 95% interval, around it
        lo, hi = float(r["accuracy_ci_low"]), float(r["accuracy_ci_high"])
        assert lo <= float(r["accuracy"]) <= hi and lo < hi
        assert float(r["macro_f1_ci_low"]) <= float(r["macro_f1"]) <= float(r["macro_f1_ci_high"])
        assert r["trainable_groups"] == "3"  # embeddings and two layers: something to fine-tune
    assert "95% CI" in res.stdout.splitlines()[0] and any("bootstrap" in ln for ln in res.stdout.splitlines())
    winner = min(rows.values(), key=lambda r: int(r["rank"]))
    assert float(winner["accuracy"]) < 1  # random tiny BERT on movie reviews: fine-tuning may help
    keep = next(ln.strip() for ln in res.stderr.splitlines() if ln.strip().startswith("tl run") and "fine" not in ln)
    words = shlex.split(keep)
    assert words[words.index("--head") + 1] == winner["head"] and "--strategy" not in words
    assert ("--set=head.C=0.5" in words) == (winner["head"] == "logreg")
    assert f"test accuracy {float(winner['accuracy']):.4f}, 95% CI" in res.stderr
    tune = next(ln.strip() for ln in res.stderr.splitlines() if ln.strip().endswith("--strategy fine-tune"))
    assert "--head fc --strategy fine-tune" in tune and "to try fine-tuning as well" in res.stderr


def test_a_head_option_no_probe_head_has_is_one_line(run_cli: Any, word_bert_dir: Path, topics_csv: Path) -> None:
    res = run_cli("compare", "--plugins", f"bert={word_bert_dir}", "--data", topics_csv, "--set", "head.depth=3")
    one_line_error(res, "--set head.depth", "none of the probe heads")


# --------------------------------------------------------------------------- nothing to train: no fine-tuning
class _Buckets(Backbone):
    """A parameter-free text backbone: words counted in 32 CRC32 buckets (nothing to fine-tune)."""

    modality, num_features, weights_source = "text", 32, "none (word buckets)"

    def __init__(self) -> None:
        super().__init__()
        self.name = "buckets-32"

    def transform(self, example: Any, train: bool) -> Any:
        bag = torch.zeros(32)
        for word in str(example).lower().split():
            bag[zlib.crc32(word.encode()) % 32] += 1.0
        return bag

    def forward(self, batch: Any) -> Any:
        return batch

    def layer_groups(self) -> list[Any]:
        return []


class _BucketsPlugin:
    @hookimpl
    def tlzoo_register_backbones(self, register: Any) -> None:
        register(BackboneFactory("buckets", "text", lambda request: _Buckets(), "buckets-32", ("buckets-32",)))


def _bucket_zoo() -> Any:
    from tlzoo.engine.plugins import PluginManager
    from tlzoo.engine.zoo import Zoo

    return Zoo(PluginManager(load_entry_points=False, extra=[_BucketsPlugin()]))


def test_no_fine_tuning_is_suggested_for_a_backbone_with_nothing_to_train(topics_csv: Path, tmp_path: Path) -> None:
    cfg = _config(topics_csv)
    result = compare(["buckets"], str(topics_csv), ["logreg"], tmp_path / "c", config=cfg, zoo=_bucket_zoo(), log=None)
    winner = result.winner
    assert winner["trainable_groups"] == 0 and winner["accuracy"] > 0.6
    advice = advise(cfg, winner, runs=[])
    assert advice.fine_tune == "" and "no layer with parameters" in advice.reason
    words = shlex.split(advice.keep)
    assert words[2:6] == ["--plugin", "buckets", "--model", "buckets-32"] and words[-2:] == ["--head", "logreg"]


# --------------------------------------------------------------------------- an earlier fine-tune run that lost
@pytest.fixture(scope="module")
def fine_tuned(word_bert_dir: Path, topics_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `tl run --strategy fine-tune` of the tiny BERT on the topics (one head and one joint epoch)."""
    from tlzoo import Engine

    cfg = _config(topics_csv)
    root = tmp_path_factory.mktemp("runs")
    cfg.apply_overrides(["model.plugin=bert", f"model.weights={word_bert_dir}", "train.strategy=fine-tune"])
    cfg.apply_overrides(["train.head_epochs=1", "train.joint_epochs=1", f"out={root / 'ft'}"])
    Engine(log=None).run(cfg)
    return root / "ft"


@pytest.fixture(scope="module")
def probe_winner(word_bert_dir: Path, topics_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The winner of a real probe of the same backbone on the same data, its accuracy set below 1."""
    out = tmp_path_factory.mktemp("cmp")
    cfg = _config(topics_csv)
    winner = compare([f"bert={word_bert_dir}"], str(topics_csv), ["logreg"], out, config=cfg, log=None).winner
    return {**winner, "accuracy": 0.9}  # at 1.0 there is nothing for fine-tuning to beat (tested below)


def _past_run(fine_tuned: Path, root: Path, kept: str | None, accuracy: float | None, other_data: bool = False) -> Path:
    """A copy of the real fine-tune run under ``root`` with the phase validation kept and test accuracy set."""
    folder = root / "run"
    shutil.copytree(fine_tuned, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    if kept is None:
        metrics.pop("validation_kept", None)
    else:
        metrics["validation_kept"] = {"phase": kept, "epoch": 1, "loss": 0.5}
    if accuracy is not None:
        metrics["test"]["accuracy"] = accuracy
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if other_data:
        saved = (folder / "config.toml").read_text()
        lines = [ln if not ln.startswith("path = ") else 'path = "other.csv"' for ln in saved.splitlines()]
        assert lines != saved.splitlines()
        (folder / "config.toml").write_text("\n".join(lines) + "\n")
    return folder


def test_the_hint_learns_from_a_fine_tune_run_whose_head_phase_won(
    fine_tuned: Path, probe_winner: dict[str, Any], topics_csv: Path, tmp_path: Path
) -> None:
    cfg = _config(topics_csv)
    real = json.loads((fine_tuned / "metrics.json").read_text())
    assert real["run"]["strategy"] == "fine-tune" and (fine_tuned / "config.toml").is_file()
    acc = probe_winner["accuracy"]
    folder = _past_run(fine_tuned, tmp_path / "a", "head", 1.0)
    advice = advise(cfg, probe_winner, runs=[tmp_path / "a"])
    assert advice.fine_tune == "" and str(folder) in advice.reason and "head-phase weights" in advice.reason
    assert "--head logreg" in advice.keep  # the winner is still suggested, head kept
    # the joint phase kept, but the test accuracy on the same split below the probe's
    folder = _past_run(fine_tuned, tmp_path / "b", "fine-tune", acc - 0.1)
    advice = advise(cfg, probe_winner, runs=[tmp_path / "b"])
    assert advice.fine_tune == "" and f"test accuracy {acc - 0.1:.3f} on the same split" in advice.reason
    # a run that predates validation_kept: its history.csv says which phase had the best validation loss
    folder = _past_run(fine_tuned, tmp_path / "c", None, 1.0)
    rows = [{"phase": "head", "epoch": 1, "val_loss": 0.3}, {"phase": "fine-tune", "epoch": 2, "val_loss": 0.9}]
    with (folder / "history.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["phase", "epoch", "val_loss"])
        w.writeheader()
        w.writerows(rows)
    assert advise(cfg, probe_winner, runs=[tmp_path / "c"]).fine_tune == ""


def test_fine_tuning_is_suggested_where_nothing_speaks_against_it(
    fine_tuned: Path, probe_winner: dict[str, Any], topics_csv: Path, tmp_path: Path
) -> None:
    cfg = _config(topics_csv)
    _past_run(fine_tuned, tmp_path / "a", "fine-tune", 1.0)  # fine-tuning helped there
    advice = advise(cfg, probe_winner, runs=[tmp_path / "a"])
    assert advice.fine_tune.endswith("--head fc --strategy fine-tune") and "in place of logreg" in advice.reason
    _past_run(fine_tuned, tmp_path / "b", "head", 0.0, other_data=True)  # lost, but on other data
    assert advise(cfg, probe_winner, runs=[tmp_path / "b"]).fine_tune
    other = _config(topics_csv)
    other.seed = 5  # another split: a lower test accuracy there says nothing about this one
    _past_run(fine_tuned, tmp_path / "c", "fine-tune", 0.0)
    assert advise(other, probe_winner, runs=[tmp_path / "c"]).fine_tune
    assert advise(cfg, probe_winner, runs=[tmp_path / "c"]).fine_tune == ""
    perfect = advise(cfg, {**probe_winner, "accuracy": 1.0}, runs=[])
    assert perfect.fine_tune == "" and "every test example right" in perfect.reason


# --------------------------------------------------------------------------- LogME: a note; intervals everywhere
def _row(backbone: str, accuracy: float, logme: float | None, **more: Any) -> dict[str, Any]:
    row = {"backbone": backbone, "head": "logreg", "accuracy": accuracy, "macro_f1": accuracy - 0.05}
    row |= {"extract_seconds": 1.0, "fit_seconds": 0.1, "features": 8, "logme": logme, "n_test": 90}
    return row | more


def test_logme_is_a_note_that_says_when_it_ranks_otherwise(
    word_bert_dir: Path, topics_csv: Path, tmp_path: Path
) -> None:
    rows = [_row("a", 0.9, -2.0, rank=1), _row("b", 0.8, -1.0, rank=2), _row("c", 0.7, -0.5, rank=3)]
    note = logme_disagreement(rows)
    assert note == (
        "LogME ranked the backbones differently: c > b > a (by test accuracy: a > b > c); "
        "the table ranks by test accuracy"
    )
    assert note in leaderboard_notes(rows)
    agree = [_row("a", 0.9, 1.0, rank=1), _row("b", 0.8, 0.0, rank=2)]
    assert logme_disagreement(agree) == "" and any("not a ranking" in n for n in leaderboard_notes(agree))
    # the probes: ranked by test accuracy whatever LogME says
    result = compare(
        [f"bert={word_bert_dir}"],
        str(topics_csv),
        ["logreg", "knn", "nb"],
        tmp_path / "c",
        config=_config(topics_csv),
        log=None,
    )
    assert [r["accuracy"] for r in result.rows] == sorted((r["accuracy"] for r in result.rows), reverse=True)


def test_the_table_csv_and_plot_carry_the_intervals(tmp_path: Path) -> None:
    y_true = np.array([0, 1, 2] * 30)
    y_pred = y_true.copy()
    y_pred[:20] = (y_pred[:20] + 1) % 3
    ci = bootstrap_ci(y_true, y_pred, 3)  # what tl run's metrics.json holds for the same predictions
    row = _row("b", 0.7778, -0.4, rank=1, accuracy_ci=ci["accuracy"], macro_f1_ci=ci["macro_f1"], head_params={"C": 1})
    line = format_leaderboard([row]).splitlines()[2]
    assert f"0.7778  {ci['accuracy'][0]:.3f}-{ci['accuracy'][1]:.3f}" in line
    assert line.split()[-4:] == ["1.0", "0.1", "8", "-0.400"]
    flat = csv_row(row)
    assert (flat["accuracy_ci_low"], flat["accuracy_ci_high"]) == tuple(ci["accuracy"])
    assert (flat["macro_f1_ci_low"], flat["macro_f1_ci_high"]) == tuple(ci["macro_f1"]) and flat[
        "head_params"
    ] == '{"C": 1}'
    assert csv_row(row | {"backbone": "=HYPERLINK(1)"})["backbone"] == "'=HYPERLINK(1)"  # no formula
    seeded = row | {"seeds": 3, "accuracy_sd": 0.01, "macro_f1_sd": 0.02}
    assert "0.7778 ± 0.0100  " in format_leaderboard([seeded]) and any(
        "first seed" in n for n in leaderboard_notes([seeded])
    )
    lows, highs = _error_bars([row, None, _row("c", 0.5, None, accuracy_sd=0.05)])
    assert lows[0] == pytest.approx(0.7778 - ci["accuracy"][0]) and highs[0] == pytest.approx(
        ci["accuracy"][1] - 0.7778
    )
    assert lows[1:] == [0.0, 0.05] and highs[1:] == [0.0, 0.05]  # no interval: the seeds' sd, else none
    plot_leaderboard([row], tmp_path / "l.png")
    assert (tmp_path / "l.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_probe_head_scores_what_the_suggested_run_scores(
    word_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    """logreg second (not fitted by the probe's train step): its row equals `tl run --head logreg`'s metrics.json,
    intervals included; it learns from train + validation as that run does (it cross-validates C)."""
    from tlzoo import Engine

    cfg = _config(text_csv)
    cfg.apply_overrides(["model.plugin=bert", f"model.weights={word_bert_dir}"])
    rows = compare([f"bert={word_bert_dir}"], str(text_csv), ["nb", "logreg"], tmp_path / "c", config=cfg, log=None)
    probe = next(r for r in rows.rows if r["head"] == "logreg")
    cfg.apply_overrides(["head.name=logreg", f"out={tmp_path / 'run'}"])
    test = Engine(log=None).run(cfg).metrics["test"]
    assert probe["accuracy"] == test["accuracy"] and probe["macro_f1"] == test["macro_f1"]
    assert probe["accuracy_ci"] == test["accuracy_ci"] and probe["macro_f1_ci"] == test["macro_f1_ci"]


def test_a_probe_head_learns_from_the_rows_its_run_would(
    word_bert_dir: Path, topics_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the first head (fitted by the train step), yet train + validation when it cross-validates, as
    `tl run --head nb` fits it; the training split alone when its option is set (nothing to cross-validate)."""
    from tlzoo.plugins.heads.neighbours import GaussianNBHead

    seen: list[int] = []
    fit = GaussianNBHead.fit

    def spy(self: Any, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        seen.append(len(x))
        fit(self, x, y, num_classes)

    monkeypatch.setattr(GaussianNBHead, "fit", spy)
    cfg = _config(topics_csv)
    result = compare([f"bert={word_bert_dir}"], str(topics_csv), ["logreg", "nb"], tmp_path / "a", config=cfg, log=None)
    assert seen == [126 + 27]  # 180 rows: 126 train, 27 validation, 27 test
    assert result.rows[0]["n_test"] == 27
    cfg.apply_overrides(["head.var_smoothing=1e-9"])
    compare([f"bert={word_bert_dir}"], str(topics_csv), ["logreg", "nb"], tmp_path / "b", config=cfg, log=None)
    assert seen[1:] == [126]
