"""A third-party backbone of a modality tlzoo has never heard of, in a fused run beside a built-in one.

The example plugin (examples/tlzoo-example) registers ``series``, modality "sequence": a CSV cell
of numbers.  Nothing in tlzoo knows that modality; ``tl run --plugin title=bert --plugin
readings=series`` must still train, report what each input adds, and predict records, one of
which lacks the readings (issue 16 goal 6).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import pytest

TONES = {"fun": "a funny clever comedy", "dull": "a dull boring drama"}


@pytest.fixture(scope="module")
def readings_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 rows: a title (fun or dull) and readings that rise or fall; the label needs both."""
    rng, rows = random.Random(0), []
    for i in range(120):
        tone, trend = rng.choice(sorted(TONES)), rng.choice(["up", "down"])
        start, step = rng.uniform(-5, 5), rng.uniform(0.2, 1.0) * (1 if trend == "up" else -1)
        readings = " ".join(f"{start + step * t + rng.gauss(0, 0.1):.2f}" for t in range(rng.randint(6, 20)))
        rows.append({"id": f"r{i}", "title": TONES[tone], "readings": readings, "label": f"{tone}-{trend}"})
    path = tmp_path_factory.mktemp("readings") / "readings.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_fused_run_takes_a_backbone_of_a_new_modality(
    readings_csv: Path, tiny_bert_dir: Path, run_cli: Any, tmp_path: Path
) -> None:
    from tlzoo.engine.zoo import Zoo

    assert Zoo().backbones.get("series").modality == "sequence"  # registered by the example's entry point
    out = tmp_path / "run"
    res = run_cli(
        "run", "-q", "--plugin", "title=bert", "--weights", f"title={tiny_bert_dir}", "--plugin", "readings=series",
        "--data", readings_csv, "--head", "logreg", "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    rows = {tuple(r["inputs"]): r["accuracy"] for r in metrics["ablation"]["rows"]}
    both, readings, title = rows[("title", "readings")], rows[("readings",)], rows[("title",)]
    # four classes: each input alone tells two of them apart at best; together they tell all four
    assert both == metrics["test"]["accuracy"] and both >= 0.8, rows
    assert readings <= 0.7 and title <= 0.7, rows
    preprocessing = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert "series" in json.dumps(preprocessing)

    res = run_cli(
        "predict", out, '{"title": "a funny clever comedy", "readings": "1 2 3 4 5 6 7"}', "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res
    assert json.loads(res.stdout.strip().splitlines()[0])["label"] == "fun-up"
    res = run_cli("predict", out, '{"title": "a dull boring drama"}', "--json")  # no readings: flagged, zeroed
    assert res.exit_code == 0, res
    assert json.loads(res.stdout.strip().splitlines()[0])["label"].startswith("dull-")


def test_a_bad_cell_for_the_new_modality_is_one_line(readings_csv: Path, run_cli: Any, tmp_path: Path) -> None:
    from helpers import one_line_error

    bad = tmp_path / "bad.csv"
    lines = readings_csv.read_text(encoding="utf-8").splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("r5,"))
    lines[row] = "r5,a dull boring drama,1 two 3,dull-up"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = run_cli("run", "-q", "--plugin", "readings=series", "--data", bad, "--out", tmp_path / "out")
    one_line_error(res, "'two' in '1 two 3' is not a number")
    assert not (tmp_path / "out").exists()


def test_every_head_fitted_on_several_inputs_is_told_their_columns(
    readings_csv: Path, tiny_bert_dir: Path, run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine hands ``Head.use_blocks`` each input's columns: to the run's head and to the ablation's
    head on all the inputs, never to a head on one input; logreg then scales by input (issue 16)."""
    from tlzoo.plugins.heads.linear import LogRegHead

    given: list[list[tuple[str, int]]] = []
    real = LogRegHead.use_blocks

    def spy(self: LogRegHead, blocks: list[tuple[str, list[int]]]) -> None:
        given.append([(name, len(columns)) for name, columns in blocks])
        real(self, blocks)

    monkeypatch.setattr(LogRegHead, "use_blocks", spy)
    res = run_cli(
        "run", "-q", "--plugin", "title=bert", "--weights", f"title={tiny_bert_dir}", "--plugin", "readings=series",
        "--data", readings_csv, "--head", "logreg", "--out", tmp_path / "run",
    )  # fmt: skip
    assert res.exit_code == 0, res
    names = [[name for name, _ in blocks] for blocks in given]
    assert names == [["title", "readings"]] * 2, given  # the run's head, then the ablation's "all" row
    assert given[0] == given[1] and all(width > 1 for _, width in given[0])
