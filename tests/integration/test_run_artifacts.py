"""The Python API end to end: ``Engine().run(RunConfig)`` on tiny BERT and random-init EfficientNet-Lite0.

Each run is made once per module and then inspected by several tests: every artifact is
present and well-formed, ``tl predict`` and ``Predictor`` reproduce predictions.csv, the
feature cache is hit, the same seed gives the same result, and frozen BatchNorm layers
keep their statistics during fine-tuning.
"""

from __future__ import annotations

import csv
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tlzoo.api.hookspecs import hookimpl
from tlzoo.engine.config import RunConfig

pytestmark = pytest.mark.xdist_group("engine")  # one worker builds the shared runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HISTORY_COLUMNS = {"phase", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}


@dataclass
class Done:
    """A finished run and what was observed while it ran."""

    config: RunConfig
    run_dir: Path
    metrics: dict[str, Any]
    log: list[str]
    snapshots: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    groups: list[set[str]] = field(default_factory=list)  # parameter/buffer names per layer group

    @property
    def text(self) -> str:
        return "\n".join(self.log)


class Observer:
    """Snapshots backbone parameters and buffers around the train step (a plugin, like any other)."""

    def __init__(self) -> None:
        self.snapshots: dict[str, dict[str, torch.Tensor]] = {}
        self.groups: list[set[str]] = []

    @hookimpl(wrapper=True)
    def tlzoo_run_step(self, step: str, run: Any) -> Any:
        if step != "train":
            return (yield)
        backbone = run.backbone
        self.snapshots["before"] = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
        ids = {id(t): k for k, t in backbone.state_dict(keep_vars=True).items()}
        self.groups = [
            {ids[id(t)] for t in [*g.parameters(), *g.buffers()] if id(t) in ids} for g in backbone.layer_groups()
        ]
        result = yield
        self.snapshots["after"] = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
        return result


def _run(base: Path, name: str, overrides: list[str]) -> Done:
    from tlzoo.engine.plugins import PluginManager
    from tlzoo.engine.zoo import Zoo
    from tlzoo.facade import Engine

    cfg = RunConfig()
    cfg.apply_overrides([*overrides, f"out={base / name}", "progress=false", "train.batch_size=16"])
    log: list[str] = []
    observer = Observer()
    zoo = Zoo(PluginManager(load_entry_points=False, extra=[observer]))
    result = Engine(zoo=zoo, log=log.append).run(cfg)
    return Done(cfg, result.run_dir, result.metrics, log, observer.snapshots, observer.groups)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine-runs")


@pytest.fixture(scope="module")
def bert_args(tiny_bert_dir: Path, text_csv: Path) -> list[str]:
    return [f"data.path={text_csv}", "model.plugin=bert", f"model.weights={tiny_bert_dir}", "model.max_length=32"]


@pytest.fixture(scope="module")
def binary_args(bert_args: list[str], text_csv: Path, base: Path) -> list[str]:
    """fresh vs rotten only: two classes take scikit-learn's one-row binary path in the logreg head."""
    rows = [r for r in _read_csv(text_csv) if r["label"] != "plot"]
    path = base / "binary.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["id", "text", "label"])
        w.writeheader()
        w.writerows(rows)
    return [a for a in bert_args if not a.startswith("data.path=")] + [f"data.path={path}"]


@pytest.fixture(scope="module")
def image_args(image_folder: Path) -> list[str]:
    return [
        f"data.path={image_folder}",
        "model.plugin=efficientnet",
        "model.name=efficientnet_lite0",
        "model.pretrained=false",
        "model.image_size=64",
    ]


RUNS: dict[str, tuple[str, list[str]]] = {
    # name: (data kind, overrides)
    "bert-fe-fc": ("text", ["train.head_epochs=4"]),
    "bert-fe-logreg": ("text", ["head.name=logreg"]),
    "bert-binary-logreg": ("binary", ["head.name=logreg"]),
    "bert-ft": (
        "text",
        [
            "train.strategy=fine-tune",
            "train.head_epochs=2",
            "train.epochs=2",
            "train.unfreeze=1",
            "train.finetune_lr=0.001",
            "train.lr=0.003",  # a gentler head phase: the fine-tune phase beats it and its weights are kept
        ],
    ),
    # random weights: unfreeze=0 keeps the backbone frozen (else every layer would train from scratch)
    "img-fe-fc": ("image", ["train.epochs=3", "train.unfreeze=0"]),
    "img-fe-logreg": ("image", ["head.name=logreg"]),
    # no validation set: the fine-tuned weights are kept even where the head phase had the better val loss
    # (these tests watch what fine-tuning changes)
    "img-ft": (
        "image",
        [
            "train.strategy=fine-tune",
            "train.head_epochs=1",
            "train.epochs=1",
            "train.unfreeze=1",
            "train.finetune_lr=0.01",
            "data.val_fraction=0",
        ],
    ),
}


@pytest.fixture(scope="module")
def runs(base: Path, bert_args: list[str], binary_args: list[str], image_args: list[str]) -> Callable[[str], Done]:
    done: dict[str, Done] = {}
    args = {"text": bert_args, "binary": binary_args, "image": image_args}

    def get(name: str) -> Done:
        if name not in done:
            kind, extra = RUNS[name]
            done[name] = _run(base, name, [*args[kind], *extra])
        return done[name]

    return get


# --------------------------------------------------------------------------- artifacts
def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _check_png(path: Path) -> None:
    from PIL import Image

    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    with Image.open(path) as im:
        w, h = im.size
        assert w >= 300 and h >= 200, f"{path.name} is only {w}x{h}"
        extrema = im.convert("L").getextrema()
        assert extrema[0] < extrema[1], f"{path.name} is blank"


@pytest.mark.parametrize("name", list(RUNS))
def test_every_artifact_is_well_formed(runs: Callable[[str], Done], name: str) -> None:
    run = runs(name)
    d = run.run_dir
    assert d.is_dir() and not d.with_name(d.name + ".incomplete").exists()
    # config.toml reloads to the same configuration
    assert RunConfig.from_toml(d / "config.toml") == run.config
    # metrics.json
    metrics = json.loads((d / "metrics.json").read_text())
    test = metrics["test"]
    classes = test["classes"]
    assert 0 <= test["accuracy"] <= 1 and 0 <= test["macro_f1"] <= 1
    assert set(test["per_class"]) == set(classes)
    for stats in test["per_class"].values():
        assert {"precision", "recall", "f1", "support"} <= set(stats)
        assert all(0 <= stats[k] <= 1 for k in ("precision", "recall", "f1"))
    cm = np.array(test["confusion_matrix"])
    n_test = metrics["run"]["n_test"]
    assert cm.shape == (len(classes), len(classes)) and cm.sum() == n_test == test["n"]
    assert test["accuracy"] == pytest.approx(np.trace(cm) / n_test, abs=1e-4)
    # history.csv: one row per epoch of each phase
    rows = _read_csv(d / "history.csv")
    assert set(rows[0]) >= HISTORY_COLUMNS
    t = run.config.train
    phases = [r["phase"] for r in rows]
    if run.config.head.name == "logreg":
        assert phases == ["fit"]
    elif t.strategy == "feature-extraction":
        assert phases == ["head"] * t.epochs
        assert [int(r["epoch"]) for r in rows] == list(range(1, t.epochs + 1))
    else:
        assert phases == ["head"] * t.head_epochs + ["fine-tune"] * t.epochs
    learnt_from_val = "val" in metrics.get("trained_on", {}).get("splits", [])  # a cross-validating fitted head
    for r in rows:  # a run without a validation split (img-ft), or one that learnt from it, leaves them empty
        assert float(r["train_loss"]) >= 0
        no_val = not run.config.data.val_fraction or learnt_from_val
        assert r["val_accuracy"] == "" if no_val else 0 <= float(r["val_accuracy"]) <= 1
    _check_png(d / "history.png")
    _check_png(d / "confusion.png")
    # predictions.csv
    preds = _read_csv(d / "predictions.csv")
    header = list(preds[0])
    assert header == ["id", "true", "predicted", *[f"p_{c}" for c in classes], "probability", "loss", "input"]
    assert len(preds) == n_test
    for r in preds:
        p = np.array([float(r[f"p_{c}"]) for c in classes])
        assert abs(p.sum() - 1) < 1e-3
        assert r["predicted"] == classes[int(p.argmax())] and r["true"] in classes
    assert np.mean([r["predicted"] == r["true"] for r in preds]) == pytest.approx(test["accuracy"], abs=1e-4)
    # model.safetensors + model.json
    from safetensors.torch import load_file

    desc = json.loads((d / "model.json").read_text())
    tensors = load_file(str(d / "model.safetensors"))
    assert desc["classes"] == classes and desc["head"]["name"] == run.config.head.name
    assert any(k.startswith("head.") for k in tensors)
    fine_tuned = t.strategy == "fine-tune"
    # fine-tuned or random-init backbones cannot be rebuilt from their source: their weights are saved
    assert desc["backbone"]["weights_saved"] == (fine_tuned or not run.config.model.pretrained)
    assert any(k.startswith("backbone.") for k in tensors) == desc["backbone"]["weights_saved"]


# --------------------------------------------------------------------------- predict
def _inputs_for(run: Done, rows: list[dict[str, str]]) -> list[str]:
    if run.config.model.plugin == "bert":
        texts = {r["id"]: r["text"] for r in _read_csv(Path(run.config.data.path))}
        return [texts[r["id"]] for r in rows]
    return [str(Path(run.config.data.path) / r["id"]) for r in rows]


@pytest.mark.parametrize("name", list(RUNS))
def test_predictor_reproduces_predictions_csv(runs: Callable[[str], Done], name: str) -> None:
    from tlzoo.commands.predict import Predictor

    run = runs(name)
    rows = _read_csv(run.run_dir / "predictions.csv")
    classes = json.loads((run.run_dir / "model.json").read_text())["classes"]
    expected = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    got = Predictor.load(run.run_dir).predict_proba(_inputs_for(run, rows))
    np.testing.assert_allclose(got, expected, atol=2e-4)


@pytest.mark.parametrize("name", ["bert-fe-logreg", "img-ft"])
def test_tl_predict_matches_predictions_csv(runs: Callable[[str], Done], name: str, run_cli: Any) -> None:
    run = runs(name)
    rows = _read_csv(run.run_dir / "predictions.csv")[:6]
    inputs = _inputs_for(run, rows)
    res = run_cli("predict", run.run_dir, "--json", "--", *inputs)  # "--": a text may start with a dash
    assert res.exit_code == 0, res
    out = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    assert len(out) == len(rows)
    for row, pred in zip(rows, out):
        assert pred["label"] == row["predicted"]
        for c, p in pred["probabilities"].items():
            assert p == pytest.approx(float(row[f"p_{c}"]), abs=2e-4)


def test_engine_predict_api(runs: Callable[[str], Done]) -> None:
    from tlzoo.facade import Engine

    run = runs("bert-fe-fc")
    out = Engine(log=None).predict(run.run_dir, ["a charming and funny film", "dull and boring"])
    assert len(out) == 2 and {"label", "probability", "probabilities"} <= set(out[0])
    assert out[0]["label"] in out[0]["probabilities"]


# --------------------------------------------------------------------------- cache, seeds, BatchNorm
def test_second_feature_extraction_run_hits_the_cache(
    runs: Callable[[str], Done], base: Path, bert_args: list[str]
) -> None:
    first = runs("bert-fe-fc")
    again = _run(base, "bert-fe-fc-again", [*bert_args, *RUNS["bert-fe-fc"][1]])
    hits = [line for line in again.log if "read from cache" in line]
    assert len(hits) == 3, again.text  # train, validation and test features
    assert not any("extracted and cached" in line for line in again.log)
    assert again.metrics["test"] == first.metrics["test"]


def test_changed_weights_miss_the_cache(runs: Callable[[str], Done], base: Path, bert_args: list[str]) -> None:
    runs("bert-fe-fc")
    scratch = _run(base, "bert-fe-scratch", [*bert_args, "model.pretrained=false", "train.epochs=1"])
    assert not any("read from cache" in line for line in scratch.log), scratch.text


def test_same_seed_same_result_when_fine_tuning(runs: Callable[[str], Done], base: Path, bert_args: list[str]) -> None:
    first = runs("bert-ft")
    again = _run(base, "bert-ft-again", [*bert_args, *RUNS["bert-ft"][1]])
    assert again.metrics["test"] == first.metrics["test"]
    a = _read_csv(first.run_dir / "predictions.csv")
    b = _read_csv(again.run_dir / "predictions.csv")
    assert a == b
    h1, h2 = _read_csv(first.run_dir / "history.csv"), _read_csv(again.run_dir / "history.csv")
    assert [r["train_loss"] for r in h1] == [r["train_loss"] for r in h2]


def test_fine_tune_trains_only_the_unfrozen_group(runs: Callable[[str], Done]) -> None:
    for name in ("bert-ft", "img-ft"):
        run = runs(name)
        before, after = run.snapshots["before"], run.snapshots["after"]
        top = run.groups[-1]
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed, f"{name}: fine-tuning changed nothing"
        assert changed <= top, f"{name}: frozen tensors changed: {sorted(changed - top)[:5]}"


def test_frozen_batchnorm_stays_put_during_fine_tune(runs: Callable[[str], Done]) -> None:
    run = runs("img-ft")
    before, after = run.snapshots["before"], run.snapshots["after"]
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    frozen = [k for k in stats if k not in run.groups[-1]]
    live = [k for k in stats if k in run.groups[-1]]
    assert frozen and live
    moved = [k for k in frozen if not torch.equal(before[k], after[k])]
    assert not moved, f"frozen BatchNorm statistics moved: {moved[:5]}"
    assert any(not torch.equal(before[k], after[k]) for k in live), "the unfrozen BatchNorm did not update"
    # and the saved model holds exactly the trained weights
    from safetensors.torch import load_file

    saved = load_file(str(run.run_dir / "model.safetensors"))
    for k in stats:
        assert torch.equal(saved[f"backbone.{k}"], after[k])


def test_run_logs_the_plan(runs: Callable[[str], Done]) -> None:
    text = runs("img-ft").text
    assert "[ 1/12] import libraries" in text and "[12/12] plot confusion" in text
    assert "phase fine-tune" in text and "trainable" in text


def test_config_toml_is_valid_toml(runs: Callable[[str], Done]) -> None:
    data = tomllib.loads((runs("bert-fe-fc").run_dir / "config.toml").read_text())
    assert data["model"]["plugin"] == "bert" and data["train"]["head_epochs"] == 4
