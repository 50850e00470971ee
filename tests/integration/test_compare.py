"""``tl compare`` over two backbones and two heads writes its leaderboard; LogME ranks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tlzoo.commands.compare import compare, logme


@pytest.fixture(scope="module")
def other_bert_dir(word_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny BERT: same tokenizer, other random weights, 16-wide features."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("other-bert")
    for f in word_bert_dir.iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy(f, folder / f.name)
    cfg = BertConfig.from_pretrained(str(word_bert_dir))
    cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers = 16, 32, 1
    torch.manual_seed(99)
    BertModel(cfg).save_pretrained(str(folder))
    return folder


def test_tl_compare_two_backbones_two_heads(
    run_cli, word_bert_dir: Path, other_bert_dir: Path, topics_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    res = run_cli(
        "compare",
        "--plugins",
        f"bert={word_bert_dir},bert={other_bert_dir}",
        "--data",
        topics_csv,
        "--heads",
        "logreg,knn",
        "--max-length",
        "16",
        "--device",
        "cpu",
        "--out",
        out,
    )
    assert res.exit_code == 0, res
    assert "accuracy" in res.stdout and "macro-F1" in res.stdout and "LogME" in res.stdout
    assert "winner:" in res.stderr and "--head" in res.stderr  # the winner's head kept; fine-tuning where it applies
    with (out / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert {r["head"] for r in rows} == {"logreg", "knn"}
    assert {r["features"] for r in rows} == {"32", "16"}
    accs = [float(r["accuracy"]) for r in rows]
    assert accs == sorted(accs, reverse=True) and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert max(accs) > 0.6 and all(float(r["seconds"]) >= 0 and r["logme"] for r in rows)
    assert (out / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_api_reads_cached_features_the_second_time(
    word_bert_dir: Path, topics_csv: Path, tmp_path: Path
) -> None:
    from tlzoo.engine.config import RunConfig

    cfg = RunConfig()
    cfg.model.max_length, cfg.train.device, cfg.progress = 16, "cpu", False
    logs: list[str] = []
    compare([f"bert={word_bert_dir}"], str(topics_csv), ["nb"], tmp_path / "a", config=cfg, log=logs.append)
    logs.clear()
    result = compare(
        [f"bert={word_bert_dir}"],
        str(topics_csv),
        ["tree", "svm"],
        tmp_path / "b",
        config=cfg,
        use_logme=False,
        log=logs.append,
    )
    assert sum("read from cache" in m for m in logs) == 3 and not any("extracted" in m for m in logs)  # train/val/test
    assert [r["logme"] for r in result.rows] == [None, None] and result.csv_path.is_file()


def test_compare_runs_the_steps_through_step_wrappers(word_bert_dir: Path, topics_csv: Path, tmp_path: Path) -> None:
    """Each backbone is a probe run of steps.PROBE_STEPS, so wrappers see compare as they see `tl run`."""
    from tlzoo import hookimpl, step_wrapper, steps
    from tlzoo.engine.config import RunConfig
    from tlzoo.engine.plugins import PluginManager
    from tlzoo.engine.zoo import Zoo

    class Wrappers:
        def __init__(self) -> None:
            self.steps: list[str] = []
            self.train_rows = 0

        @hookimpl(wrapper=True)
        def tlzoo_run_step(self, step: str, run: object) -> object:
            self.steps.append(step)
            return (yield)

        @step_wrapper(steps.TRAIN)
        def after_training(self, run: object) -> object:
            yield  # after train: features extracted, the first head fitted on them
            self.train_rows += len(run.features["train"])  # type: ignore[attr-defined]

    plugin = Wrappers()
    zoo = Zoo(PluginManager(load_entry_points=False, extra=[plugin]))
    cfg = RunConfig()
    cfg.model.max_length, cfg.train.device, cfg.progress = 16, "cpu", False
    result = compare(
        [f"bert={word_bert_dir}", f"bert={word_bert_dir}"],
        str(topics_csv),
        ["nb", "knn"],
        tmp_path / "c",
        config=cfg,
        zoo=zoo,
        use_logme=False,
        log=None,
    )
    assert plugin.steps == list(steps.PROBE_STEPS) * 2 and plugin.train_rows > 0
    assert {r["head"] for r in result.rows} == {"nb", "knn"} and len(result.rows) == 4
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["leaderboard.csv", "leaderboard.png"]


def test_compare_rejects_bad_input(run_cli, topics_csv: Path, tmp_path: Path) -> None:
    res = run_cli("compare", "--plugins", "bertt", "--data", topics_csv, "--out", tmp_path / "x")
    assert res.exit_code == 2 and "bert" in res.stderr and "Traceback" not in res.output
    res = run_cli("compare", "--plugins", "bert", "--data", topics_csv, "--heads", "fc", "--out", tmp_path / "y")
    assert res.exit_code == 2 and "fitted heads" in res.stderr
    res = run_cli("compare", "--plugins", f"bert={tmp_path / 'missing'}", "--data", topics_csv)
    assert res.exit_code == 2 and "do not exist" in res.stderr


def test_logme_prefers_informative_features() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    informative = np.eye(3)[y] @ rng.normal(size=(3, 20)) + 0.5 * rng.normal(size=(300, 20))
    noise = rng.normal(size=(300, 20))
    half = np.concatenate([informative[:, :5], noise[:, :15]], 1)
    assert logme(informative, y) > logme(half, y) > logme(noise, y)


def test_logme_matches_the_evidence_computed_directly() -> None:
    """The SVD fixed point reaches the maximum of the evidence found by brute force."""
    rng = np.random.default_rng(1)
    f = rng.normal(size=(40, 6))
    y = (f[:, 0] + rng.normal(size=40) > 0).astype(int)

    def evidence(t: np.ndarray, a: float, b: float) -> float:
        n, d = f.shape
        A = a * np.eye(d) + b * f.T @ f
        m = b * np.linalg.solve(A, f.T @ t)
        return (
            n / 2 * np.log(b)
            + d / 2 * np.log(a)
            - n / 2 * np.log(2 * np.pi)
            - b / 2 * ((f @ m - t) ** 2).sum()
            - a / 2 * m @ m
            - np.linalg.slogdet(A)[1] / 2
        ) / n

    grid = np.logspace(-3, 3, 61)
    best = np.mean([max(evidence((y == k).astype(float), a, b) for a in grid for b in grid) for k in (0, 1)])
    assert logme(f, y) == pytest.approx(best, abs=2e-3)
    assert logme(f, y) >= best - 1e-9
