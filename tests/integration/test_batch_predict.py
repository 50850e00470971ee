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


# --------------------------------------------------------------------------- the Python API: Engine.predict
def _engine_predict(run: Path, *args: Any, **kwargs: Any) -> Any:
    from tlzoo import Engine

    return Engine(log=None).predict(run, *args, **kwargs)


def _labelled_csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        w.writerows(MULTILINE)
    return path


def test_engine_predict_gives_what_tl_predict_writes(text_run: Path, tmp_path: Path) -> None:
    """``Engine.predict(run, data=...)`` and ``tl predict --data ... --out`` are one call: the same rows,
    the same probabilities, the same accuracy; ``to_frame`` has the CSV's columns."""
    data = _labelled_csv(tmp_path / "new.csv")
    out = tmp_path / "cli.csv"
    code, _, stderr = _cli(["predict", text_run, "--data", data, "--out", out])
    assert code == 0, stderr
    written = _read(out)
    result = _engine_predict(text_run, data=data)
    assert [r["id"] for r in result] == [r["id"] for r in written]
    assert [r["input"] for r in result] == [r[1] for r in MULTILINE]
    assert [r.get("true", "") for r in result] == [r["true"] for r in written]
    classes = result.classes
    for row, line in zip(result, written):
        assert row["label"] == line["predicted"]
        assert all(abs(row["probabilities"][c] - float(line[f"p_{c}"])) <= 5e-6 for c in classes)
    scored = [r for r in MULTILINE if r[2] in classes]
    correct = sum(1 for row, r in zip(result, MULTILINE) if r[2] in classes and row["label"] == r[2])
    assert result.labelled == len(scored) and result.accuracy == pytest.approx(correct / len(scored))
    assert f"accuracy {result.accuracy:.4f} on {result.labelled} labelled records" in stderr
    assert result.unknown == {"western": 1} and result.out is None
    frame = result.to_frame()
    assert list(frame.columns) == list(written[0])
    assert frame["predicted"].tolist() == [r["predicted"] for r in written]
    assert result.proba.shape == (len(MULTILINE), len(classes))
    assert np.allclose(result.proba, _proba(text_run, [r[1] for r in MULTILINE]), atol=1e-6)


def test_engine_predict_a_str_is_one_input_and_a_dataframe_is_data(text_run: Path) -> None:
    import pandas as pd

    one = _engine_predict(text_run, "funny comedy fun")
    assert len(one) == 1 and one[0]["input"] == "funny comedy fun"  # one input, never one per character
    assert one.accuracy is None and one.labelled == 0
    texts = [r[1] for r in MULTILINE]
    frame = pd.DataFrame({"text": texts, "label": [r[2] or None for r in MULTILINE]})
    result = _engine_predict(text_run, data=frame)
    assert [r["input"] for r in result] == texts
    assert np.allclose(result.proba, _proba(text_run, texts), atol=1e-6)
    assert [r.get("true") for r in result] == [r[2] or None for r in MULTILINE]  # a missing label: unlabelled
    assert result.accuracy is not None and result.source == "a DataFrame"
    unlabelled = _engine_predict(text_run, frame.rename(columns={"text": "review"})[["review"]], text_column="review")
    assert unlabelled.accuracy is None and "true" not in unlabelled[0] and len(unlabelled) == len(texts)


def test_engine_predict_reads_gz_and_keeps_the_guards(text_run: Path, tmp_path: Path) -> None:
    """A .csv.gz reads as its CSV does; --out equal to --data, a named label column that is not there,
    and a label column that is the text column are one-line errors, and nothing is written."""
    import gzip

    from tlzoo import TlzooError

    data = _labelled_csv(tmp_path / "new.csv")
    packed = tmp_path / "new.csv.gz"
    packed.write_bytes(gzip.compress(data.read_bytes()))
    plain, zipped = _engine_predict(text_run, data=data), _engine_predict(text_run, data=packed)
    assert np.array_equal(plain.proba, zipped.proba) and plain.accuracy == zipped.accuracy
    before = data.read_bytes()
    with pytest.raises(TlzooError, match="is the --data file it reads"):
        _engine_predict(text_run, data=data, out=data)
    assert data.read_bytes() == before
    with pytest.raises(TlzooError, match="no column 'gold'.*leave it out"):
        _engine_predict(text_run, data=data, label_column="gold")
    with pytest.raises(TlzooError, match="both name 'text'"):
        _engine_predict(text_run, data=data, text_column="text", label_column="text")
    with pytest.raises(TlzooError, match="either --data"):
        _engine_predict(text_run, ["fun"], data=data)
    out = tmp_path / "p.jsonl"
    written = _engine_predict(text_run, data=packed, out=out, as_json=True)
    assert written.out == out and len(written) == 0 and written.n == len(MULTILINE)  # rows went to the file
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [x["label"] for x in lines] == [r["label"] for r in plain]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv", "new.csv.gz", "p.jsonl"]


def test_the_model_card_python_snippet_runs(text_run: Path) -> None:
    """The Python the model card (README.md of a run) shows is extracted and run against the run itself."""
    import os
    import re
    import subprocess
    import sys

    from tlzoo.commands.report import write_report

    card = write_report(text_run)[1].read_text(encoding="utf-8")
    blocks = re.findall(r"^(`{3,})python\n(.*?)^\1$", card, re.M | re.S)
    snippet = next(code for _, code in blocks if "predict" in code)
    assert "Engine().predict(" in snippet and "Predictor" not in snippet  # the one documented way
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TLZOO_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, env=env, timeout=300, cwd=text_run.parent
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    label, probability = proc.stdout.split()
    classes = json.loads((text_run / "model.json").read_text())["classes"]
    expected = _proba(text_run, ["a new example text"])[0]
    assert label == classes[int(expected.argmax())] and float(probability) == pytest.approx(expected.max(), abs=1e-5)


def test_images_from_a_dataframe_and_an_unlabelled_image_csv(
    image_run: Path, image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DataFrame of image paths (relative to the current folder, as the user wrote them) and a CSV of
    image paths without a label column classify as the same images given one by one."""
    import pandas as pd

    images = sorted(image_folder.rglob("*.png"))[:6]
    expected = _proba(image_run, [str(p) for p in images])
    monkeypatch.chdir(image_folder)
    relative = [str(p.relative_to(image_folder)) for p in images]
    frame = pd.DataFrame({"image": relative, "label": [p.parent.name for p in images]})
    result = _engine_predict(image_run, data=frame)
    assert np.allclose(result.proba, expected, atol=1e-6)
    assert [r["true"] for r in result] == [p.parent.name for p in images] and result.accuracy is not None
    table = tmp_path / "paths.csv"
    table.write_text("image\n" + "".join(f"{p}\n" for p in images))
    code, stdout, stderr = _cli(["predict", image_run, "--data", table])
    assert code == 0, stderr
    rows = _rows(stdout)
    assert "true" not in rows[0] and [r["input"] for r in rows] == [str(p) for p in images]
    classes = result.classes
    got = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    assert np.abs(got - expected).max() <= 1e-5 + 1e-9
