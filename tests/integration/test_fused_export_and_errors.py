"""A fused run's ONNX export (one graph per input plus the fusion graph, the tabular columns in numpy) and
``tl errors`` / report.html showing each example's image, text and tabular fields (issue 16 goal 5)."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import one_line_error

ESC = "\x1b[31m"  # a title with an escape sequence: the terminal listing must not pass it on
WORDS = {"fun": "a funny clever comedy", "dull": f"a dull boring drama {ESC}"}


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 records: a small image, a title that gives the label, a price and a brand; one image missing, some
    titles and prices empty."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("fused-items")
    rng, rows = random.Random(3), []
    for i in range(40):
        tone = ["fun", "dull"][i % 2]
        Image.new("RGB", (16, 16), (rng.randrange(256), 40 * (i % 2), 0)).save(folder / f"{i}.png")
        rows.append(
            {
                "id": f"r{i}",
                "image": f"{i}.png" if i != 4 else "gone.png",
                "title": WORDS[tone] if i % 9 else "",
                "price": f"{rng.random() * 5:.2f}" if i % 7 else "",
                "brand": rng.choice("xyz"),
                "label": tone,
            }
        )
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "items.csv"


@pytest.fixture(scope="module")
def fused_run(items: Path, tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """image (LeNet from scratch), title (tiny BERT) and two tabular columns, fc head: a torch head."""
    from click.testing import CliRunner

    from tlzoo.cli import cli

    out = tmp_path_factory.mktemp("fused-export") / "run"
    args = [
        "run", "--plugin", "image=lenet", "--plugin", "title=bert", "--weights", f"title={tiny_bert_dir}",
        "--tabular-columns", "price,brand", "--data", items, "--no-pretrained", "--head-epochs", "2",
        "--device", "cpu", "--out", out, "-q",
    ]  # fmt: skip
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return out


def _script(folder: Path, *args: str, cwd: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(folder / "onnx_predict.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_onnx_export_of_a_fused_run_predicts_as_the_run(
    fused_run: Path, items: Path, run_cli: Any, tmp_path: Path
) -> None:
    """One graph per image/text input, the fusion graph, the tabular encoder in numpy; onnx_predict.py (no tlzoo)
    gives the run's probabilities for full records and for records lacking each input."""
    from tlzoo import Engine

    res = run_cli("export", fused_run, "--to", tmp_path / "onnx", "--format", "onnx")
    assert res.exit_code == 0, res
    assert "onnx graphs (3 inputs + fusion) checked against PyTorch" in res.stderr
    folder = tmp_path / "onnx"
    spec = json.loads((folder / "graph.json").read_text(encoding="utf-8"))
    assert [(m["input"], m["kind"], m["file"]) for m in spec["members"]] == [
        ("image", "image", "input-0.onnx"), ("title", "text", "input-1.onnx"), ("tabular", "tabular", None),
    ]  # fmt: skip
    assert "numpy" in spec["members"][2]["how"] and spec["members"][2]["categories"]["brand"] == ["x", "y", "z"]
    assert spec["check"]["max_abs_diff"] <= 1e-4 and spec["check"]["examples"] >= 10
    manifest = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    assert {"fusion.onnx", "input-0.onnx", "input-1.onnx", "onnx_predict.py", "README.md"} <= set(manifest["files"])
    assert "assets/input-1/tokenizer/tokenizer.json" in manifest["files"]
    assert "tlzoo" not in (folder / "onnx_predict.py").read_text(encoding="utf-8").split('"""')[2]
    assert "numpy" in (folder / "README.md").read_text(encoding="utf-8")
    one_line_error(run_cli("predict", folder, "a text"), "onnx_predict.py", "records.csv", "--format folder")

    image = str(items.parent / "3.png")
    records = [
        {"id": "full", "image": image, "title": WORDS["fun"], "price": "1.5", "brand": "y"},
        {
            "id": "no-image",
            "image": str(items.parent / "nowhere.png"),
            "title": WORDS["dull"],
            "price": "2",
            "brand": "x",
        },
        {"id": "no-title", "image": image, "title": "", "price": "0.3", "brand": "z"},
        {"id": "no-tabular", "image": image, "title": "a funny film", "price": "", "brand": ""},
        {"id": "odd-values", "image": image, "title": "an unseen text", "price": "n/a", "brand": "never seen"},
    ]
    table = tmp_path / "records.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    expected = np.array(
        [
            [o["probabilities"][c] for c in spec["classes"]]
            for o in Engine().predict(fused_run, [{k: v for k, v in r.items() if k != "id"} for r in records])
        ]
    )
    got = _script(folder, str(table), cwd=tmp_path)
    assert [g["id"] for g in got] == [r["id"] for r in records]
    assert np.abs(np.array([[g["probabilities"][c] for c in spec["classes"]] for g in got]) - expected).max() <= 1e-4
    # a record as JSON with only the title: image and tabular columns lacking
    alone = _script(folder, json.dumps({"title": WORDS["fun"]}), cwd=tmp_path)
    want = Engine().predict(fused_run, [{"title": WORDS["fun"]}])[0]["probabilities"]
    assert max(abs(alone[0]["probabilities"][c] - want[c]) for c in spec["classes"]) <= 1e-4


def test_a_fused_run_refuses_torchscript_in_one_line(fused_run: Path, run_cli: Any, tmp_path: Path) -> None:
    res = run_cli("export", fused_run, "--to", tmp_path / "ts", "--format", "torchscript")
    one_line_error(res, "fused run", "--format onnx", "--format folder", out=tmp_path / "ts")


def test_tl_errors_shows_each_examples_image_text_and_tabular_fields(
    fused_run: Path, items: Path, run_cli: Any
) -> None:
    res = run_cli("errors", fused_run, "--top", "40")
    assert res.exit_code == 0, res
    out = res.stdout
    assert ESC not in out and "\x1b" not in out  # escape sequences never reach the terminal
    shown = [line.strip() for line in out.splitlines()]
    assert any(line == f"image: {items.parent / '0.png'}" or line.startswith("image: ") for line in shown)
    assert any(line.startswith("title: a funny clever comedy") for line in shown)
    assert any(line.startswith("title: a dull boring drama") for line in shown)
    assert any(line.startswith("tabular: price=") and ", brand=" in line for line in shown)
    data = json.loads(run_cli("errors", fused_run, "--json").stdout)
    worst = data["top_losses"][0]
    kinds = {f["column"]: f["kind"] for f in worst["fields"]}
    assert kinds == {"image": "image", "title": "text", "price": "tabular", "brand": "tabular"}
    image = next(f["value"] for f in worst["fields"] if f["column"] == "image")
    assert image.startswith(str(items.parent))  # the path as the run read it, made absolute


def test_the_report_gallery_shows_a_thumbnail_and_the_fields(fused_run: Path, run_cli: Any) -> None:
    page = (fused_run / "report.html").read_text(encoding="utf-8")
    with open(fused_run / "predictions.csv", encoding="utf-8") as fh:
        ids = [row["id"] for row in csv.DictReader(fh)]
    with_image = [i for i in ids if i != "r4"]  # r4's image is missing
    assert any(f'alt="image of {i}"' in page for i in with_image)
    assert 'src="data:image/png;base64,' in page and '<span class="muted">title</span>' in page
    assert ESC not in page
    assert run_cli("report", fused_run).exit_code == 0  # written again from the run folder: records read again
    again = (fused_run / "report.html").read_text(encoding="utf-8")
    assert any(f'alt="image of {i}"' in again for i in with_image) and '<span class="muted">brand</span>' in again


def test_an_mlp_fusion_run_exports_to_onnx(items: Path, tiny_bert_dir: Path, run_cli: Any, tmp_path: Path) -> None:
    """--fusion mlp's head (per-input projections, an MLP) goes into fusion.onnx; modality dropout is off there."""
    out = tmp_path / "mlp"
    res = run_cli(
        "run", "--plugin", "image=lenet", "--plugin", "title=bert", "--weights", f"title={tiny_bert_dir}",
        "--tabular-columns", "price", "--data", items, "--fusion", "mlp", "--no-pretrained", "--head-epochs", "2",
        "--device", "cpu", "--out", out, "-q",
    )  # fmt: skip
    assert res.exit_code == 0, res
    res = run_cli("export", out, "--to", tmp_path / "onnx", "--format", "onnx")
    assert res.exit_code == 0, res
    spec = json.loads((tmp_path / "onnx" / "graph.json").read_text(encoding="utf-8"))
    assert spec["head"]["name"] == "mlp-fusion" and spec["check"]["max_abs_diff"] <= 1e-4
