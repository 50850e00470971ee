"""Scale-out: the same run under ``torchrun --standalone --nproc-per-node 2`` (gloo, CPU).

Three launches, each a real torchrun with two worker processes on the tiny BERT:

* one process group running two runs through the Python API (feature extraction + fc
  head, then a short fine-tune), each rank printing the result it got;
* ``tl run`` (the CLI) fine-tuning, rank 0 SIGKILLed right after its "fine-tune epoch 2"
  line (epoch 1's checkpoint is on disk), then ``tl run --resume`` with two processes.

Each is compared with the one-process run of the same config: the same feature-cache
entries (keys, manifests, arrays), test accuracy within 0.02, exactly one run folder with
the usual artifacts, nothing left beside it, and the result printed once.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TOPICS

from tlzoo.engine.config import RunConfig
from tlzoo.facade import Engine

pytestmark = pytest.mark.xdist_group("distributed")  # one worker: two more processes each launch

ARTIFACTS = {
    "config.toml",
    "history.csv",
    "history.png",
    "confusion.png",
    "metrics.json",
    "model.json",
    "model.safetensors",
    "predictions.csv",
    "report.html",
    "README.md",
    "assets",
}

# Two runs in one torchrun job (the process group is joined and left by each run); every rank
# prints what Engine.run returned to it.
TWO_RUNS = textwrap.dedent("""
    import json, os, sys
    from tlzoo.engine.config import RunConfig
    from tlzoo.engine.runner import stderr_log
    from tlzoo.facade import Engine

    for path in sys.argv[1:]:
        result = Engine(log=stderr_log).run(RunConfig.from_toml(path))
        # a file per rank and run: two ranks printing long lines to one pipe can interleave them
        with open(f"{path}.rank{os.environ['RANK']}.json", "w") as f:
            json.dump({"rank": int(os.environ["RANK"]), "config": path, "run_dir": str(result.run_dir),
                       "metrics": result.metrics}, f, sort_keys=True)
""")

# `tl run` whose log kills rank 0 (the only rank that logs) once fine-tune epoch 2 is logged:
# epoch 2's row is in history.csv, but the checkpoint on disk holds epoch 1.  Rank 1 gets a
# TLZOO_HOME of its own, as on a node that does not share the cache: rank 0 sends it the rows.
KILL_CLI = textwrap.dedent("""
    import os, signal, sys
    if os.environ["RANK"] != "0":
        os.environ["TLZOO_HOME"] += "-rank" + os.environ["RANK"]
    import click
    import tlzoo.cli as cli
    import tlzoo.cli.train as train_commands

    def log(msg):
        click.echo(msg, err=True)
        if "fine-tune epoch 2/" in msg:
            os.kill(os.getpid(), signal.SIGKILL)

    train_commands._log = log  # tl run's log (tlzoo/cli/train.py)
    cli.cli(sys.argv[1:], prog_name="tl")
""")


@pytest.fixture(scope="module")
def topics(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 short texts of the three TOPICS (a 240-example test split: 0.02 is 5 examples)."""
    rng = random.Random(11)
    filler = "the a of and is it this that was with".split()
    path = tmp_path_factory.mktemp("topics600") / "topics.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for _ in range(200):
            for label, words in TOPICS.items():
                text = rng.sample(words, 3) + rng.sample(filler, 4)
                rng.shuffle(text)
                w.writerow([" ".join(text), label])
    return path


def _config(bert: Path, data: Path, out: Path, strategy: str) -> RunConfig:
    cfg = RunConfig()
    cfg.model.plugin, cfg.model.weights, cfg.model.max_length = "bert", str(bert), 16
    cfg.data.path, cfg.data.val_fraction, cfg.data.test_fraction = str(data), 0.1, 0.4
    cfg.train.strategy, cfg.train.device, cfg.train.batch_size = strategy, "cpu", 16
    cfg.train.lr = 0.1  # the fc head learns the topics in a few epochs on either side
    cfg.head.params = {"dropout": 0.0}  # no random masks (tiny BERT has none): ranks differ in sum order only
    if strategy == "fine-tune":
        cfg.train.head_epochs, cfg.train.joint_epochs, cfg.train.unfreeze, cfg.train.finetune_lr = 20, 3, 2, 1e-3
    else:
        cfg.train.head_epochs = 20
    cfg.seed, cfg.progress, cfg.out = 3, False, str(out)
    return cfg


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "TLZOO_HOME": str(home), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _torchrun(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(command, cwd=cwd, env=_env(home), capture_output=True, text=True, timeout=300)


def _entries(home: Path) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
    """The feature cache: key -> (manifest without its time stamp, the rows)."""
    out = {}
    for folder in sorted((home / "features").iterdir()):
        assert ".tmp-" not in folder.name, f"unpublished extraction left behind: {folder}"
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest.pop("created")
        rows = [np.load(folder / s["name"]) for s in manifest["shards"]]
        out[folder.name] = (manifest, np.concatenate(rows) if rows else np.zeros((0, manifest["width"])))
    return out


def _history(run_dir: Path) -> list[tuple[str, str]]:
    lines = (run_dir / "history.csv").read_text().splitlines()[1:]
    return [tuple(line.split(",")[:2]) for line in lines]  # (phase, epoch)


def _val_losses(run_dir: Path) -> list[float]:
    with (run_dir / "history.csv").open() as f:
        return [float(row["val_loss"]) for row in csv.DictReader(f)]


def _assert_one_clean_run(folder: Path, name: str) -> None:
    """Exactly the run folder (no .incomplete, no .lock, no second copy), with every artifact."""
    runs = sorted(p.name for p in folder.iterdir() if p.name.startswith(name))
    assert runs == [name], runs
    assert {p.name for p in (folder / name).iterdir()} >= ARTIFACTS
    assert not (folder / name / "checkpoint.pt").exists()


@pytest.fixture(scope="module")
def two_process_runs(tiny_bert_dir: Path, topics: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Feature extraction + fc, then a fine-tune, in one 2-process torchrun job."""
    root = tmp_path_factory.mktemp("ddp")
    home, work = root / "home", root / "work"
    work.mkdir()
    paths = []
    for strategy in ("feature-extraction", "fine-tune"):
        path = root / f"{strategy}.toml"
        path.write_text(_config(tiny_bert_dir, topics, work / strategy, strategy).to_toml())
        paths.append(str(path))
    script = root / "two_runs.py"
    script.write_text(TWO_RUNS)
    proc = _torchrun([str(script), *paths], home, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(root.glob("*.toml.rank*.json"))]
    return {"home": home, "work": work, "results": results, "stderr": proc.stderr, "root": root}


def test_feature_extraction_two_processes_fill_the_same_cache(
    two_process_runs: dict[str, Any], tiny_bert_dir: Path, topics: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = two_process_runs
    mine = [r for r in runs["results"] if r["config"].endswith("feature-extraction.toml")]
    assert sorted(r["rank"] for r in mine) == [0, 1]
    assert mine[0]["metrics"] == mine[1]["metrics"]  # every rank returns rank 0's result
    assert mine[0]["run_dir"] == mine[1]["run_dir"] == str(runs["work"] / "feature-extraction")
    _assert_one_clean_run(runs["work"], "feature-extraction")
    assert runs["stderr"].count("[ 1/12] import libraries") == 2  # rank 0 only, once per run
    assert "extracted by 2 processes" in runs["stderr"]

    # one process, a fresh cache: the same entries, key for key
    single_home = tmp_path / "home"
    monkeypatch.setenv("TLZOO_HOME", str(single_home))
    single = Engine(log=None).run(_config(tiny_bert_dir, topics, tmp_path / "single", "feature-extraction"))
    ours, theirs = _entries(single_home), _entries(runs["home"])
    assert set(ours) <= set(theirs) and len(ours) == 3  # train / val / test; the fine-tune reused them
    for key, (manifest, rows) in ours.items():
        assert theirs[key][0] == manifest
        np.testing.assert_allclose(theirs[key][1], rows, rtol=0, atol=1e-5)
    assert abs(single.accuracy - mine[0]["metrics"]["test"]["accuracy"]) <= 0.02
    # each rank trained on its piece of the batches one process forms: the same steps, the same curve
    np.testing.assert_allclose(_val_losses(Path(mine[0]["run_dir"])), _val_losses(single.run_dir), atol=1e-3)

    # a later one-process run on the 2-process cache hits every split and adds nothing
    monkeypatch.setenv("TLZOO_HOME", str(runs["home"]))
    cfg = _config(tiny_bert_dir, topics, tmp_path / "hit", "feature-extraction")
    cfg.head.name, cfg.head.params = "logreg", {}
    lines: list[str] = []
    before = sorted(p.name for p in (runs["home"] / "features").iterdir())
    Engine(log=lines.append).run(cfg)
    assert sum("read from cache" in line for line in lines) == 3, lines
    assert sorted(p.name for p in (runs["home"] / "features").iterdir()) == before


def test_fine_tune_under_ddp_matches_one_process(
    two_process_runs: dict[str, Any], tiny_bert_dir: Path, topics: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = two_process_runs
    mine = [r for r in runs["results"] if r["config"].endswith("fine-tune.toml")]
    assert sorted(r["rank"] for r in mine) == [0, 1] and mine[0]["metrics"] == mine[1]["metrics"]
    out = runs["work"] / "fine-tune"
    _assert_one_clean_run(runs["work"], "fine-tune")
    assert _history(out) == [("head", str(e)) for e in range(1, 21)] + [("fine-tune", str(e)) for e in range(1, 4)]
    assert not (runs["home"] / "logs").exists()  # no rank hit an unexpected error

    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))
    single = Engine(log=None).run(_config(tiny_bert_dir, topics, tmp_path / "single", "fine-tune"))
    assert abs(single.accuracy - mine[0]["metrics"]["test"]["accuracy"]) <= 0.02
    assert single.accuracy >= 0.9  # the comparison means something: both learned the topics
    np.testing.assert_allclose(_val_losses(out), _val_losses(single.run_dir), atol=1e-3)


def test_cli_fine_tune_killed_then_resumed_with_two_processes(
    tiny_bert_dir: Path, topics: Path, tmp_path: Path
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    killer = tmp_path / "kill_cli.py"
    killer.write_text(KILL_CLI)
    args = [
        "run",
        "--plugin",
        "bert",
        "--weights",
        str(tiny_bert_dir),
        "--data",
        str(topics),
        "--max-length",
        "16",
        "--val-fraction",
        "0.1",
        "--test-fraction",
        "0.4",
        "--strategy",
        "fine-tune",
        "--head-epochs",
        "20",
        "--epochs",
        "3",
        "--lr",
        "0.1",
        "--finetune-lr",
        "1e-3",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--seed",
        "3",
        "--out",
        "ft",
    ]
    killed = _torchrun([str(killer), *args], home, work)
    assert killed.returncode != 0 and "fine-tune epoch 2/3" in killed.stderr, killed.stderr[-3000:]
    incomplete = work / "ft.incomplete"
    assert (incomplete / "checkpoint.pt").is_file() and not (work / "ft").exists()
    assert len(list((home / "features").iterdir())) == 3  # rank 0 published train / val / test
    assert not Path(f"{home}-rank1", "features").exists()  # rank 1 cached nothing: it was sent the rows

    resumed = _torchrun(["-m", "tlzoo", "run", "--resume", "ft", "--json"], home, work)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed fine-tune after epoch 1/3" in resumed.stderr
    assert resumed.stderr.count("read from cache") == 3  # the shared cache this time
    assert resumed.stderr.count("[ 1/12]") == 1  # only rank 0 logs
    result = json.loads(resumed.stdout)  # printed once: one JSON document on stdout
    assert result["run_dir"] == "ft"
    _assert_one_clean_run(work, "ft")
    assert not (work / "ft.lock").exists()
    # every epoch once: the resumed run rewrote epoch 2's row, it did not add a second one
    assert _history(work / "ft") == [("head", str(e)) for e in range(1, 21)] + [
        ("fine-tune", "1"),
        ("fine-tune", "2"),
        ("fine-tune", "3"),
    ]
    metrics = json.loads((work / "ft" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == result["test"]["accuracy"] >= 0.9
