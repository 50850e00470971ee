"""Fusion methods of a fused run (issue 16 goal 2): --fusion concat|late|mlp, and tl compare over them."""

from __future__ import annotations

import copy
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
def records_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """72 records: a digit image, a title and a price; the label is the digit's parity and the title's tone."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("records")
    (folder / "img").mkdir()
    digits, rng, rows = load_digits(), random.Random(1), []
    for i in range(72):
        Image.fromarray((digits.images[i] * 16).astype("uint8")).resize((32, 32)).save(folder / "img" / f"{i}.png")
        tone = rng.choice(["fun", "dull"])
        rows.append(
            {
                "image": f"img/{i}.png",
                "title": WORDS[tone] if i % 11 else "",
                "price": f"{rng.random() * 10:.2f}",
                "label": f"{'even' if digits.target[i] % 2 == 0 else 'odd'}-{tone}",
            }
        )
    path = folder / "records.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _config(records_csv: Path, bert: Path, out: Path, fusion: str, head: str) -> Any:
    from tlzoo import RunConfig

    cfg = RunConfig().use_inputs({"image": "efficientnet_lite0", "title": "bert"}, tabular=["price"])
    cfg.model.options["weights"] = {"title": str(bert)}
    cfg.model.options["fusion"] = fusion
    cfg.model.image_size = 32
    cfg.data.path = str(records_csv)
    cfg.head.name = head
    cfg.train.head_epochs = 4
    cfg.out = str(out)
    cfg.progress = False
    return cfg


@pytest.fixture(scope="module")
def fusion_runs(records_csv: Path, tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """concat (logreg), late (logreg per input) and mlp runs on the same records: features extracted once."""
    from tlzoo import Engine

    root = tmp_path_factory.mktemp("fusion-methods")
    runs: dict[str, Any] = {}
    for fusion, head in (("concat", "logreg"), ("late", "logreg"), ("mlp", "fc")):
        logs: list[str] = []
        cfg = _config(records_csv, tiny_bert_dir, root / fusion, fusion, head)
        runs[fusion] = {"result": Engine(log=logs.append).run(cfg), "logs": logs, "cfg": cfg}
    return runs


@pytest.mark.transfer
def test_late_fusion_weights_sum_to_one_and_come_from_validation(fusion_runs: dict[str, Any]) -> None:
    from tlzoo.plugins.fusion.fusion_heads import choose_weights

    run = fusion_runs["late"]
    fusion = run["result"].metrics["fusion"]
    assert fusion["method"] == "late" and fusion["head"] == "logreg"
    weights = fusion["weights"]
    assert list(weights) == ["image", "title", "tabular"]
    assert abs(sum(weights.values()) - 1) < 1e-3 and all(w >= 0 for w in weights.values())
    assert fusion["chosen_on"].startswith("validation split")
    assert any(line.startswith("  late fusion: one logreg head per input; weights image") for line in run["logs"])
    # the same choice again from the saved head's per-input validation probabilities
    from tlzoo.commands.predict import Predictor

    predictor = Predictor.load(run["result"].run_dir)
    head = predictor.head
    assert np.allclose(head.weights, [weights[k] for k in weights], atol=1e-4)
    n_val = run["result"].metrics["run"]["n_val"]
    assert fusion["chosen_on"].startswith(f"validation split ({n_val} examples)")
    probas = [np.eye(3)[[0, 1, 2, 0]], np.full((4, 3), 1 / 3)]  # a perfect input and a useless one
    w, _ = choose_weights(probas, np.array([0, 1, 2, 0]))
    assert w[0] > w[1] and abs(w.sum() - 1) < 1e-9


@pytest.mark.transfer
def test_concat_is_unchanged_and_every_method_shares_the_features(fusion_runs: dict[str, Any]) -> None:
    concat = fusion_runs["concat"]["result"].metrics
    assert concat["fusion"] == {"method": "concat", "inputs": ["image", "title", "tabular"]}
    assert concat["run"]["head"] == "logreg"
    for method in ("late", "mlp"):
        logs = fusion_runs[method]["logs"]
        assert any("read from cache" in line for line in logs), logs  # features of the concat run, reused
    toml = (Path(fusion_runs["mlp"]["result"].run_dir) / "config.toml").read_text(encoding="utf-8")
    assert 'fusion = "mlp"' in toml
    card = (Path(fusion_runs["late"]["result"].run_dir) / "README.md").read_text(encoding="utf-8")
    assert "Head: late-fusion" in card


@pytest.mark.transfer
def test_mlp_fusion_trains_through_the_loop(fusion_runs: dict[str, Any]) -> None:
    run = fusion_runs["mlp"]
    metrics = run["result"].metrics
    assert metrics["fusion"]["method"] == "mlp" and metrics["fusion"]["modality_dropout"] == 0.2
    assert metrics["run"]["head"] == "mlp-fusion"
    epochs = [line for line in run["logs"] if "epoch 4/4" in line]
    assert epochs, run["logs"]
    desc = json.loads((Path(run["result"].run_dir) / "model.json").read_text(encoding="utf-8"))
    assert list(desc["head"]["params"]["blocks"]) == ["image", "title", "tabular"]


@pytest.mark.transfer
@pytest.mark.parametrize("method", ["late", "mlp"])
def test_late_and_mlp_predict_and_export(
    fusion_runs: dict[str, Any], method: str, records_csv: Path, run_cli: Any, tmp_path: Path
) -> None:
    from tlzoo import Engine

    run_dir = fusion_runs[method]["result"].run_dir
    image = str(records_csv.parent / "img" / "3.png")
    out = Engine().predict(run_dir, [{"image": image, "title": WORDS["dull"], "price": "3.5"}, {"title": "x"}])
    assert len(out) == 2 and all(abs(sum(o["probabilities"].values()) - 1) < 1e-4 for o in out)
    # the saved model predicts the test split as the run did
    with open(Path(run_dir) / "predictions.csv", encoding="utf-8") as fh:
        saved = list(csv.DictReader(fh))
    res = run_cli("predict", run_dir, "--data", records_csv, "--out", tmp_path / "p.csv")
    assert res.exit_code == 0, res
    res = run_cli("export", run_dir, "--to", tmp_path / "exp")
    assert res.exit_code == 0 and "max abs diff 0" in res.stderr, res
    again = Engine().predict(tmp_path / "exp", [{"image": image, "title": WORDS["dull"], "price": "3.5"}])
    assert again[0]["label"] == out[0]["label"] and len(saved) > 0
    if method == "late":  # a head per input cannot join the backbone in one graph: one line
        one_line_error(run_cli("export", run_dir, "--format", "onnx", "--to", tmp_path / "onnx"), "'late-fusion'")
        assert not (tmp_path / "onnx").exists()


@pytest.mark.transfer
@pytest.mark.parametrize("method", ["late", "mlp"])
def test_late_and_mlp_resume_to_the_uninterrupted_result(
    fusion_runs: dict[str, Any], method: str, tmp_path: Path
) -> None:
    from tlzoo import Engine

    cfg = copy.deepcopy(fusion_runs[method]["cfg"])
    whole = fusion_runs[method]["result"]
    cfg.out = str(tmp_path / "stopped")
    if method == "mlp":  # stopped after its second epoch: the checkpoint holds the mlp head

        def stop(msg: str) -> None:
            if "epoch 2/4" in msg:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            Engine(log=stop).run(cfg)
        assert (tmp_path / "stopped.incomplete" / "checkpoint.pt").is_file()
    else:  # a fitted head has no epochs: killed before it was fitted, only config.toml is there
        (tmp_path / "stopped.incomplete").mkdir()
        (tmp_path / "stopped.incomplete" / "config.toml").write_text(cfg.to_toml(), encoding="utf-8")
    resumed = Engine(log=lambda m: None).resume(tmp_path / "stopped")
    assert resumed.metrics["test"]["confusion_matrix"] == whole.metrics["test"]["confusion_matrix"]
    assert resumed.metrics["fusion"] == whole.metrics["fusion"]


def test_a_bad_fusion_is_one_line(run_cli: Any, records_csv: Path, tmp_path: Path) -> None:
    def run(*args: Any) -> Any:
        return run_cli("run", "-q", "--data", records_csv, "--out", tmp_path / "bad", *args)

    one_line_error(run("--plugin", "image=efficientnet_lite0", "--fusion", "lat"), "Unknown fusion 'lat'", "'late'")
    one_line_error(run("--plugin", "bert", "--fusion", "late"), "--fusion applies to a fused run")
    one_line_error(
        run("--plugin", "image=efficientnet_lite0", "--fusion", "late", "--head", "fc"), "choose a fitted head"
    )
    assert not (tmp_path / "bad").exists()


@pytest.mark.transfer
def test_compare_takes_fusion_methods_as_contestants(
    records_csv: Path, tiny_bert_dir: Path, fusion_runs: dict[str, Any], tmp_path: Path
) -> None:
    from tlzoo.commands.compare import compare, next_command

    cfg = _config(records_csv, tiny_bert_dir, tmp_path / "unused", "concat", "logreg")
    logs: list[str] = []
    result = compare(
        ["image=efficientnet_lite0", "title=bert"],
        str(records_csv),
        ["logreg"],
        tmp_path / "cmp",
        config=cfg,
        log=logs.append,
        fusions=["concat", "late", "mlp"],
    )
    assert sorted(r["backbone"] for r in result.rows) == ["concat fusion", "late fusion", "mlp fusion"]
    assert all(0 <= r["accuracy"] <= 1 for r in result.rows)
    assert sum("read from cache" in line for line in logs) >= 6  # late and mlp: the concat probe's features
    late = next(r for r in result.rows if r["backbone"] == "late fusion")
    assert late["accuracy"] == fusion_runs["late"]["result"].metrics["test"]["accuracy"]  # same split, same head
    command = next_command(cfg, late)
    assert "--plugin image=efficientnet_lite0 --plugin title=bert --fusion late --head logreg" in command


def test_compare_checks_each_modality_first(run_cli: Any, records_csv: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (8, 8)).save(folder / f"{i}.png")
    res = run_cli("compare", "--plugins", "efficientnet_lite0,bert", "--data", tmp_path / "imgs")
    one_line_error(res, "bert", "vision data")
    res = run_cli(
        "compare", "--plugins", "image=efficientnet_lite0,title=bert", "--fusion", "concat,blend", "--data", records_csv
    )
    one_line_error(res, "Unknown fusion 'blend'")
