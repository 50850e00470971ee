"""Multimodal runs (issue 16): image, text and tabular columns of one dataset in one fused model."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import one_line_error

WORDS = {"fun": "a funny clever comedy", "dull": "a dull boring drama"}


@pytest.fixture(scope="module")
def items_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 records: a digit image, a title, a price and a brand; the label needs the image (parity) and the
    title (fun or dull); some titles, prices and one image are missing; 'caption' is a column no input uses."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("items")
    (folder / "img").mkdir()
    digits, rng, rows = load_digits(), random.Random(0), []
    for i in range(160):
        Image.fromarray((digits.images[i] * 16).astype("uint8")).resize((32, 32)).save(folder / "img" / f"{i}.png")
        tone = rng.choice(["fun", "dull"])
        rows.append(
            {
                "id": f"r{i}",
                "image": f"img/{i}.png" if i != 5 else "img/missing.png",
                "title": WORDS[tone] if i % 17 else "",
                "price": f"{rng.random() * 10:.2f}" if i % 13 else "",
                "brand": rng.choice("abc"),
                "caption": "unused",
                "label": f"{'even' if digits.target[i] % 2 == 0 else 'odd'}-{tone}",
            }
        )
    path = folder / "items.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def fused_run(items_csv: Path, tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One three-input run (image, text, two tabular columns) through the Python API, shared by the tests."""
    from tlzoo import Engine, RunConfig

    logs: list[str] = []
    cfg = RunConfig().use_inputs({"image": "efficientnet_lite0", "title": "bert"}, tabular=["price", "brand"])
    cfg.model.options["weights"] = {"title": str(tiny_bert_dir)}
    cfg.model.image_size = 64
    cfg.data.path = str(items_csv)
    cfg.head.name = "logreg"
    cfg.out = str(tmp_path_factory.mktemp("fused") / "run")
    cfg.progress = False
    result = Engine(log=logs.append).run(cfg)
    return {"result": result, "logs": logs, "cfg": cfg}


@pytest.mark.transfer
def test_a_three_input_run_logs_unused_columns_and_missing_inputs(fused_run: dict[str, Any]) -> None:
    logs, metrics = fused_run["logs"], fused_run["result"].metrics
    assert any("columns not used: caption" in line for line in logs), logs
    fitted = next(line for line in logs if "fitted concat on" in line)
    assert "price numeric (standardised, with a missing flag), brand categorical (3 categories)" in fitted, fitted
    lacking = next(line for line in logs if "records lacking an input" in line)
    assert "title in 10" in lacking and "price in 13" in lacking and "image in 1" in lacking, lacking
    assert metrics["run"]["plugin"] == "fusion"
    n = 1280 + 32 + 0  # image and title features; the tabular width comes after fitting
    width = next(line for line in logs if "features:" in line and "train (" in line)
    assert f"({metrics['run']['n_train']}, " in width and int(width.split(", ")[1].split(")")[0]) > n
    assert metrics["test"]["accuracy"] > 0.4  # four classes; the text half alone is 0.5 at most


@pytest.mark.transfer
def test_the_run_reports_what_each_input_adds(fused_run: dict[str, Any]) -> None:
    """Each input alone, all but one, all: head fits on the cached features, in metrics.json, the page and the card."""
    result = fused_run["result"]
    table = result.metrics["ablation"]
    kinds = [(tuple(r["inputs"]), r["kind"]) for r in table["rows"]]
    assert kinds[0] == (("image", "title", "tabular"), "all") and len(kinds) == 7
    assert {k for _, k in kinds} == {"all", "alone", "all but one"} and table["head"] == "logreg"
    everything = table["rows"][0]
    assert everything["accuracy"] == result.metrics["test"]["accuracy"]  # the same head on the same features
    assert all(lo <= r["accuracy"] <= hi for r in table["rows"] for lo, hi in [r["accuracy_ci"]])
    page = (Path(result.run_dir) / "report.html").read_text(encoding="utf-8")
    card = (Path(result.run_dir) / "README.md").read_text(encoding="utf-8")
    assert 'id="inputs"' in page and "What each input adds" in page
    assert "| title + tabular | all but one |" in card
    # a card for records, not texts: no text pipeline tag, and a record to predict
    assert "pipeline_tag" not in card and "records with several inputs (image, title, price, brand)" in card
    shown = next(line for line in card.splitlines() if line.startswith("tl predict "))
    record = json.loads(shown.split(" ", 3)[3].strip("'"))
    assert record["image"] == "path/to/image.png" and record["title"] == "a new example text"
    assert 2 < float(record["price"]) < 8 and record["brand"] in "abc"  # the training mean, a known category


@pytest.mark.transfer
def test_predict_takes_records_that_lack_an_input(fused_run: dict[str, Any], items_csv: Path) -> None:
    from tlzoo import Engine

    run_dir = fused_run["result"].run_dir
    image = str(items_csv.parent / "img" / "3.png")
    full = {"image": image, "title": WORDS["dull"], "price": "3.5", "brand": "a"}
    logs: list[str] = []
    out = Engine(log=logs.append).predict(run_dir, [full, {"title": WORDS["fun"]}, {"image": image}])
    assert len(out) == 3 and all(abs(sum(o["probabilities"].values()) - 1) < 1e-4 for o in out)
    said = next(line for line in logs if "records lacking an input" in line)  # stand-ins are never silent
    assert "image in 1, title in 1, tabular in 2 of 3" in said, said
    with open(Path(run_dir) / "predictions.csv", encoding="utf-8") as fh:
        predictions = list(csv.DictReader(fh))
    assert len(predictions) == fused_run["result"].metrics["test"]["n"]


@pytest.mark.transfer
def test_the_export_of_a_fused_run_is_checked(fused_run: dict[str, Any], run_cli: Any, tmp_path: Path) -> None:
    res = run_cli("export", fused_run["result"].run_dir, "--to", tmp_path / "exp")
    assert res.exit_code == 0 and "max abs diff 0" in res.stderr, res
    manifest = json.loads((tmp_path / "exp" / "export.json").read_text(encoding="utf-8"))
    assert any(f.startswith("assets/input-2") for f in manifest["files"])  # the fitted tabular encoder


@pytest.mark.transfer
def test_an_interrupted_fused_run_resumes_to_the_uninterrupted_result(
    fused_run: dict[str, Any], tmp_path: Path
) -> None:
    """An fc head on the cached fused features, stopped after its second epoch and resumed."""
    import copy

    from tlzoo import Engine

    cfg = copy.deepcopy(fused_run["cfg"])
    cfg.head.name, cfg.train.head_epochs = "fc", 4
    cfg.out = str(tmp_path / "whole")
    whole = Engine(log=lambda m: None).run(cfg)

    def stop_after_epoch_2(msg: str) -> None:
        if "epoch 2/4" in msg:
            raise KeyboardInterrupt

    cfg.out = str(tmp_path / "stopped")
    with pytest.raises(KeyboardInterrupt):
        Engine(log=stop_after_epoch_2).run(cfg)
    assert (tmp_path / "stopped.incomplete" / "checkpoint.pt").is_file()
    resumed = Engine(log=lambda m: None).resume(tmp_path / "stopped")
    assert resumed.metrics["test"]["accuracy"] == whole.metrics["test"]["accuracy"]
    assert resumed.metrics["test"]["confusion_matrix"] == whole.metrics["test"]["confusion_matrix"]


def test_the_tabular_encoder_standardises_flags_and_one_hot_encodes(tmp_path: Path) -> None:
    from tlzoo.api.interfaces import Dataset
    from tlzoo.plugins.fusion.fused import TabularEncoder

    rows = [{"price": "1", "brand": "a"}, {"price": "3", "brand": "b"}, {"price": "", "brand": "a"}]
    enc = TabularEncoder(["price", "brand"])
    enc.fit(Dataset(rows, ["x", "y", "x"], "tabular"))
    assert enc.num_features == 4  # price and its missing flag, brand a / b
    assert enc.transform({"price": "3", "brand": "b"}, False).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert enc.transform({"price": "", "brand": "zz"}, False).tolist() == [0.0, 1.0, 0.0, 0.0]
    enc.save_assets(str(tmp_path))
    again = TabularEncoder(["price", "brand"])
    again.load_fitted(str(tmp_path))
    assert np.array_equal(again.transform(rows[0], False).numpy(), enc.transform(rows[0], False).numpy())
    assert enc.fit_summary() == (
        "tabular price numeric (standardised, with a missing flag), brand categorical (2 categories)"
    )


def test_a_number_column_with_one_word_in_it_is_said_to_be_read_as_categories() -> None:
    from tlzoo.api.interfaces import Dataset
    from tlzoo.plugins.fusion.fused import TabularEncoder

    rows = [{"price": str(i)} for i in range(19)] + [{"price": "abc"}]
    enc = TabularEncoder(["price"])
    enc.fit(Dataset(rows, ["x"] * 20, "tabular"))
    assert "price" in enc.categories  # one word: the column is categories, as documented
    summary = enc.fit_summary()
    assert "price categorical (20 categories; 19 of 20 values are numbers, not 'abc'" in summary, summary


def test_bad_fused_arguments_are_one_line(run_cli: Any, items_csv: Path, tmp_path: Path) -> None:
    def run(*args: Any) -> Any:
        return run_cli("run", "-q", "--data", items_csv, "--out", tmp_path / "bad", *args)

    one_line_error(run("--plugin", "image=efficientnet_lite0", "--plugin", "bert"), "every --plugin is COLUMN=PLUGIN")
    one_line_error(run("--plugin", "bert", "--plugin", "glove"), "one backbone, or COLUMN=PLUGIN")
    one_line_error(run("--plugin", "photo=efficientnet_lite0"), "no column 'photo'")
    one_line_error(run("--plugin", "image=efficientnet_lite0", "--weights", "text=/x"), "no --plugin input")
    one_line_error(run("--plugin", "image=fusion"), "a fused run takes an image or a text backbone per column")
    one_line_error(
        run("--plugin", "image=efficientnet_lite0", "--plugin", "title=bert", "--model", "title=all-MiniLM-L6-v2"),
        "a column's model goes in --plugin: --plugin title=all-MiniLM-L6-v2",
    )


def test_the_built_in_emoji_set_gives_pictures_names_and_groups() -> None:
    """Debian's unicode-data and fonts-noto-color-emoji (make data) rendered once: three views of one set."""
    from PIL import Image

    from tlzoo.api.errors import TlzooError
    from tlzoo.api.interfaces import DataOptions
    from tlzoo.plugins.fusion.emoji import EmojiImages, EmojiNames, EmojiRecords

    records = EmojiRecords().load("emoji", DataOptions(fields=("image", "name")))
    assert 1500 < len(records) < 2500 and len(set(records.labels)) == 9
    first = records.examples[0]
    assert first["name"] == "grinning face" and records.labels[0] == "Smileys & Emotion"
    with Image.open(first["image"]) as img:
        colours = np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)
    assert img.size == (64, 64) and len(colours) > 20  # a drawn glyph, not blank
    assert not any("skin tone" in r["name"] for r in records.examples)
    images, names = EmojiImages().load("emoji-images", DataOptions()), EmojiNames().load("emoji-names", DataOptions())
    assert images.ids == names.ids == records.ids and names.examples[0] == "grinning face"
    with pytest.raises(TlzooError, match="no field 'title'; its fields are image and name"):
        EmojiRecords().load("emoji", DataOptions(fields=("image", "title")))


@pytest.mark.transfer
def test_tl_predict_reads_records_as_json_or_from_the_table(
    fused_run: dict[str, Any], items_csv: Path, run_cli: Any, tmp_path: Path
) -> None:
    run_dir = fused_run["result"].run_dir
    res = run_cli("predict", run_dir, '{"title": "a dull boring drama"}', "--json")
    assert res.exit_code == 0, res
    row = json.loads(res.stdout.splitlines()[0])
    assert row["input"] == '{"title": "a dull boring drama"}' and row["label"].endswith(("fun", "dull"))
    one_line_error(run_cli("predict", run_dir, "a dull drama"), "pass each input as a JSON object")
    one_line_error(run_cli("predict", run_dir, '{"colour": "red"}'), "Field 'colour' is not an input of this run")
    out = tmp_path / "p.csv"
    res = run_cli("predict", run_dir, "--data", items_csv, "--limit", "20", "--out", out)
    assert res.exit_code == 0 and "accuracy" in res.stderr, res
    with open(out, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20 and json.loads(rows[0]["input"])["image"].endswith("0.png")
