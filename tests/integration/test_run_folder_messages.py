"""Problems a newcomer met: misleading errors for folders that are not run folders, `tl predict --data`
forgetting the run's column names, zero-width intervals, and small wording of the printed output."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import one_line_error

from tlzoo.api.errors import TlzooError
from tlzoo.infra.run_folder import check_run_folder


def _one_error(res: Any, fragment: str) -> str:
    return one_line_error(res, fragment)


def _seeds_folder(tmp_path: Path) -> Path:
    out = tmp_path / "b_seeds"
    for s in (0, 1, 2):
        (out / f"seed-{s}").mkdir(parents=True)
    (out / "seeds.json").write_text(json.dumps({"seeds": 3}), encoding="utf-8")
    return out


@pytest.mark.parametrize("command", [["predict"], ["errors"], ["report"]])
def test_a_seeds_folder_names_a_seed_run(run_cli: Any, tmp_path: Path, command: list[str]) -> None:
    out = _seeds_folder(tmp_path)
    extra = ["rain"] if command == ["predict"] else []
    line = _one_error(run_cli(*command, out, *extra), "--seeds")
    assert str(out / "seed-0") in line and f"tl {command[0]} " in line
    assert "interrupted" not in line


def test_an_onnx_export_points_to_its_script(run_cli: Any, tmp_path: Path) -> None:
    exp = tmp_path / "exp_b"
    exp.mkdir()
    for name in ("graph.json", "model.onnx", "onnx_predict.py"):
        (exp / name).write_text("{}", encoding="utf-8")
    (exp / "export.json").write_text(json.dumps({"format": "onnx"}), encoding="utf-8")
    line = _one_error(run_cli("predict", exp, "x"), "onnx_predict.py")
    assert "--format folder" in line
    _one_error(run_cli("errors", exp), "exported from")
    ts = tmp_path / "exp_ts"
    ts.mkdir()
    (ts / "model.pt").write_bytes(b"")
    (ts / "export.json").write_text(json.dumps({"format": "torchscript"}), encoding="utf-8")
    assert "--format folder" in _one_error(run_cli("predict", ts, "x"), "TorchScript export")


@pytest.mark.parametrize("command", ["errors", "report", "predict"])
def test_a_missing_folder_is_one_line(run_cli: Any, tmp_path: Path, command: str) -> None:
    extra = ["x"] if command == "predict" else []
    _one_error(run_cli(command, tmp_path / "nope", *extra), "does not exist")


def test_a_plain_run_folder_passes(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text("{}", encoding="utf-8")
    check_run_folder(tmp_path, "predict")  # no error: the command's own checks take over
    with pytest.raises(TlzooError, match="holds no"):
        from tlzoo.engine.artifacts import load_model_files

        load_model_files(tmp_path)


@pytest.fixture(scope="module")
def review_run(word_bert_dir: Path, topics_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained on a CSV whose columns are 'Review Text' and 'Lbl', in latin-1."""
    from click.testing import CliRunner

    from tlzoo.cli import cli

    folder = tmp_path_factory.mktemp("newcomer")
    rows = list(csv.DictReader(topics_csv.open(newline="")))
    data = folder / "reviews.csv"
    with data.open("w", newline="", encoding="latin-1") as f:
        w = csv.writer(f)
        w.writerow(["Review Text", "Lbl"])
        for r in rows:
            w.writerow([r["text"] + " café", r["label"]])
    out = folder / "run"
    args = ["run", "--plugin", "bert", "--weights", word_bert_dir, "--data", data, "--text-column", "Review Text"]
    args += ["--label-column", "Lbl", "--encoding", "latin-1", "--head", "logreg", "--max-length", 32, "--out", out]
    res = CliRunner().invoke(cli, [str(a) for a in [*args, "-q"]])
    assert res.exit_code == 0, res.output
    return out


def test_predict_data_defaults_to_the_runs_columns(run_cli: Any, review_run: Path, tmp_path: Path) -> None:
    new = tmp_path / "new.csv"
    with new.open("w", newline="", encoding="latin-1") as f:
        w = csv.writer(f)
        w.writerow(["Review Text", "Lbl"])
        w.writerow(["funny comedy fun smart café", "comedy"])
        w.writerow(["drama love life moving café", "drama"])
    res = run_cli("predict", review_run, "--data", new)
    assert res.exit_code == 0, res
    rows = list(csv.DictReader(io.StringIO(res.stdout, newline="")))
    assert [r["true"] for r in rows] == ["comedy", "drama"]  # the run's label column, read without being named
    assert rows[0]["input"].endswith("café")  # the run's encoding
    assert "accuracy" in res.stderr
    # a new file with the usual 'text' column and no labels still reads without options
    plain = tmp_path / "plain.csv"
    plain.write_text("text\nfunny comedy fun\n", encoding="utf-8")
    res = run_cli("predict", review_run, "--data", plain)
    assert res.exit_code == 0, res
    assert len(list(csv.DictReader(io.StringIO(res.stdout, newline="")))) == 1


def test_small_losses_on_bars_keep_their_digits() -> None:
    from tlzoo.evaluation.plots import bar_value

    assert bar_value(7e-05) == "0.00007"
    assert bar_value(0.000123456) == "0.000123"
    assert bar_value(1.0) == "1.000" and bar_value(0.0) == "0.000" and bar_value(0.25) == "0.250"


def test_confusion_names_slant_when_they_would_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.figure

    import tlzoo.evaluation.plots as plots

    seen: list[list[float]] = []
    real_savefig = matplotlib.figure.Figure.savefig

    def savefig(fig: Any, *args: Any, **kwargs: Any) -> None:
        seen.append([label.get_rotation() for label in fig.axes[0].get_xticklabels()])
        real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    cm = [[5, 1, 0, 0], [0, 6, 0, 0], [0, 0, 6, 0], [0, 0, 0, 6]]
    plots.plot_confusion(cm, ["Ankle boot", "Sneaker", "T-shirt", "Trouser"], tmp_path / "c.png")
    plots.plot_confusion([[5, 1], [0, 6]], ["neg", "pos"], tmp_path / "d.png")
    assert set(seen[0]) == {45.0} and set(seen[1]) == {0.0}
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_all_right_gives_a_wilson_interval_not_a_zero_width_one() -> None:
    import numpy as np

    from tlzoo.evaluation.uncertainty import bootstrap_ci, wilson

    y = np.repeat([0, 1, 2], 15)  # 45 of 45 right: every stratified resample scores 1.0
    ci = bootstrap_ci(y, y, 3)
    assert ci["accuracy"] == wilson(45, 45) == [0.9213, 1.0]  # the Wilson score interval for 45/45
    assert ci["macro_f1"][0] < 1.0 and ci["macro_f1"][1] == 1.0  # as wide, below the point value 1.0
    assert wilson(0, 10)[0] == 0.0 and 0.27 < wilson(0, 10)[1] < 0.28
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(1 - hi, abs=1e-4)  # symmetric about 0.5
    # a bootstrap that varies is left as it is
    p = y.copy()
    p[:3] = 1
    ci = bootstrap_ci(y, p, 3)
    assert ci["accuracy"][0] < 0.94 < ci["accuracy"][1] and ci["accuracy"] != wilson(42, 45)


def test_the_card_of_a_perfect_run_does_not_claim_a_zero_width_interval(tmp_path: Path) -> None:
    from tlzoo.commands.report import intervals, limitations, load_run

    run = tmp_path / "run"
    run.mkdir()
    cm = [[15, 0, 0], [0, 15, 0], [0, 0, 15]]
    per = {c: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 15} for c in ("a", "b", "c")}
    test = {"accuracy": 1.0, "macro_f1": 1.0, "n": 45, "confusion_matrix": cm, "per_class": per}
    test |= {"accuracy_ci": [1.0, 1.0], "macro_f1_ci": [1.0, 1.0]}  # as an older run stored it
    (run / "metrics.json").write_text(json.dumps({"test": test, "run": {"seed": 0}}), encoding="utf-8")
    files = load_run(run)
    ci = intervals(files)
    assert ci["accuracy"] == [0.9213, 1.0]
    text = " ".join(limitations(files, ci))
    assert "0.0 points" not in text and "7.9 points wide" in text


def test_tuning_line_reads_as_a_sentence() -> None:
    from types import SimpleNamespace

    from tlzoo.engine.run.fit import _log_tuning

    lines: list[str] = []
    tuned = {"C": 0.001, "cv_folds": 5, "cv_accuracy": 1.0, "best_cv_accuracy": 1.0, "grid_points": 9}
    fake = SimpleNamespace(head=SimpleNamespace(name="svm", tuned=tuned), log=lines.append)
    _log_tuning(fake)  # type: ignore[arg-type]
    want = "  svm: chose C=0.001 (CV accuracy 1.000, 5-fold cross-validation over 9 settings on the training features)"
    assert lines == [want]
    lines.clear()
    tuned |= {"cv_accuracy": 0.95, "best_cv_accuracy": 0.96}
    _log_tuning(fake)  # type: ignore[arg-type]
    assert "best_cv_accuracy" not in lines[0] and "CV accuracy 0.950; best 0.960" in lines[0]


def test_seed_columns_keep_apart() -> None:
    from tlzoo.commands.compare import format_leaderboard

    row = {"rank": 1, "backbone": "glove-6B-50d", "head": "logreg", "accuracy": 1.0, "macro_f1": 1.0}
    row |= {"accuracy_sd": 0.0, "macro_f1_sd": 0.0, "seeds": 3, "extract_seconds": 0.1, "fit_seconds": 0.2}
    row |= {"features": 50, "logme": 1.2}
    line = format_leaderboard([row]).splitlines()[-1]
    assert "1.0000 ± 0.0000  " in line and "0.0000 1.0000" not in line


def test_list_keeps_the_default_star_apart(run_cli: Any) -> None:
    res = run_cli("list")
    assert res.exit_code == 0, res
    starred = [line for line in res.stdout.splitlines() if " * " in line]
    assert starred and not any(f"{w}*" in line for line in res.stdout.splitlines() for w in ("bert", "efficientnet"))


def test_one_epoch_is_singular(run_cli: Any, word_bert_dir: Path, topics_csv: Path, tmp_path: Path) -> None:
    args = ["run", "--plugin", "bert", "--weights", word_bert_dir, "--data", topics_csv, "--limit", 60]
    res = run_cli(*args, "--head-epochs", 1, "--max-length", 16, "--set", "train.patience=1", "--out", tmp_path / "r")
    assert res.exit_code == 0, res
    assert "1 head epoch," in res.output and "1 epochs" not in res.output and "1 head epochs" not in res.output
