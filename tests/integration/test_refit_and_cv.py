"""Models on every example outside the test split (issue 17 §3, §4): a fitted head that
cross-validates learns from train + validation, ``--refit-full`` refits the kept head or plan on
them, and ``--cv K`` scores the head by K-fold cross-validation on cached features.  Tiny BERT."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers import one_line_error


def _run(run_cli: Any, bert: Path, data: Path, out: Path, *args: Any) -> dict[str, Any]:
    res = run_cli(
        "run", "-q", "--plugin", "bert", "--weights", bert, "--data", data, "--out", out,
        "--max-length", "16", "--device", "cpu", *args,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return json.loads((out / "metrics.json").read_text())


def _saved_model_matches_predictions(run_dir: Path) -> np.ndarray:
    """The saved model's test probabilities (what tl predict and exports load), checked against predictions.csv."""
    from tlzoo.commands.predict import Predictor

    with (run_dir / "predictions.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    classes = json.loads((run_dir / "model.json").read_text())["classes"]
    expected = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    got = Predictor.load(run_dir).predict_proba([r["input"] for r in rows])
    np.testing.assert_allclose(got, expected, atol=2e-4)
    return np.asarray(got)


def test_config_toml_marks_the_settings_the_strategy_does_not_read() -> None:
    from tlzoo.engine.config import RunConfig

    cfg = RunConfig()
    text = cfg.to_toml()
    assert "# head_epochs: not set (the strategy's default: feature-extraction 30" in text
    assert "# finetune_lr = 5e-05  (not used by feature-extraction)" in text and "\nfinetune_lr" not in text
    cfg.set("train.strategy", "fine-tune")
    assert "\nfinetune_lr = 5e-05" in cfg.to_toml() and "# lm_epochs = 2  (not used by fine-tune)" in cfg.to_toml()
    back = RunConfig()
    back.update(tomllib.loads(text))
    assert back.as_dict() == RunConfig().as_dict()  # an old run's config.toml resumes to the same settings


def test_a_cross_validating_head_learns_from_train_and_validation(
    run_cli: Any, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    m = _run(run_cli, tiny_bert_dir, text_csv, tmp_path / "auto", "--head", "logreg")
    n = m["run"]
    assert m["trained_on"]["splits"] == ["train", "val"]
    assert m["trained_on"]["rows"] == n["n_train"] + n["n_val"]
    assert m["test"]["n"] == n["n_test"]  # scored on the untouched test split
    card = (tmp_path / "auto" / "README.md").read_text()
    assert f"trained on train + validation ({n['n_train'] + n['n_val']} examples)" in card
    model = json.loads((tmp_path / "auto" / "model.json").read_text())
    assert model["head"]["trained_on"]["rows"] == n["n_train"] + n["n_val"]
    # a head given its options does not cross-validate: validation still scores it
    fixed = _run(run_cli, tiny_bert_dir, text_csv, tmp_path / "fixed", "--head", "logreg", "--set", "head.C=1")
    assert fixed["trained_on"]["splits"] == ["train"] and fixed["validation_last_epoch"]["accuracy"] is not None


def test_refit_full_trains_the_fc_head_again_on_train_and_validation(
    run_cli: Any, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    base = _run(run_cli, tiny_bert_dir, text_csv, tmp_path / "base", "--epochs", "4")
    refit = _run(run_cli, tiny_bert_dir, text_csv, tmp_path / "refit", "--epochs", "4", "--refit-full")
    n = refit["run"]
    assert base["trained_on"]["splits"] == ["train"]
    assert refit["trained_on"]["splits"] == ["train", "val"]
    assert refit["trained_on"]["rows"] == n["n_train"] + n["n_val"]
    assert refit["trained_on"]["epochs"] == base["validation_kept"]["epoch"]
    assert refit["test"]["n"] == base["test"]["n"]
    rows = (tmp_path / "refit" / "history.csv").read_text().splitlines()
    assert sum(r.startswith("refit-head,") for r in rows) == refit["trained_on"]["epochs"]
    # the saved model is the refit one: it reproduces the run's test probabilities, and differs from the base's
    refit_p, base_p = (
        _saved_model_matches_predictions(tmp_path / "refit"),
        _saved_model_matches_predictions(tmp_path / "base"),
    )
    assert np.abs(refit_p - base_p).max() > 1e-3


def test_cv_scores_the_head_by_k_folds_on_cached_features(
    run_cli: Any, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    for head in ("logreg", "fc"):
        m = _run(run_cli, tiny_bert_dir, text_csv, tmp_path / head, "--head", head, "--cv", "3", "--epochs", "3")
        cv = m["cross_validation"]
        assert cv["folds"] == 3 and cv["rows"] == m["run"]["n_train"] + m["run"]["n_val"]
        for metric in ("accuracy", "macro_f1"):
            folds = cv[metric]["per_fold"]
            assert len(folds) == 3 and abs(sum(folds) / 3 - cv[metric]["mean"]) < 1e-4
            assert cv[metric]["ci"][0] <= cv[metric]["mean"] <= cv[metric]["ci"][1]
        assert "3-fold cross-validation on train + validation" in (tmp_path / head / "README.md").read_text()


def test_cv_under_fine_tuning_is_one_line_naming_the_fix(
    run_cli: Any, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    res = run_cli(
        "run", "-q", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", text_csv, "--out", tmp_path / "ft",
        "--strategy", "fine-tune", "--cv", "3", "--device", "cpu",
    )  # fmt: skip
    one_line_error(res, "--cv 3", "feature-extraction")
    assert not (tmp_path / "ft").exists() and not (tmp_path / "ft.incomplete").exists()
    one_line_error(run_cli("run", "-q", "--cv", "1", "--data", text_csv), "--cv", "at least 2")


def test_refit_full_under_fine_tuning_retrains_the_kept_plan(
    run_cli: Any, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ft"
    m = _run(
        run_cli, tiny_bert_dir, text_csv, out, "--strategy", "fine-tune", "--head-epochs", "1", "--epochs", "2",
        "--refit-full", "--set", "train.unfreeze=1",
    )  # fmt: skip
    kept = m["validation_kept"]
    assert m["trained_on"]["splits"] == ["train", "val"]
    phases = [r.split(",")[0] for r in (out / "history.csv").read_text().splitlines()[1:]]
    refit = [p for p in phases if p.startswith("refit-")]
    assert len(refit) == m["trained_on"]["epochs"] and refit[-1] == f"refit-{kept['phase']}"
    _saved_model_matches_predictions(out)


def test_cv_without_a_test_split(run_cli: Any, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path) -> None:
    """--cv K --test-fraction 0: the folds' figures are the result; the model learns from all the data;
    tl errors says there is no test split; without --cv the same fraction is a one-line error."""
    out = tmp_path / "cv0"
    m = _run(run_cli, tiny_bert_dir, text_csv, out, "--head", "logreg", "--cv", "3", "--test-fraction", "0")
    cv = m["cross_validation"]
    assert m["run"]["n_test"] == 0 and m["test"]["accuracy"] == cv["accuracy"]["mean"]
    assert m["test"]["scored_by"].startswith("3-fold cross-validation") and m["test"]["n"] == cv["rows"] == 150
    assert m["trained_on"]["rows"] == 150 and not (out / "predictions.csv").exists()
    assert (out / "report.html").is_file() and "cross-validation" in (out / "README.md").read_text()
    one_line_error(run_cli("errors", out), "no test split", "--test-fraction")
    res = run_cli(
        "run", "-q", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", text_csv, "--test-fraction", "0"
    )
    one_line_error(res, "--test-fraction 0", "--cv K")


def test_old_epochs_flag_still_trains_with_a_note(
    run_cli: Any, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "old"
    res = run_cli(
        "run", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", text_csv, "--out", out,
        "--max-length", "16", "--device", "cpu", "-e", "2",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "read as --head-epochs 2" in res.stderr and "phase head: 2 head epochs" in res.stderr
    assert "head_epochs = 2" in (out / "config.toml").read_text()
    assert len((out / "history.csv").read_text().splitlines()) == 3
