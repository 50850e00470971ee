"""An interrupted ``tl run --seeds N`` continues seed by seed (issue 17 §9): the finished seeds are kept, the
interrupted one starts again with its own training seed, the rest run; by the same command or ``--resume OUT``.

Tiny random BERT on ``topics_csv``, the same runs as tests/integration/test_seeds.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlzoo.engine import runner


def _args(bert: Path, data: Path, out: Path) -> list[object]:
    return [
        "run", "--plugin", "bert", "--weights", bert, "--data", data, "--max-length", "16", "--device", "cpu",
        "--epochs", "2", "--seeds", "3", "--out", out,
    ]  # fmt: skip


def _interrupt_seed(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """Ctrl-C in the evaluate step of the run whose training seed is ``seed`` (after its model is saved)."""
    real = runner.STEP_FUNCTIONS["evaluate"]

    def evaluate(run):  # type: ignore[no-untyped-def]
        if run.train_seed == seed:
            raise KeyboardInterrupt
        real(run)

    monkeypatch.setitem(runner.STEP_FUNCTIONS, "evaluate", evaluate)


@pytest.mark.parametrize("how", ["rerun", "resume"])
def test_an_interrupted_seeds_run_continues_seed_by_seed(
    run_cli, word_bert_dir: Path, topics_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    out = tmp_path / "seeds"
    with monkeypatch.context() as m:
        _interrupt_seed(m, 1)
        first = run_cli(*_args(word_bert_dir, topics_csv, out))
    assert first.exit_code == 130, first
    assert f"tl run --resume {out}`" in first.stderr  # the seeds' folder, not seed-1's
    assert (out / "seed-0" / "metrics.json").is_file() and (out / "seed-1.incomplete" / "checkpoint.pt").is_file()
    assert not (out / "seeds.json").exists()
    kept = (out / "seed-0" / "metrics.json").stat().st_mtime_ns

    again = run_cli(*(_args(word_bert_dir, topics_csv, out) if how == "rerun" else ["run", "--resume", out]))
    assert again.exit_code == 0, again
    assert "training seed 0 finished before; kept" in again.output
    assert "training seed 1 was interrupted; starting it again" in again.output
    assert (out / "seed-0" / "metrics.json").stat().st_mtime_ns == kept  # not trained again
    assert not (out / "seed-1.incomplete").exists()
    summary = json.loads((out / "seeds.json").read_text())
    children = [json.loads((out / f"seed-{s}" / "metrics.json").read_text()) for s in (0, 1, 2)]
    assert [c["run"]["train_seed"] for c in children] == [0, 1, 2]  # the restarted seed kept its own seed
    assert [r["accuracy"] for r in summary["runs"]] == [c["test"]["accuracy"] for c in children]


def test_a_seeds_folder_of_another_configuration_is_refused(
    run_cli, word_bert_dir: Path, topics_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers import one_line_error

    out = tmp_path / "seeds"
    with monkeypatch.context() as m:
        _interrupt_seed(m, 0)
        assert run_cli(*_args(word_bert_dir, topics_csv, out)).exit_code == 130
    res = run_cli(*_args(word_bert_dir, topics_csv, out), "--lr", "0.5", "-q")
    one_line_error(res, f"'{out}' holds the seeds of another configuration", "choose another --out")
