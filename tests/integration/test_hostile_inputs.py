"""Issue 17 §9, as a hostile user: data that reaches a spreadsheet or a terminal, and ``tl predict --out``.

One tiny BERT run is trained on labels and texts made to attack: a label that is a spreadsheet
formula, one that writes the clipboard (OSC 52) and clears the screen, texts that start with
``-`` and ``@``.  predictions.csv and ``tl predict --out`` must quote every such cell with a
leading ``'`` (and ``tl errors`` must read them back exactly); no escape sequence may reach the
terminal through the run log, ``tl errors``, ``tl predict`` or an error line.  ``tl predict --out``
writes through a temporary file of its own and refuses to replace its input.
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult
from helpers import one_line_error

from tlzoo.infra.safe_text import printable, spreadsheet_cell, spreadsheet_value

FORMULA = '=HYPERLINK("http://evil.example","click")'
CLIPBOARD = "\x1b]52;c;ZXZpbA==\x07comedy\x1b[2J\x9b2J\x1b]8;;http://evil.example\x1b\\"
LABELS = {
    FORMULA: "action fast slow world director cast",
    CLIPBOARD: "funny comedy fun smart clever",
    "@drama": "drama love life moving beautiful family",
}
ESCAPES = ("\x1b", "\x07", "\x9b")


def _cli(args: list[Any]) -> CliResult:
    from click.testing import CliRunner

    from tlzoo.cli import cli

    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    exc = res.exception if not isinstance(res.exception, SystemExit) else None
    return CliResult(res.exit_code, res.stdout, res.stderr, exc)


def _no_escapes(text: str) -> None:
    for esc in ESCAPES:
        assert esc not in text, repr(text[max(0, text.find(esc) - 40) : text.find(esc) + 40])


@pytest.fixture(scope="module")
def hostile_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 texts in three classes whose labels attack spreadsheets and terminals; every text starts with '-'."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("hostile-data") / "hostile.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for _ in range(30):
            for label, words in LABELS.items():
                w.writerow(["-" + " ".join(rng.sample(words.split(), 3)), label])
    return path


@pytest.fixture(scope="module")
def hostile_run(tiny_bert_dir: Path, hostile_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(run folder, the run's log on stderr)."""
    out = tmp_path_factory.mktemp("hostile-run") / "run"
    args = ["run", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", hostile_csv]
    res = _cli([*args, "--head", "logreg", "--max-length", 16, "--out", out])
    assert res.exit_code == 0, res.stderr
    return out, res.stderr


# --------------------------------------------------------------------------- the helpers themselves
@pytest.mark.parametrize(
    "value", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'=x", "''=x", "'plain", "plain", "", "a=b"]
)
def test_spreadsheet_cells_read_back_exactly(value: str) -> None:
    cell = spreadsheet_cell(value)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert spreadsheet_value(cell) == value
    assert (cell == value) == (value.lstrip("'")[:1] not in ("=", "+", "-", "@", "\t", "\r") or value == "")


def test_printable_removes_escape_sequences_and_keeps_the_text() -> None:
    assert printable(CLIPBOARD) == "comedy"
    assert printable("a\x1b[31mred\x1b[0m b\x9b2Jc") == "ared bc"
    assert printable("tab\tand\nnewline\x00\x7f") == "tab\tand\nnewline??"
    assert printable("héllo wörld ✓") == "héllo wörld ✓"


# --------------------------------------------------------------------------- spreadsheets
def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _data_cells_are_quoted(rows: list[list[str]]) -> None:
    header = rows[0]
    data = [header.index(c) for c in ("id", "true", "predicted", "input") if c in header]
    for row in rows[1:]:
        for i in data:
            assert not row[i].startswith(("=", "+", "-", "@", "\t", "\r")), row
    for cell in header:
        assert not cell.startswith(("=", "+", "-", "@")), header


def test_predictions_csv_quotes_formulas(hostile_run: tuple[Path, str]) -> None:
    run, _ = hostile_run
    rows = _rows(run / "predictions.csv")
    _data_cells_are_quoted(rows)
    header = rows[0]
    trues = {r[header.index("true")] for r in rows[1:]}
    assert "'" + FORMULA in trues and "'@drama" in trues
    assert all(r[header.index("input")].startswith("'-") for r in rows[1:])
    assert f"p_{FORMULA}" in header  # the class name is kept whole in its column name


def test_tl_errors_reads_quoted_cells_back_and_prints_no_escapes(hostile_run: tuple[Path, str]) -> None:
    from tlzoo.commands.errors_analysis import read_predictions

    run, _ = hostile_run
    classes, examples = read_predictions(run)
    assert set(classes) == set(LABELS)
    assert {e.true for e in examples} <= set(LABELS) and all(e.input.startswith("-") for e in examples)
    assert all(e.p_true > 0 for e in examples)  # the true label found its p_ column: the quote was removed
    res = _cli(["errors", run, "--top", 50])
    assert res.exit_code == 0, res.stderr
    _no_escapes(res.stdout)
    assert FORMULA in res.stdout and "comedy" in res.stdout


def test_tl_errors_json_keeps_the_labels_and_escapes_controls(hostile_run: tuple[Path, str]) -> None:
    run, _ = hostile_run
    res = _cli(["errors", run, "--json", "--top", 90])
    assert res.exit_code == 0, res.stderr
    _no_escapes(res.stdout)
    result = json.loads(res.stdout)
    assert set(result["classes"]) == set(LABELS)  # exact, escape sequences included, for a program to read


def test_predict_data_on_a_terminal_prints_no_escapes() -> None:
    """``tl predict --data`` without --out writes CSV to stdout: exact when piped, made printable on a terminal."""
    import io

    from tlzoo.commands.prediction import _Printable

    screen = io.StringIO()
    terminal = _Printable(screen)
    writer = csv.writer(terminal)
    writer.writerow(["0", CLIPBOARD, "0.5"])
    terminal.flush()
    assert screen.getvalue() == "0,comedy,0.5\n"


def test_run_log_prints_no_escapes(hostile_run: tuple[Path, str]) -> None:
    _, log = hostile_run
    assert "comedy" in log and FORMULA in log  # the classes are named ...
    _no_escapes(log)  # ... without the sequences they hold


def test_predict_out_quotes_formulas_and_prints_no_escapes(hostile_run: tuple[Path, str], tmp_path: Path) -> None:
    run, _ = hostile_run
    out = tmp_path / "p.csv"
    res = _cli(["predict", run, "--out", out, "--", "=cmd|' /C calc'!A0", "-funny comedy", "@fun"])
    assert res.exit_code == 0, res.stderr
    rows = _rows(out)
    _data_cells_are_quoted(rows)
    assert [r[-1] for r in rows[1:]] == ["'=cmd|' /C calc'!A0", "'-funny comedy", "'@fun"]
    res = _cli(["predict", run, "\x1b]52;c;ZXZpbA==\x07funny \x1b[2Jcomedy"])
    assert res.exit_code == 0, res.stderr
    _no_escapes(res.output)
    assert "funny comedy" in res.stdout
    res = _cli(["predict", run, "--data", tmp_path / "missing\x1b]52;c;eA==\x07.csv"])
    one_line_error(res, "missing")
    _no_escapes(res.output)


def test_predict_json_lines_keep_the_data(hostile_run: tuple[Path, str]) -> None:
    run, _ = hostile_run
    res = _cli(["predict", run, "=1+2", "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["input"] == "=1+2"  # JSON is not a spreadsheet: no quote


# --------------------------------------------------------------------------- tl predict --out
def test_predict_out_refuses_folders_and_its_own_input(
    hostile_run: tuple[Path, str], hostile_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = hostile_run
    before = hostile_csv.read_bytes()
    one_line_error(_cli(["predict", run, "--data", hostile_csv, "--out", hostile_csv]), "--data file it reads")
    assert hostile_csv.read_bytes() == before
    texts = tmp_path / "texts.txt"
    texts.write_text("funny comedy\n")
    one_line_error(_cli(["predict", run, "--file", texts, "--out", texts]), "--file file it reads")
    assert texts.read_text() == "funny comedy\n"
    for folder in ("/", "."):
        one_line_error(_cli(["predict", run, "funny", "--out", folder]), "is a folder", "predictions.csv")
    monkeypatch.chdir(tmp_path)
    one_line_error(_cli(["predict", run, "funny", "--out", "."]), "is a folder")
    one_line_error(_cli(["predict", run, "funny", "--out", tmp_path / "nope" / "p.csv"]), "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.txt"]


def test_two_predictions_into_one_out_each_write_it_whole(
    hostile_run: tuple[Path, str], hostile_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second ``tl predict`` writing the same --out while the first is writing (run from inside the
    first's writer, so the overlap is certain): both succeed, the file holds one whole result, no
    temporary file is left."""
    from tlzoo.commands import batch_predict

    run, _ = hostile_run
    out = tmp_path / "shared.csv"
    real = batch_predict.write_predictions
    inner: list[Any] = []

    def overlapping(predictor: Any, records: Any, stream: Any, **kw: Any) -> Any:
        if not inner:
            inner.append(None)  # the inner run's own call goes straight through
            inner[0] = _cli(["predict", run, "funny comedy", "--out", out])  # 1 row, while we hold our file
        return real(predictor, records, stream, **kw)

    monkeypatch.setattr(batch_predict, "write_predictions", overlapping)
    res = _cli(["predict", run, "--data", hostile_csv, "--out", out])
    assert inner[0].exit_code == 0, inner[0].stderr
    assert res.exit_code == 0, res.stderr
    assert "wrote 90 predictions" in res.stderr
    assert len(_rows(out)) == 91  # the header and the 90 rows of the run that finished last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # the mode of a new file, not mkstemp's 0600
