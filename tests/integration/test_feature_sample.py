"""Features that change between processes are caught by a run, not only by the kit (issue 17 §2).

A third-party plugin, installed as a user's ``pip install`` lays it out (a ``*.dist-info`` folder
with ``entry_points.txt`` on PYTHONPATH), registers two word-bucket backbones: ``charhash`` buckets
words with Python's ``hash()`` (salted per process), ``charcrc`` with CRC32 (the same everywhere).
Each is trained in this process; ``tl predict`` then runs in a new process, through the real ``tl``
entry point: the ``hash()`` run is refused in one line naming the largest difference, the CRC32 run
predicts silently, and a run saved before runs kept a feature sample loads without complaint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PLUGIN = '''
"""A third-party plugin: words in 64 buckets, by Python's hash() or by CRC32."""
import zlib

import torch
from torch import nn

from tlzoo import Backbone, BackboneFactory, hookimpl

DIM = 64


class Buckets(Backbone):
    modality = "text"
    num_features = DIM
    weights_source = "none (word buckets)"

    def __init__(self, request, salted):
        super().__init__()
        self.name, self.salted = request.model, salted

    def bucket(self, word):
        return hash(word) % DIM if self.salted else zlib.crc32(word.encode("utf-8")) % DIM

    def transform(self, example, train):
        bag = torch.zeros(DIM)
        for word in str(example).lower().split():
            bag[self.bucket(word)] += 1.0
        return bag

    def forward(self, batch):
        return batch

    def layer_groups(self):
        return []


@hookimpl
def tlzoo_register_backbones(register):
    for name, salted in (("charhash", True), ("charcrc", False)):
        register(BackboneFactory(
            name=name, modality="text", create=lambda request, s=salted: Buckets(request, s),
            default_model=f"{name}-64", models=(f"{name}-64",), options={}, description="word buckets",
        ))
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    (folder / "tlzoo_buckets.py").write_text(PLUGIN)
    info = folder / "tlzoo_buckets-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tlzoo-buckets\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[tlzoo]\nbuckets = tlzoo_buckets\n")
    return folder


def _zoo(site: Path) -> Any:
    """A zoo with the plugin, its module imported from ``site`` as the entry point would."""
    import importlib.util

    from tlzoo import Zoo
    from tlzoo.engine.plugins import PluginManager

    module = sys.modules.get("tlzoo_buckets")
    if module is None:
        spec = importlib.util.spec_from_file_location("tlzoo_buckets", site / "tlzoo_buckets.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["tlzoo_buckets"] = module
    return Zoo(PluginManager(load_entry_points=False, extra=[module]))


def _train(site: Path, plugin: str, text_csv: Path, out: Path) -> Path:
    """The plugin trained in this process."""
    from tlzoo import Engine, RunConfig

    cfg = RunConfig()
    cfg.apply_overrides([f"data.path={text_csv}", f"model.plugin={plugin}", "head.name=logreg", f"out={out}"])
    cfg.progress = False
    result = Engine(zoo=_zoo(site), log=None).run(cfg)
    return Path(result.run_dir)


def _tl(site: Path, *args: Any) -> subprocess.CompletedProcess[str]:
    """The real ``tl`` entry point in a new process (another PYTHONHASHSEED: hash() differs)."""
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "random"}
    env.pop("TLZOO_PLUGINS", None)
    tl = str(Path(sys.executable).parent / "tl")
    return subprocess.run([tl, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def hash_run(site: Path, text_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(site, "charhash", text_csv, tmp_path_factory.mktemp("runs") / "hash")


@pytest.fixture(scope="module")
def crc_run(site: Path, text_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(site, "charcrc", text_csv, tmp_path_factory.mktemp("runs") / "crc")


def test_a_run_stores_training_examples_and_their_features(crc_run: Path, text_csv: Path) -> None:
    import csv

    from safetensors.numpy import load_file

    sample = crc_run / "feature_sample"
    meta = json.loads((sample / "sample.json").read_text())
    tensors = load_file(str(sample / "sample.safetensors"))
    texts = [row["text"] for row in meta["inputs"]]
    assert len(texts) == 8 and tensors["features"].shape == (8, 64)
    assert set(texts) <= {r["text"] for r in csv.DictReader(text_csv.open(encoding="utf-8"))}
    assert "torch" in meta["versions"]
    # the stored features are the bags of those texts' words
    assert np.array_equal(tensors["features"].sum(1), [len(t.split()) for t in texts])
    assert not any(p.suffix == ".pkl" for p in sample.iterdir())


def test_tl_predict_in_a_new_process_refuses_a_hash_backbone_in_one_line(
    site: Path, hash_run: Path, tmp_path: Path
) -> None:
    from helpers import one_line_error

    out = tmp_path / "p.csv"
    res = _tl(site, "predict", hash_run, "a gripping and moving film", "--out", out)
    line = one_line_error(
        _Result(res), "features differ from the ones stored with the run", "largest difference", "hash()", out=out
    )
    assert "--no-feature-check" in line and "unseeded" in line and "library" in line
    assert not out.exists()  # nothing half-written
    forced = _tl(site, "predict", hash_run, "a gripping and moving film", "--no-feature-check")
    assert forced.returncode == 0, forced.stderr
    assert len(forced.stdout.strip().splitlines()) == 1


def test_a_deterministic_third_party_backbone_predicts_silently(site: Path, crc_run: Path) -> None:
    res = _tl(site, "predict", crc_run, "a gripping and moving film", "a dull mess")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.strip().splitlines()) == 2
    assert "feature" not in res.stderr.lower() and "warning" not in res.stderr.lower()


def test_a_run_saved_before_feature_samples_still_loads(site: Path, crc_run: Path, tmp_path: Path) -> None:
    from tlzoo import Predictor

    old = tmp_path / "old"
    shutil.copytree(crc_run, old)
    shutil.rmtree(old / "feature_sample")
    predictor = Predictor.load(old, _zoo(site))
    assert predictor.predict("a dull mess")[0]["label"] in predictor.classes


def test_loading_refuses_features_that_moved_and_a_damaged_sample(site: Path, crc_run: Path, tmp_path: Path) -> None:
    """In this process: a stored feature changed by more than the tolerance is refused with the largest
    difference; float noise is not; an unreadable sample is 'damaged' in one line."""
    from safetensors.numpy import load_file, save_file

    from tlzoo import Predictor, TlzooError
    from tlzoo.engine.run.feature_sample import FeatureDrift

    zoo = _zoo(site)
    run = tmp_path / "run"
    shutil.copytree(crc_run, run)
    path = run / "feature_sample" / "sample.safetensors"
    tensors = load_file(str(path))
    noisy = dict(tensors, features=tensors["features"] * (1 + 1e-5))
    save_file(noisy, str(path))
    Predictor.load(run, zoo)  # float noise passes
    moved = tensors["features"].copy()
    moved[3, 5] += 2.5
    save_file(dict(tensors, features=moved), str(path))
    with pytest.raises(FeatureDrift, match=r"largest difference 2\.5 \(feature 5 of training example"):
        Predictor.load(run, zoo)
    Predictor.load(run, zoo, check_features=False)  # the override
    (run / "feature_sample" / "sample.json").write_text("{not json")
    with pytest.raises(TlzooError, match=r"feature_sample' is damaged \(JSONDecodeError"):
        Predictor.load(run, zoo)


class _Result:
    """A finished process as ``one_line_error`` reads a CLI result."""

    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.exit_code, self.stdout, self.stderr = done.returncode, done.stdout, done.stderr
        self.output = done.stdout + done.stderr


def test_an_export_carries_the_sample_and_loading_it_checks_it(site: Path, hash_run: Path, tmp_path: Path) -> None:
    """Exported in this process (hash() agrees with the run here), the folder holds feature_sample/ in its
    digests; `tl predict EXPORT` in a new process refuses it as `tl predict RUN` does."""
    from helpers import one_line_error

    from tlzoo.commands.export import export_run

    dest = tmp_path / "exported"
    result = export_run(hash_run, dest, zoo=_zoo(site))
    assert {"feature_sample/sample.json", "feature_sample/sample.safetensors"} <= set(result.files)
    manifest = json.loads((dest / "export.json").read_text())
    assert "feature_sample/sample.safetensors" in manifest["files"]
    res = _tl(site, "predict", dest, "a gripping and moving film")
    one_line_error(_Result(res), "features differ from the ones stored with the run", "largest difference")


def test_the_sample_files_have_a_new_files_usual_mode(crc_run: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (crc_run / "feature_sample").iterdir()}
    assert set(modes.values()) == {0o666 & ~mask}, modes
