"""Data edge cases and option checking (issue 8, items 5, 8 and 9).

Every refusal is driven through the CLI: exit code 2, exactly one ``Error:`` line on
stderr, no traceback, no run directory and no ``.incomplete`` left behind.  Inputs the
tool accepts (a BOM, a 16-bit PNG, a huge image, a 200,000-character field) are read
correctly, and whatever is dropped or doubtful is said in a ``warning:`` line.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import one_line_error
from PIL import Image

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import DataOptions, Dataset
from tlzoo.engine.data import RowReport, stratified_split
from tlzoo.plugins.data.files import CSVSource, JSONLSource

WORDS = ("funny comedy fun smart clever", "drama love life moving family")


def assert_clean_error(res: Any, fragment: str, out: Path | None = None) -> str:
    return one_line_error(res, fragment, out=out)


def _rows(n: int = 12) -> list[tuple[str, str]]:
    """``n`` texts per class of two classes the tiny BERT vocabulary knows."""
    return [(f"{WORDS[k]} {i}", ("comedy", "drama")[k]) for i in range(n) for k in (0, 1)]


def _write_csv(path: Path, rows: list[Any], header: tuple[str, ...] = ("text", "label"), bom: bool = False) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _bert_run(run_cli: Any, tiny_bert_dir: Path, data: Path, out: Path, *args: Any, quiet: bool = True) -> Any:
    flags = ["-q"] if quiet else []
    return run_cli(
        "run",
        *flags,
        "--plugin",
        "bert",
        "--weights",
        tiny_bert_dir,
        "--data",
        data,
        "--out",
        out,
        "--max-length",
        "16",
        "--head",
        "logreg",
        "--device",
        "cpu",
        *args,
    )


# --------------------------------------------------------------------------- BOM
def test_utf8_bom_csv_and_jsonl_are_read(tmp_path: Path) -> None:
    csv_path = _write_csv(tmp_path / "bom.csv", _rows(2), bom=True)
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")
    ds = CSVSource().load(str(csv_path), DataOptions())
    assert ds.examples[0] == f"{WORDS[0]} 0" and set(ds.labels) == {"comedy", "drama"} and not ds.notes
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": c}) + "\n" for t, c in _rows(2)), encoding="utf-8-sig")
    assert jsonl.read_bytes().startswith(b"\xef\xbb\xbf")
    assert JSONLSource().load(str(jsonl), DataOptions()).labels == [c for _, c in _rows(2)]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """A finished text run trained from a CSV with a byte-order mark (``tl run`` end to end)."""
    from click.testing import CliRunner

    from tlzoo.cli import cli

    folder = tmp_path_factory.mktemp("bom-run")
    data = _write_csv(folder / "bom.csv", _rows(), bom=True)
    out = folder / "run"
    res = CliRunner().invoke(
        cli,
        [
            "run",
            "-q",
            "--plugin",
            "bert",
            "--weights",
            str(tiny_bert_dir),
            "--data",
            str(data),
            "--out",
            str(out),
            "--max-length",
            "16",
            "--head",
            "logreg",
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def test_tl_run_reads_a_bom_csv(text_run: Path) -> None:
    assert json.loads((text_run / "model.json").read_text())["classes"] == ["comedy", "drama"]


# --------------------------------------------------------------------------- long fields, broken quoting
def test_a_field_over_131072_characters_is_read(tmp_path: Path) -> None:
    long_text = "funny " * 40_000  # 240,000 characters: over csv's default field limit
    path = _write_csv(tmp_path / "long.csv", [(long_text, "comedy"), ("drama love", "drama")])
    ds = CSVSource().load(str(path), DataOptions())
    assert ds.examples[0] == long_text and ds.labels == ["comedy", "drama"]


def test_an_unclosed_quote_is_refused_with_its_line(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('text,label\nfine film,comedy\n"never closed,drama\nmore,comedy\n')
    out = tmp_path / "run"
    assert_clean_error(_bert_run(run_cli, tiny_bert_dir, path, out), "line 3 cannot be parsed as CSV", out)


def test_an_unquoted_comma_that_shifts_the_label_is_refused(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path) -> None:
    path = tmp_path / "shifted.csv"
    path.write_text("text,label\n" + "".join(f"{t},{c}\n" for t, c in _rows(4)) + "good film, really,comedy\n")
    out = tmp_path / "run"
    line = assert_clean_error(_bert_run(run_cli, tiny_bert_dir, path, out), "line 10 has more fields", out)
    assert "must be quoted" in line


# --------------------------------------------------------------------------- missing labels and fields
def test_missing_labels_and_fields_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text(
        "text,label\n" + "".join(f"{t},{c}\n" for t, c in _rows(3)) + "no label,\nnan label,NaN\nshort row\n,drama\n"
    )
    ds = CSVSource().load(str(path), DataOptions())
    assert set(ds.labels) == {"comedy", "drama"}, "NaN and empty labels never become a class"
    assert len(ds) == 7 and ds.examples[-1] == "", "an empty text with a label is an example"
    (note,) = ds.notes
    assert note.startswith("dropped 3 of 10 rows of 'gaps.csv':")
    assert "2 with an empty, NaN or null label (lines 8, 9)" in note and "1 missing the 'label' field (line 10)" in note

    jsonl = tmp_path / "gaps.jsonl"
    rows = [{"text": t, "label": c} for t, c in _rows(3)]
    rows += [
        {"text": "a", "label": None},
        {"text": "b", "label": math.nan},
        {"text": "c"},
        {"label": "drama"},
        {"text": "d", "label": 1.0},
        {"text": "e", "label": 1},
    ]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json.dumps writes NaN for math.nan
    ds = JSONLSource().load(str(jsonl), DataOptions())
    assert set(ds.labels) == {"comedy", "drama", "1"}, "1.0 and 1 are one class; null and NaN none"
    (note,) = ds.notes
    assert "dropped 4 of 12 rows" in note and "missing the 'text' field (line 10)" in note


def test_a_label_that_may_mean_missing_is_kept_with_a_warning() -> None:
    report = RowReport("x.csv")
    report.total = 3
    for label in ("None", "None", "pos"):
        report.keep_label(label)
    (note,) = report.notes()
    assert "the label 'None' (2 rows of 'x.csv') is kept as a class" in note


def test_tl_run_says_how_many_rows_it_dropped(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("text,label\n" + "".join(f"{t},{c}\n" for t, c in _rows()) + "unlabelled,\nalso,nan\n")
    out = tmp_path / "run"
    res = _bert_run(run_cli, tiny_bert_dir, path, out, quiet=False)
    assert res.exit_code == 0, res
    assert (
        "warning: dropped 2 of 26 rows of 'gaps.csv': 2 with an empty, NaN or null label (lines 26, 27)." in res.stderr
    )
    assert json.loads((out / "model.json").read_text())["classes"] == ["comedy", "drama"]


def test_every_row_unlabelled_is_one_error_that_says_why(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path) -> None:
    path = tmp_path / "none.csv"
    path.write_text("text,label\na,\nb,NaN\n")
    out = tmp_path / "run"
    line = assert_clean_error(_bert_run(run_cli, tiny_bert_dir, path, out), "no labelled examples", out)
    assert "dropped 2 of 2 rows" in line


# --------------------------------------------------------------------------- duplicate columns
def test_a_repeated_text_or_label_column_is_refused(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path) -> None:
    path = _write_csv(tmp_path / "dup.csv", [(t, c, "other") for t, c in _rows(4)], header=("text", "label", "text"))
    out = tmp_path / "run"
    line = assert_clean_error(
        _bert_run(run_cli, tiny_bert_dir, path, out), "has the column 'text' twice (columns 1 and 3)", out
    )
    assert "--text-column" in line
    jsonl = tmp_path / "dup.jsonl"
    jsonl.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "x", "label": "y"}\n')
    assert_clean_error(_bert_run(run_cli, tiny_bert_dir, jsonl, out), "has the column 'label' twice (line 2)", out)


def test_a_repeated_column_the_run_does_not_read_is_fine(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "dup.csv", [(t, c, 1, 2) for t, c in _rows(2)], header=("text", "label", "n", "n"))
    assert len(CSVSource().load(str(path), DataOptions())) == 4


# --------------------------------------------------------------------------- classes too small to split
def test_a_class_too_small_for_the_test_set_is_warned_about() -> None:
    labels = ["a"] * 20 + ["b"] * 20 + ["tiny"] * 2
    ds = Dataset([f"t{i}" for i in range(len(labels))], labels, modality="text")
    splits = stratified_split(ds, 0.15, 0.15, seed=0)
    assert "tiny" not in splits.test.labels
    assert any("'tiny' (2)" in n and "counts each as F1 0" in n and "at most 0.67" in n for n in splits.notes)


def test_macro_f1_counts_a_class_absent_from_test_as_zero(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path) -> None:
    """What the warning says is what metrics.json holds: the absent class's F1 is 0 and is averaged in."""
    path = _write_csv(tmp_path / "small.csv", [*_rows(), ("family drama love", "rare"), ("fun comedy", "rare")])
    out = tmp_path / "run"
    res = _bert_run(run_cli, tiny_bert_dir, path, out, quiet=False)
    assert res.exit_code == 0, res
    assert "warning: 1 class has too few examples to reach every split" in res.stderr
    report = json.loads((out / "metrics.json").read_text())["test"]
    assert report["per_class"]["rare"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    f1s = [report["per_class"][c]["f1"] for c in ("comedy", "drama", "rare")]
    assert report["macro_f1"] == pytest.approx(sum(f1s) / 3, abs=1e-3)


# --------------------------------------------------------------------------- options checked at config time
@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--limit", "-1"], "--limit (data.limit) must be 0 (all examples) or a positive number"),
        (["--max-length", "0"], "--max-length (model.max_length) must be a positive number of tokens"),
        (["--image-size", "-5"], "--image-size (model.image_size) must be a size in pixels from 1 to 1024"),
        (["--val-fraction", "1.2"], "--val-fraction (data.val_fraction) must be a fraction in [0, 1)"),
        (["--test-fraction", "0"], "--test-fraction 0 leaves no test split to score the run; add --cv K"),
        (["--val-fraction", "0.5", "--test-fraction", "0.5"], "their sum must be below 1"),
        (["--batch-size", "0"], "--batch-size (train.batch_size) must be at least 1"),
        (["--seed", "-1"], "--seed (seed) must be an integer in [0, 2**32)"),
        (["--set", "train.lr=0"], "--lr (train.lr) must be a positive learning rate"),
        (["--set", "train.label_smoothing=1"], "train.label_smoothing must be in [0, 1)"),
        (["--encoding", "utf-99"], "Unknown encoding 'utf-99'"),
    ],
)
def test_bad_numbers_are_refused_before_any_work(
    run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path, args: list[str], fragment: str
) -> None:
    out = tmp_path / "run"
    assert_clean_error(_bert_run(run_cli, tiny_bert_dir, text_csv, out, *args), fragment, out)


def test_pretrain_with_a_negative_limit(run_cli: Any, tmp_path: Path, text_csv: Path) -> None:
    out = tmp_path / "vectors"
    res = run_cli("pretrain", "--plugin", "word2vec", "--corpus", text_csv, "--out", out, "--limit", "-5")
    assert_clean_error(res, "--limit must be 0 (every text) or a positive number", out)


def test_config_validate_catches_values_set_in_python() -> None:
    from tlzoo.engine.config import RunConfig

    cfg = RunConfig()
    cfg.data.limit = -3
    with pytest.raises(TlzooError, match=r"data.limit\) must be 0"):
        cfg.validate()
    cfg = RunConfig()
    cfg.data.val_fraction, cfg.data.test_fraction = 0.6, 0.4
    with pytest.raises(TlzooError, match="sum must be below 1"):
        cfg.validate()
    RunConfig().validate()  # the defaults are valid


# --------------------------------------------------------------------------- head and strategy options
@pytest.fixture
def no_heavy_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading data or extracting features after a bad option would be a bug: make either fail loudly."""
    from tlzoo.engine.run import model
    from tlzoo.engine.zoo import Zoo

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("heavy work started before the options were checked")

    monkeypatch.setattr(model, "extract", boom)
    monkeypatch.setattr(Zoo, "data_source_for", boom)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--set", "head.C=abc"], "head.C of the logreg head must be a positive number or 'auto', got 'abc'"),
        (["--set", "head.C=-1"], "head.C of the logreg head must be a positive number"),
        (["--set", "head.CC=1"], "Unknown option head.CC for head 'logreg'. Did you mean 'C'?"),
        (["--set", "head.max_iter=0"], "head.max_iter of the logreg head must be an integer >= 1"),
        (["--head", "knn", "--set", "head.metric=cosin"], "Did you mean 'cosine'"),
        (
            ["--head", "rf", "--set", "head.n_estimators=ten"],
            "head.n_estimators of the rf head must be an integer >= 1",
        ),
        (["--head", "svm", "--set", "head.kernel=poly"], "head.kernel of the svm head must be one of 'linear', 'rbf'"),
        (["--head", "fc", "--set", "head.dropout=1.5"], "head.dropout of the fc head must be a number in [0, 1)"),
        (["--head", "fc", "--set", "head.activation=elu"], "head.activation of the fc head must be one of"),
        (["--set", "train.schedule=cosin"], "Unknown train.schedule 'cosin'. Did you mean 'cosine'"),
        (["--head", "fc", "--strategy", "fine-tune", "--unfreeze", "0"], "nothing would be fine-tuned"),
    ],
)
def test_bad_head_and_strategy_options_fail_before_data_is_read(
    run_cli: Any,
    tmp_path: Path,
    tiny_bert_dir: Path,
    text_csv: Path,
    no_heavy_work: None,
    args: list[str],
    fragment: str,
) -> None:
    out = tmp_path / "run"
    assert_clean_error(_bert_run(run_cli, tiny_bert_dir, text_csv, out, *args), fragment, out)


def test_head_c_abc_is_reported_at_step_one(
    run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path, no_heavy_work: None
) -> None:
    """The issue's case: without -q the log shows that step 2 (loading data) never started."""
    out = tmp_path / "run"
    res = _bert_run(run_cli, tiny_bert_dir, text_csv, out, "--set", "head.C=abc", quiet=False)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "[ 1/12]" in res.stderr and "[ 2/12]" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("Error: head.C of the logreg head")
    assert not out.exists() and not out.with_name("run.incomplete").exists()


def test_null_head_options_survive_the_config_round_trip() -> None:
    """to_toml writes None as "": reading it back must not turn a valid run into a refused one."""
    from tlzoo.engine.config import RunConfig
    from tlzoo.plugins.heads.sklearn_heads import RandomForestHead

    cfg = RunConfig()
    cfg.apply_overrides(["head.name=rf", "head.max_depth=null", "head.class_weight=balanced"])
    again = RunConfig()
    again.update(__import__("tomllib").loads(cfg.to_toml()))
    head = RandomForestHead(**again.head.params)
    assert head.params["max_depth"] is None and head.params["class_weight"] == "balanced"


# --------------------------------------------------------------------------- the wrong modality
@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of 6 small grey PNGs (dark and light)."""
    root = tmp_path_factory.mktemp("two-digits")
    for c, level in (("dark", 30), ("light", 220)):
        (root / c).mkdir()
        for i in range(6):
            Image.new("L", (20, 20), level + i).save(root / c / f"{i}.png")
    return root


def test_a_text_csv_given_to_a_vision_plugin(run_cli: Any, tmp_path: Path, text_csv: Path) -> None:
    out = tmp_path / "run"
    res = run_cli("run", "-q", "--plugin", "efficientnet", "--data", text_csv, "--out", out)
    line = assert_clean_error(res, "holds text, not image paths", out)
    assert "choose a text plugin" in line


def test_a_csv_of_long_texts_given_to_a_vision_plugin(run_cli: Any, tmp_path: Path) -> None:
    """A 300-character text is no file name (ENAMETOOLONG must not escape as a traceback)."""
    path = _write_csv(tmp_path / "long.csv", [("funny " * 50, "comedy"), ("drama " * 50, "drama")])
    out = tmp_path / "run"
    res = run_cli("run", "-q", "--plugin", "efficientnet", "--data", path, "--out", out)
    assert_clean_error(res, "holds text, not image paths", out)


def test_a_jsonl_given_to_a_vision_plugin_names_the_right_modality(run_cli: Any, tmp_path: Path) -> None:
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": c}) + "\n" for t, c in _rows(3)))
    out = tmp_path / "run"
    res = run_cli("run", "-q", "--plugin", "efficientnet", "--data", jsonl, "--out", out)
    line = assert_clean_error(res, "looks like text data but the backbone is vision", out)
    assert "choose a text plugin (see `tl list --modality text`)" in line


def test_an_image_folder_given_to_a_text_plugin_names_the_right_modality(
    run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, digit_folder: Path
) -> None:
    out = tmp_path / "run"
    line = assert_clean_error(_bert_run(run_cli, tiny_bert_dir, digit_folder, out), "looks like vision data", out)
    assert "choose a vision plugin (see `tl list --modality vision`)" in line


def test_a_folder_of_texts_given_to_a_vision_plugin(run_cli: Any, tmp_path: Path) -> None:
    for c in ("pos", "neg"):
        (tmp_path / "texts" / c).mkdir(parents=True)
        (tmp_path / "texts" / c / "1.txt").write_text("a text")
    out = tmp_path / "run"
    res = run_cli("run", "-q", "--plugin", "efficientnet", "--data", tmp_path / "texts", "--out", out)
    assert_clean_error(res, "holds .txt files, not images", out)


def test_an_image_given_to_a_text_run_at_predict_time(run_cli: Any, text_run: Path, digit_folder: Path) -> None:
    image = digit_folder / "dark" / "0.png"
    line = assert_clean_error(run_cli("predict", text_run, str(image)), "is an image file")
    assert "This run classifies text" in line
    ok = run_cli("predict", text_run, "funny clever comedy")
    assert ok.exit_code == 0, ok


# --------------------------------------------------------------------------- 16-bit and huge images
def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    from tlzoo.lib.vision.images import to_pil

    levels = np.array([[0, 257, 32768, 65535]], dtype=np.uint16).repeat(4, 0)
    path = tmp_path / "deep.png"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(to_pil(str(path)))
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255], "PIL's convert would give [0, 255, 255, 255]"
    assert np.asarray(to_pil(str(path), mode="L"))[0].tolist() == [0, 1, 128, 255]


def _lenet_run(run_cli: Any, data: Path, out: Path, *args: Any) -> Any:
    return run_cli(
        "run",
        "-q",
        "--plugin",
        "lenet5",
        "--no-pretrained",
        "--data",
        data,
        "--out",
        out,
        "--head",
        "logreg",
        "--device",
        "cpu",
        *args,
    )


def test_an_image_over_the_bomb_limit_is_downscaled_with_a_warning(
    run_cli: Any, tmp_path: Path, digit_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PIL's limit is lowered so a small image trips it: the same path a 14000x14000 image takes."""
    from tlzoo.lib.vision import images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 2x this raises DecompressionBombError
    monkeypatch.setattr(images, "LARGE_SIDE", 32)
    monkeypatch.setattr(images, "_WARNED", set())
    big = tmp_path / "big.png"
    Image.new("L", (96, 48), 200).save(big)
    small = images.to_pil(str(big))
    assert small.size == (32, 16) and small.mode == "RGB"
    assert Image.MAX_IMAGE_PIXELS == 1000, "PIL's limit is restored"

    data = tmp_path / "data"
    import shutil

    shutil.copytree(digit_folder, data)
    Image.new("L", (96, 96), 210).save(data / "light" / "huge.png")
    out = tmp_path / "run"
    res = _lenet_run(run_cli, data, out)
    assert res.exit_code == 0, res
    assert "downscaled to 32x32" in res.stderr and "huge.png" in res.stderr and "Traceback" not in res.output


def test_an_image_over_the_pixel_cap_is_one_error_saying_what_to_do(
    run_cli: Any, tmp_path: Path, digit_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlzoo.lib.vision import images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(images, "MAX_PIXELS", 5000)
    data = tmp_path / "data"
    import shutil

    shutil.copytree(digit_folder, data)
    Image.new("L", (100, 100), 210).save(data / "light" / "huge.png")
    out = tmp_path / "run"
    line = assert_clean_error(_lenet_run(run_cli, data, out), "is 100x100 pixels, over the 5,000-pixel cap", out)
    assert "TLZOO_MAX_IMAGE_PIXELS" in line


def test_text_given_to_a_vision_run_at_predict_time(run_cli: Any, tmp_path: Path, digit_folder: Path) -> None:
    out = tmp_path / "run"
    assert _lenet_run(run_cli, digit_folder, out).exit_code == 0
    line = assert_clean_error(run_cli("predict", out, "a funny film"), "is not an image file")
    assert "This run classifies images" in line


def test_backbone_option_names_are_checked_before_the_data_is_read(run_cli: Any, tmp_path: Path) -> None:
    """A misspelt model.options key is the error even when the data could not be read either: step 1 checks it."""
    res = run_cli(
        "run", "--plugin", "bert", "--data", tmp_path / "not-there.csv", "--set", "model.options.truncaton=tail",
        "--out", tmp_path / "r",
    )  # fmt: skip
    assert res.exit_code == 2, res
    assert "truncaton" in res.stderr and "truncation" in res.stderr and "not-there" not in res.stderr, res.stderr
