"""The example third-party plugin (examples/tlzoo-example) works with every part of tlzoo.

``make venv`` installs it into the venv (``pip install -e examples/tlzoo-example``), so every
Zoo here holds it, as it would for a user who installed it.  This runs its own kit tests,
``tl list`` / ``tl run`` / ``tl compare`` / ``tl predict`` and the Python API with its
backbones and head, checks that a fitted backbone's features are the same in the run and in
``tl predict``, and installs it once more the way a user's ``pip install`` lays it out (a
``*.dist-info`` folder with ``entry_points.txt`` on PYTHONPATH) in a fresh process.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tlzoo-example"

if importlib.util.find_spec("tlzoo_example") is None:  # pragma: no cover - a venv made before the example
    raise RuntimeError(
        "the example plugin is not installed in this environment: run `make venv` "
        "(pip install -e examples/tlzoo-example)"
    )


def _load_example_tests() -> Any:
    spec = importlib.util.spec_from_file_location("tlzoo_example_tests", EXAMPLE / "tests" / "test_example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# the example's own tests (its kit checks included) run here too, named test_example_<its name>
_EXAMPLE_TESTS = _load_example_tests()
for _name in dir(_EXAMPLE_TESTS):
    if _name.startswith("test_"):
        globals()[f"test_example_{_name[len('test_') :]}"] = getattr(_EXAMPLE_TESTS, _name)


# --------------------------------------------------------------------------- tl list
def test_tl_list_shows_the_example_models_labelled_with_their_plugin(run_cli: Any) -> None:
    res = run_cli("list", "--json")
    assert res.exit_code == 0, res
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    for name, plugin, modality in (
        ("tfidf-svd", "tfidf", "text"),
        ("pixels-32", "pixels", "vision"),
        ("pixels-16", "pixels", "vision"),
        ("series-conv", "series", "sequence"),  # a modality tlzoo has never heard of
    ):
        assert rows[name]["plugin"] == plugin and rows[name]["modality"] == modality
        assert rows[name]["registered_by"] == "example"
    assert rows["all-MiniLM-L6-v2"]["registered_by"] == "built-in"
    table = run_cli("list", "example")  # a plugin's name selects its entries
    lines = [line.split() for line in table.stdout.splitlines() if line.strip()]
    assert sorted(cols[0] for cols in lines) == ["pixels-16", "pixels-32", "series-conv", "tfidf-svd"]
    assert all("example" in cols for cols in lines)
    text = json.loads(run_cli("list", "--modality", "text", "--json").stdout)
    assert "tfidf-svd" in {r["name"] for r in text} and "pixels-32" not in {r["name"] for r in text}


def test_unknown_names_suggest_the_example_models(run_cli: Any) -> None:
    res = run_cli("run", "--plugin", "tfidf-svdd", "--data", "rotten-tomatoes")
    assert res.exit_code == 2 and "Did you mean 'tfidf-svd'" in res.stderr and "See `tl list`" in res.stderr
    res = run_cli("run", "--plugin", "tfidf", "--data", "rotten-tomatoes", "--set", "model.options.dims=8")
    assert res.exit_code == 2 and "Unknown option model.options.dims for tfidf. Did you mean 'dim'?" in res.stderr


# --------------------------------------------------------------------------- tl run, tl predict, the API
def test_tl_run_pixels_by_model_name_and_predict(run_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "pixels"
    res = run_cli(
        "run",
        "--model",
        "pixels-16",
        "--data",
        "digits",
        "--limit",
        "300",
        "--head",
        "ridge",
        "--image-size",
        "12",
        "--out",
        out,
        "--quiet",
    )
    assert res.exit_code == 0, res.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.7  # ten digit classes: chance is 0.1
    desc = json.loads((out / "model.json").read_text())
    assert desc["backbone"]["plugin"] == "pixels" and desc["backbone"]["request"]["model"] == "pixels-16"
    assert desc["backbone"]["request"]["image_size"] == 12 and desc["backbone"]["num_features"] == 144
    assert desc["backbone"]["fitted"] is False
    trained_on = desc["head"].pop("trained_on")
    assert desc["head"] == {"name": "ridge", "params": {"alpha": 1.0, "scale": 5.0}, "kind": "linear"}
    assert trained_on["splits"] == ["train"]  # ridge does not cross-validate: validation scores it
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    import sklearn.datasets
    from PIL import Image

    digit = (sklearn.datasets.load_digits().images[0] * 15).astype(np.uint8)  # a zero, 8x8 in 0..240
    Image.fromarray(digit, mode="L").save(tmp_path / "zero.png")
    pred = run_cli("predict", out, tmp_path / "zero.png", "--json")
    assert pred.exit_code == 0, pred.stderr
    assert rows and json.loads(pred.stdout.splitlines()[0])["label"] in {r["true"] for r in rows}

    # a run written by tlzoo 0.1 (engine settings, image_size here, inside backbone.request.options) predicts the same
    old = tmp_path / "old-run"
    shutil.copytree(out, old)
    desc = json.loads((old / "model.json").read_text())
    request = desc["backbone"].pop("request")
    desc["backbone"].pop("fitted")
    engine = ("pooling", "max_length", "image_size", "augment", "train_backbone")
    desc["backbone"]["request"] = {
        "model": request["model"],
        "weights": request["weights"],
        "pretrained": request["pretrained"],
        "options": {**request["options"], **{k: request[k] for k in engine}},
    }
    (old / "model.json").write_text(json.dumps(desc))
    again = run_cli("predict", old, tmp_path / "zero.png", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == pred.stdout


class _Capture:
    """A step wrapper that keeps what the run extracted: the test split and its features."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def wrap(self) -> Any:
        from tlzoo import step_wrapper, steps

        @step_wrapper(steps.TRAIN)
        def keep(run: Any) -> Any:
            result = yield
            self.seen.update(
                examples=list(run.splits.test.examples),
                features=run.features["test"].copy(),
                fingerprint=run.backbone.fingerprint(),
            )
            return result

        return keep


def test_fitted_backbone_gives_the_same_features_in_the_run_and_in_predict(tmp_path: Path, run_cli: Any) -> None:
    import types

    from tlzoo_example.tfidf import TfidfSvdBackbone

    from tlzoo import Engine, Predictor, RunConfig, Zoo
    from tlzoo.engine.plugins import PluginManager

    capture = _Capture()
    module = types.ModuleType("capture_features")
    module.keep = capture.wrap()  # type: ignore[attr-defined]
    zoo = Zoo(PluginManager(extra=[module]))
    cfg = RunConfig()
    cfg.model.plugin, cfg.data.path, cfg.data.limit, cfg.head.name = "tfidf", "rotten-tomatoes", 600, "ridge"
    cfg.model.options = {"dim": 32}
    cfg.out, cfg.progress = str(tmp_path / "tfidf"), False
    result = Engine(zoo=zoo, log=None).run(cfg)
    assert result.accuracy > 0.45  # fresh / rotten / plot: chance is about 0.4
    desc = json.loads((result.run_dir / "model.json").read_text())
    assert desc["backbone"]["fitted"] is True and desc["backbone"]["fingerprint"] == capture.seen["fingerprint"]
    assert desc["backbone"]["request"]["options"] == {"dim": 32}
    assert (result.run_dir / "assets" / "tfidf" / "vocabulary.json").is_file()

    predictor = Predictor.load(result.run_dir)
    backbone = predictor.backbone
    assert isinstance(backbone, TfidfSvdBackbone) and backbone.fitted
    assert backbone.fingerprint() == capture.seen["fingerprint"]
    import torch

    with torch.no_grad():
        again = backbone(backbone.collate([backbone.transform(t, train=False) for t in capture.seen["examples"]]))
    np.testing.assert_array_equal(again.numpy(), capture.seen["features"])

    # tl predict on the same texts gives the probabilities the run wrote for its test split
    rows = list(csv.DictReader((result.run_dir / "predictions.csv").open(encoding="utf-8")))
    texts = tmp_path / "texts.csv"
    with texts.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([r["input"]] for r in rows)
    out = tmp_path / "predicted.csv"
    res = run_cli("predict", result.run_dir, "--data", texts, "--out", out)
    assert res.exit_code == 0, res.stderr
    predicted = list(csv.DictReader(out.open(encoding="utf-8")))
    classes = [c for c in rows[0] if c.startswith("p_")]
    assert len(predicted) == len(rows)
    for mine, theirs in zip(rows, predicted):
        assert mine["predicted"] == theirs["predicted"]
        assert all(abs(float(mine[c]) - float(theirs[c])) < 1e-4 for c in classes)


def test_tl_compare_tfidf_against_glove(run_cli: Any, tmp_path: Path) -> None:
    res = run_cli(
        "compare",
        "--plugins",
        "tfidf,glove",
        "--data",
        "rotten-tomatoes",
        "--limit",
        "400",
        "--heads",
        "logreg,ridge",
        "--out",
        tmp_path / "cmp",
    )
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader((tmp_path / "cmp" / "leaderboard.csv").open()))
    assert {(r["plugin"], r["head"]) for r in rows} == {
        ("tfidf", "logreg"),
        ("tfidf", "ridge"),
        ("glove", "logreg"),
        ("glove", "ridge"),
    }
    tfidf = [r for r in rows if r["plugin"] == "tfidf"]
    assert all(float(r["accuracy"]) > 0.4 and r["features"] == "128" for r in tfidf)
    assert {r["weights"] for r in tfidf} == {"fitted on the training split (TF-IDF + truncated SVD)"}


# --------------------------------------------------------------------------- installed as a user would
BROKEN = 'raise ImportError("tlzoo-broken needs libfoo, which is not installed")\n'


def _dist_info(site: Path, dist: str, entry_points: str) -> None:
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[tlzoo]\n{entry_points}\n")


def test_a_plugin_installed_through_a_dist_info_on_pythonpath(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(
        EXAMPLE / "src" / "tlzoo_example", site / "tlzoo_example", ignore=shutil.ignore_patterns("__pycache__")
    )  # the package, outside the repository
    _dist_info(site, "tlzoo-example", "example = tlzoo_example.plugin")
    (site / "tlzoo_broken.py").write_text(BROKEN)
    _dist_info(site, "tlzoo-broken", "broken = tlzoo_broken")
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "TLZOO_HOME": str(tmp_path / "home"),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }
    env.pop("TLZOO_PLUGINS", None)
    tl = [str(Path(sys.executable).parent / "tl")]  # the venv's console script

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*tl, *args], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)

    probe = (
        "import json, sys\nfrom tlzoo.cli import cli\ntry:\n"
        "    cli.main(['list', '--json'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'example': sys.modules['tlzoo_example'].__file__}),"
        " file=sys.stderr)\n"
    )
    listed = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    seen = json.loads(listed.stderr.strip().splitlines()[-1])
    assert seen["torch"] is False, "tl list --json imported torch with the example plugin installed"
    assert seen["example"].startswith(str(site))  # this copy, not the one in the venv
    assert {r["name"]: r["registered_by"] for r in json.loads(listed.stdout)}["tfidf-svd"] == "example"
    assert "Warning: plugin 'broken' failed (ImportError: tlzoo-broken needs libfoo" in listed.stderr

    plugins = {p["name"]: p for p in json.loads(run("plugins", "--json").stdout)}
    assert plugins["example"]["error"] is None and plugins["example"]["version"] == "0.1.0"
    assert not plugins["example"]["builtin"] and "tlzoo_register_catalogue" in plugins["example"]["hooks"]
    assert plugins["broken"]["error"] == "ImportError: tlzoo-broken needs libfoo, which is not installed"

    failed = run("run", "--plugin", "broken", "--data", "digits")  # the load error, in one line, exit 2
    assert failed.returncode == 2, failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("Error")]
    assert (
        errors
        == [
            "Error: plugin 'broken' failed to load: ImportError: tlzoo-broken needs libfoo, which is not "
            "installed; see `tl plugins`."
        ]
        and "Traceback" not in failed.stderr
    )

    done = run(
        "run",
        "--plugin",
        "pixels",
        "--data",
        "digits",
        "--limit",
        "200",
        "--head",
        "ridge",
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "model.json").read_text())["backbone"]["plugin"] == "pixels"
