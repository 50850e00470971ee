"""``tl run --seeds N`` and ``tl compare --seeds N``: N training seeds on one split, mean ± sd.

Tiny random BERT (``word_bert_dir``) on ``topics_csv``: each run takes about a second."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tlzoo.commands.compare import compare, format_leaderboard
from tlzoo.commands.seeds import mean_sd
from tlzoo.engine.cache import cache_entries


def _run_args(bert: Path, data: Path, out: Path, *extra: object) -> list[object]:
    return [
        "run",
        "--plugin",
        "bert",
        "--weights",
        bert,
        "--data",
        data,
        "--max-length",
        "16",
        "--device",
        "cpu",
        "--out",
        out,
        *extra,
    ]


def test_run_seeds_reports_the_mean_and_sd_of_its_runs_and_extracts_once(
    run_cli, word_bert_dir: Path, topics_csv: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))  # an empty feature cache of our own
    out = tmp_path / "seeds"
    res = run_cli(*_run_args(word_bert_dir, topics_csv, out, "--seeds", "3", "--epochs", "3", "--lr", "0.02"))
    assert res.exit_code == 0, res
    summary = json.loads((out / "seeds.json").read_text())
    children = [json.loads((out / f"seed-{s}" / "metrics.json").read_text()) for s in (0, 1, 2)]
    # the split is --seed's for every run; only the training seed moves
    assert [c["run"]["seed"] for c in children] == [0, 0, 0]
    assert [c["run"]["train_seed"] for c in children] == [0, 1, 2]
    ids = [[r["id"] for r in csv.DictReader((out / f"seed-{s}" / "predictions.csv").open())] for s in (0, 1, 2)]
    assert ids[0] == ids[1] == ids[2]
    # the reported figures are those of the runs
    for metric in ("accuracy", "macro_f1"):
        values = [c["test"][metric] for c in children]
        assert [r[metric] for r in summary["runs"]] == values
        assert summary[metric]["mean"] == round(float(np.mean(values)), 4)
        assert summary[metric]["sd"] == round(float(np.std(values, ddof=1)), 4)
    # an fc head starts from other random weights per seed: the runs' probabilities differ
    probs = [[r["probability"] for r in csv.DictReader((out / f"seed-{s}" / "predictions.csv").open())] for s in (0, 1)]
    assert probs[0] != probs[1]
    acc = summary["accuracy"]
    assert f"test accuracy {acc['mean']:.4f} ± {acc['sd']:.4f}" in res.stdout
    assert "3 training seeds" in res.stdout
    # features extracted once (train, val, test), read back by the two later seeds
    assert res.stderr.count("extracted and cached") == 3
    assert res.stderr.count("read from cache") == 6
    assert len(cache_entries()) == 3


def test_seeds_reach_a_fitted_heads_random_state(
    run_cli, word_bert_dir: Path, topics_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rf"
    small = ("--head", "rf", "--set", "head.n_estimators=10")
    res = run_cli(*_run_args(word_bert_dir, topics_csv, out, *small, "--seeds", "2", "--json"))
    assert res.exit_code == 0, res
    summary = json.loads(res.stdout)
    assert summary["train_seeds"] == [0, 1] and summary["out"] == str(out)
    for seed in (0, 1):
        params = json.loads((out / f"seed-{seed}" / "model.json").read_text())["head"]["params"]
        assert params["random_state"] == seed
    # a value the user sets stays
    out2 = tmp_path / "rf-fixed"
    extra = (*small, "--seeds", "2", "--set", "head.random_state=7", "-q")
    assert run_cli(*_run_args(word_bert_dir, topics_csv, out2, *extra)).exit_code == 0
    for seed in (0, 1):
        assert json.loads((out2 / f"seed-{seed}" / "model.json").read_text())["head"]["params"]["random_state"] == 7


def test_bad_seeds_are_one_line_errors(run_cli, word_bert_dir: Path, topics_csv: Path, tmp_path: Path) -> None:
    res = run_cli(*_run_args(word_bert_dir, topics_csv, tmp_path / "x", "--seeds", "0"))
    assert res.exit_code == 2 and "--seeds must be at least 1" in res.stderr and "Traceback" not in res.output
    res = run_cli("run", "--resume", tmp_path / "x", "--seeds", "2")
    assert res.exit_code == 2 and "drop --seeds" in res.stderr


def test_compare_seeds_gives_mean_and_sd_columns(word_bert_dir: Path, topics_csv: Path, tmp_path: Path) -> None:
    from tlzoo.engine.config import RunConfig

    cfg = RunConfig()
    cfg.model.max_length, cfg.train.device, cfg.progress = 16, "cpu", False
    result = compare(
        [f"bert={word_bert_dir}"], str(topics_csv), ["tree", "logreg"], tmp_path / "cmp", config=cfg, seeds=3, log=None
    )
    rows = {r["head"]: r for r in result.rows}
    tree, logreg = rows["tree"], rows["logreg"]
    assert tree["seeds"] == logreg["seeds"] == 3
    accs = [p["accuracy"] for p in tree["per_seed"]]
    assert [p["train_seed"] for p in tree["per_seed"]] == [0, 1, 2]
    assert tree["accuracy"] == mean_sd(accs)["mean"] and tree["accuracy_sd"] == round(float(np.std(accs, ddof=1)), 4)
    assert logreg["accuracy_sd"] == 0.0  # deterministic on fixed features: fitted once
    table = format_leaderboard(result.rows)
    assert "accuracy (± sd)" in table and f"{tree['accuracy']:.4f} ± {tree['accuracy_sd']:.4f}" in table
    with result.csv_path.open() as f:
        saved = {r["head"]: r for r in csv.DictReader(f)}
    assert float(saved["tree"]["accuracy_sd"]) == tree["accuracy_sd"] and saved["tree"]["seeds"] == "3"
