"""``tl predict RUN --data SOURCE``: one row per record of a CSV/JSONL (labels optional), an image
folder (class sub-folders or flat) or a built-in dataset, with the input, the predicted label, its
probability, every class probability, and the true label and loss where the source has them.

Also the positional-form mistakes of issue 11: a CSV path or a folder given where texts are
expected is refused with a pointer to ``--data``, never classified as a string.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# records with quoted newlines, commas and doubled quotes: each must stay one record
MULTILINE = [
    ("r1", "funny comedy fun\nsmart and clever,\nreally charming", "comedy"),
    ("r2", 'drama, love and "life"\n\nmoving family story', "drama"),
    ("r3", "action fast world director", "action"),
    ("r4", "a clever, funny\nfilm", ""),  # no label: predicted, not scored
    ("r5", "slow man long\ncast", "western"),  # a label the run does not know
]


def _cli(args: list[Any]) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from tlzoo.cli import cli

    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def text_run(word_bert_dir: Path, topics_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("batch") / "text"
    code, _, stderr = _cli(
        [
            "run",
            "--plugin",
            "bert",
            "--weights",
            word_bert_dir,
            "--data",
            topics_csv,
            "--head",
            "logreg",
            "--max-length",
            32,
            "--out",
            out,
            "-q",
        ]
    )
    assert code == 0, stderr
    return out


@pytest.fixture(scope="module")
def image_run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("batch") / "images"
    code, _, stderr = _cli(
        ["run", "--plugin", "lenet", "--no-pretrained", "--data", image_folder, "--head", "logreg", "--out", out, "-q"]
    )
    assert code == 0, stderr
    return out


def _proba(run: Path, inputs: list[Any]) -> np.ndarray:
    from tlzoo.commands.predict import Predictor

    return Predictor.load(run).predict_proba(inputs)


def test_csv_with_quoted_newlines_gives_one_row_per_record(text_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "new.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        w.writerows(MULTILINE)
    assert data.read_text().count("\n") > len(MULTILINE) + 1  # the file really has more lines than records
    out = tmp_path / "predictions.csv"
    code, _, stderr = _cli(["predict", text_run, "--data", data, "--out", out])
    assert code == 0, stderr
    rows = _read(out)
    classes = json.loads((text_run / "model.json").read_text())["classes"]
    assert list(rows[0]) == ["id", "true", "predicted", *[f"p_{c}" for c in classes], "probability", "loss", "input"]
    assert [r["id"] for r in rows] == [r[0] for r in MULTILINE]
    assert [r["input"] for r in rows] == [r[1] for r in MULTILINE]  # newlines kept inside the input
    assert [r["true"] for r in rows] == [r[2] for r in MULTILINE]
    expected = _proba(text_run, [r[1] for r in MULTILINE])
    for row, p in zip(rows, expected):
        got = np.array([float(row[f"p_{c}"]) for c in classes])
        assert np.abs(got - p).max() <= 1e-5 + 1e-9
        assert row["predicted"] == classes[int(p.argmax())]
        assert float(row["probability"]) == pytest.approx(p.max(), abs=1e-5)
    for row, p, (_, _, label) in zip(rows, expected, MULTILINE):
        if label in classes:
            assert float(row["loss"]) == pytest.approx(-math.log(p[classes.index(label)]), abs=1e-4)
        else:
            assert row["loss"] == ""  # unlabelled or an unknown class: no loss
    scored = sum(1 for r in MULTILINE if r[2] in classes)
    correct = sum(1 for row, r in zip(rows, MULTILINE) if r[2] in classes and row["predicted"] == r[2])
    assert f"accuracy {correct / scored:.4f} on {scored} labelled records" in stderr
    assert "5 records with labels" in stderr and "'western'" in stderr  # the unknown label is named


def test_unlabelled_csv_with_another_text_column(text_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "reviews.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["review", "source"])
        w.writerows([(r[1], "web") for r in MULTILINE])
    code, stdout, stderr = _cli(["predict", text_run, "--data", data, "--text-column", "review"])
    assert code == 0, stderr
    rows = _rows(stdout)  # no --out: the CSV goes to stdout, the log to stderr
    assert len(rows) == len(MULTILINE) and "true" not in rows[0] and "loss" not in rows[0]
    assert [r["input"] for r in rows] == [r[1] for r in MULTILINE]
    assert [r["id"] for r in rows] == [str(i) for i in range(len(MULTILINE))]
    assert "without labels" in stderr


def test_jsonl_json_lines_and_limit(text_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "new.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": lab}) for _, t, lab in MULTILINE) + "\n")
    code, stdout, stderr = _cli(["predict", text_run, "--data", data, "--json", "--limit", 3])
    assert code == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [x["input"] for x in lines] == [r[1] for r in MULTILINE[:3]]
    assert all(x["true"] == r[2] and x["loss"] > 0 for x, r in zip(lines, MULTILINE))
    assert all(abs(sum(x["probabilities"].values()) - 1) < 1e-5 for x in lines)


def test_unknown_columns_are_one_line_errors(text_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "new.csv"
    data.write_text("text,label\nfun,comedy\n")
    code, _, stderr = _cli(["predict", text_run, "--data", data, "--label-column", "gold"])
    assert code == 2 and "no column 'gold'" in stderr and "Traceback" not in stderr
    code, _, stderr = _cli(["predict", text_run, "--data", data, "--text-column", "txt"])
    assert code == 2 and "no column 'txt'" in stderr and "--text-column" in stderr


def test_image_folder_with_class_folders_and_flat(image_run: Path, image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    code, _, stderr = _cli(["predict", image_run, "--data", image_folder, "--out", out])
    assert code == 0, stderr
    rows = _read(out)
    images = sorted(image_folder.rglob("*.png"))
    assert len(rows) == len(images) == 120
    assert {r["input"] for r in rows} == {str(p) for p in images}
    assert all(r["true"] == Path(r["input"]).parent.name and r["loss"] for r in rows)
    classes = json.loads((image_run / "model.json").read_text())["classes"]
    expected = _proba(image_run, [r["input"] for r in rows[:10]])
    got = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows[:10]])
    assert np.abs(got - expected).max() <= 1e-5 + 1e-9

    flat = tmp_path / "flat"
    flat.mkdir()
    for p in images[:7]:
        (flat / f"{p.parent.name}-{p.name}").write_bytes(p.read_bytes())
    code, stdout, stderr = _cli(["predict", image_run, "--data", flat])
    assert code == 0, stderr
    rows = _rows(stdout)
    assert len(rows) == 7 and "true" not in rows[0]
    assert [r["id"] for r in rows] == sorted(f.name for f in flat.iterdir())


def test_builtin_dataset(image_run: Path) -> None:
    code, stdout, stderr = _cli(["predict", image_run, "--data", "digits", "--limit", 5])
    assert code == 0, stderr
    rows = _rows(stdout)
    assert [r["id"] for r in rows] == [f"digit{i}" for i in range(5)]
    assert [r["true"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert [r["input"] for r in rows] == [r["id"] for r in rows]  # in-memory images: the id stands in


def test_positional_paths_point_to_data(text_run: Path, image_run: Path, image_folder: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    small.write_text("text\nfunny comedy\n")
    code, stdout, stderr = _cli(["predict", text_run, small])
    assert code == 2 and "--data" in stderr and str(small) in stderr and not stdout  # nothing classified
    code, _, stderr = _cli(["predict", text_run, "--file", small])
    assert code == 2 and f"--data {small}" in stderr
    code, _, stderr = _cli(["predict", image_run, image_folder])
    assert code == 2 and "is a folder" in stderr and "--data" in stderr
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("text,label\nfunny comedy,comedy\n")
    code, _, stderr = _cli(["predict", image_run, "--data", labelled])
    assert code == 2 and "vision" in stderr and "Traceback" not in stderr
    code, _, stderr = _cli(["predict", text_run, "--data", image_folder])
    assert code == 2 and "Traceback" not in stderr
    code, _, stderr = _cli(["predict", text_run, "funny", "--data", small])
    assert code == 2 and "either --data" in stderr


def test_positional_inputs_still_work(text_run: Path, tmp_path: Path) -> None:
    code, stdout, stderr = _cli(["predict", text_run, "funny comedy fun", "drama love life"])
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == 2 and lines[0].endswith("\tfunny comedy fun")
    lines_file = tmp_path / "texts.txt"
    lines_file.write_text("funny comedy fun\ndrama love life\n")
    out = tmp_path / "p.csv"
    code, _, stderr = _cli(["predict", text_run, "--file", lines_file, "--out", out])
    assert code == 0, stderr
    assert [r["input"] for r in _read(out)] == ["funny comedy fun", "drama love life"]
