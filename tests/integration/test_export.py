"""``tl export``: an exported folder, copied to a fresh directory, predicts the run's own
probabilities (predictions.csv, to 1e-5) through ``tl predict`` and through its plain-Python
``load.py``; ONNX agrees with PyTorch to 1e-4 (checked here with onnxruntime, and through the
generated ``onnx_predict.py``); TorchScript too; fitted non-linear heads are refused in one line.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROUNDED = 1e-5 + 1e-9  # predictions.csv holds 5 decimals: compare rounded values


def _cli(args: list[Any]) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from tlzoo.cli import cli

    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def _expected(run: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(classes, inputs, probabilities) of the run's own predictions.csv."""
    classes = [str(c) for c in json.loads((run / "model.json").read_text())["classes"]]
    with (run / "predictions.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return classes, [r["input"] for r in rows], np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])


def _json_proba(lines: str, classes: list[str]) -> np.ndarray:
    rows = [json.loads(line) for line in lines.splitlines() if line.strip()]
    return np.array([[r["probabilities"][c] for c in classes] for r in rows])


def _fresh_copy(folder: Path, tmp_path: Path) -> Path:
    """The export copied to a new directory, the original removed: nothing may point back at it."""
    fresh = tmp_path / "elsewhere" / "shipped-model"
    shutil.copytree(folder, fresh)
    shutil.rmtree(folder)
    return fresh


@pytest.fixture(scope="module")
def bert_weights(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the tiny BERT checkpoint, so a test can hide it to prove an export needs none of it."""
    folder = tmp_path_factory.mktemp("export-weights") / "tiny-bert"
    shutil.copytree(tiny_bert_dir, folder)
    return folder


@pytest.fixture(scope="module")
def text_run(bert_weights: Path, topics_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Feature extraction with an fc head: model.safetensors holds only the head."""
    out = tmp_path_factory.mktemp("export-runs") / "text"
    code, _, stderr = _cli(
        [
            "run",
            "--plugin",
            "bert",
            "--weights",
            bert_weights,
            "--data",
            topics_csv,
            "--head",
            "fc",
            "--epochs",
            5,
            "--max-length",
            32,
            "--out",
            out,
            "-q",
        ]
    )
    assert code == 0, stderr
    assert not json.loads((out / "model.json").read_text())["backbone"]["weights_saved"]
    return out


@pytest.fixture(scope="module")
def image_run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet from scratch + logreg (stored as a linear layer)."""
    out = tmp_path_factory.mktemp("export-runs") / "images"
    code, _, stderr = _cli(
        ["run", "--plugin", "lenet", "--no-pretrained", "--data", image_folder, "--head", "logreg", "--out", out, "-q"]
    )
    assert code == 0, stderr
    return out


def test_text_folder_export_is_self_contained(text_run: Path, bert_weights: Path, tmp_path: Path) -> None:
    classes, inputs, expected = _expected(text_run)
    code, stdout, stderr = _cli(["export", text_run, "--to", tmp_path / "export"])
    assert code == 0, stderr
    assert stdout.strip() == str(tmp_path / "export") and "self-contained" in stderr
    fresh = _fresh_copy(tmp_path / "export", tmp_path)
    manifest = json.loads((fresh / "export.json").read_text())
    assert manifest["self_contained"] and manifest["check"]["max_abs_diff"] <= 1e-5
    assert {"model.safetensors", "model.json", "load.py", "README.md"} <= set(manifest["files"])
    assert any(name.startswith("assets/source/") for name in manifest["files"])  # the checkpoint it was built from
    hidden = bert_weights.with_name("hidden")
    bert_weights.rename(hidden)  # the training machine's checkpoint is gone: only the folder remains
    try:
        code, stdout, stderr = _cli(["predict", fresh, *inputs, "--json"])
        assert code == 0, stderr
        assert np.abs(_json_proba(stdout, classes).round(5) - expected).max() <= ROUNDED
        proc = subprocess.run(
            [sys.executable, str(fresh / "load.py"), *inputs],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            env={**os.environ},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert np.abs(_json_proba(proc.stdout, classes).round(5) - expected).max() <= ROUNDED
    finally:
        hidden.rename(bert_weights)
    readme = (fresh / "README.md").read_text()
    assert "load.py" in readme and "Engine().predict" in readme and "## This exported folder" in readme


def test_image_folder_export_through_tl_predict_and_load_py(image_run: Path, tmp_path: Path) -> None:
    classes, inputs, expected = _expected(image_run)
    code, _, stderr = _cli(["export", image_run, "--to", tmp_path / "export", "--format", "folder"])
    assert code == 0, stderr
    fresh = _fresh_copy(tmp_path / "export", tmp_path)
    desc = json.loads((fresh / "model.json").read_text())
    assert desc["backbone"]["weights_saved"] and desc["head"]["kind"] == "linear"
    out = tmp_path / "p.csv"
    code, _, stderr = _cli(["predict", fresh, *inputs, "--out", out])
    assert code == 0, stderr
    with out.open(newline="") as f:
        got = np.array([[float(r[f"p_{c}"]) for c in classes] for r in csv.DictReader(f)])
    assert got.shape == expected.shape and np.abs(got - expected).max() <= ROUNDED
    proc = subprocess.run(
        [sys.executable, "load.py", *inputs], capture_output=True, text=True, timeout=300, cwd=fresh, env={**os.environ}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.abs(_json_proba(proc.stdout, classes).round(5) - expected).max() <= ROUNDED


def _onnx_inputs(run: Path, examples: list[Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The run's own probabilities and the graph's inputs, built by the backbone's own preprocessing."""
    from tlzoo.commands.predict import Predictor

    predictor = Predictor.load(run)
    b = predictor.backbone
    batch = b.collate([b.transform(x, False) for x in examples])
    feeds = {k: v.numpy() for k, v in batch.items()} if isinstance(batch, dict) else {"image": batch.numpy()}
    return predictor.predict_proba(examples), feeds


@pytest.mark.parametrize("which", ["image", "text"])
def test_onnx_agrees_with_pytorch(which: str, image_run: Path, text_run: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    run = image_run if which == "image" else text_run
    classes, inputs, expected = _expected(run)
    code, _, stderr = _cli(["export", run, "--to", tmp_path / "onnx", "--format", "onnx"])
    assert code == 0, stderr
    assert "max abs diff" in stderr
    spec = json.loads((tmp_path / "onnx" / "graph.json").read_text())
    assert spec["check"]["max_abs_diff"] <= 1e-4 and spec["classes"] == classes
    fresh = _fresh_copy(tmp_path / "onnx", tmp_path)
    examples = inputs[:7] if which == "image" else [*inputs[:5], "an unseen, much longer text than any of them"]
    torch_proba, feeds = _onnx_inputs(run, examples)
    session = ort.InferenceSession(str(fresh / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == [i["name"] for i in spec["inputs"]]
    onnx_proba = session.run(None, {n: feeds[n] for n in names})[0]
    assert np.abs(onnx_proba - torch_proba).max() <= 1e-4
    # the generated script: onnxruntime + numpy (+ PIL / the tokenizer), no tlzoo
    proc = subprocess.run(
        [sys.executable, str(fresh / "onnx_predict.py"), *inputs],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tlzoo" not in (fresh / "onnx_predict.py").read_text().split('"""')[2]
    assert np.abs(_json_proba(proc.stdout, classes) - expected).max() <= 1e-4


def test_torchscript_agrees_with_pytorch(image_run: Path, tmp_path: Path) -> None:
    import torch

    code, _, stderr = _cli(["export", image_run, "--to", tmp_path / "ts", "--format", "torchscript"])
    assert code == 0, stderr
    _, inputs, _ = _expected(image_run)
    torch_proba, feeds = _onnx_inputs(image_run, inputs[:5])
    module = torch.jit.load(str(tmp_path / "ts" / "model.pt"))  # the file this test just wrote
    with torch.inference_mode():
        got = module(torch.from_numpy(feeds["image"])).numpy()
    assert np.abs(got - torch_proba).max() <= 1e-5


def test_fitted_nonlinear_head_exports_as_folder_only(image_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "knn"
    code, _, stderr = _cli(
        ["run", "--plugin", "lenet", "--no-pretrained", "--data", image_folder, "--head", "knn", "--out", run, "-q"]
    )
    assert code == 0, stderr
    for fmt in ("onnx", "torchscript"):
        code, stdout, stderr = _cli(["export", run, "--to", tmp_path / fmt, "--format", fmt])
        assert code == 2 and not stdout and len(stderr.strip().splitlines()) == 1
        assert "fitted" in stderr and "--format folder" in stderr and "logreg" in stderr
        assert not (tmp_path / fmt).exists()
    classes, inputs, expected = _expected(run)
    code, _, stderr = _cli(["export", run, "--to", tmp_path / "folder"])
    assert code == 0, stderr
    fresh = _fresh_copy(tmp_path / "folder", tmp_path)
    code, stdout, stderr = _cli(["predict", fresh, *inputs[:10], "--json"])
    assert code == 0, stderr
    assert np.abs(_json_proba(stdout, classes).round(5) - expected[:10]).max() <= ROUNDED


def test_export_destination_errors(image_run: Path, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    code, _, stderr = _cli(["export", image_run, "--to", busy])
    assert code == 2 and "not empty" in stderr
    code, _, stderr = _cli(["export", image_run, "--to", image_run / "inside"])
    assert code == 2 and "inside the run directory" in stderr
    code, _, stderr = _cli(["export", tmp_path / "no-run", "--to", tmp_path / "out"])
    assert code == 2 and "does not exist" in stderr and not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".*export-tmp"))
