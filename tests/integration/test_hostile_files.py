"""Issue 17 §9 and §1, as a hostile user: files planted where tlzoo reads and writes.

``tl export`` copies only regular files inside the ``--weights`` folder (a link to a private key
or to /dev/zero is refused), stores a fine-tuned backbone once, writes every file with a new
file's mode, and says a full disk or a read-only ``--to`` in one line; the sha256 digests of
export.json are checked whenever an export is loaded.  Bad input that used to exit 1 exits 2 in
one line: a non-UTF-8 sidecar json, a pickle named model.safetensors, a binary --config, a
model.json nested 100,000 deep, a run folder whose model files are links.  ``tl data export``
writes every dataset ``tl data list`` lists.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult
from helpers import one_line_error

from tlzoo.api.errors import TlzooError


def _cli(args: list[Any]) -> CliResult:
    from click.testing import CliRunner

    from tlzoo.cli import cli

    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    exc = res.exception if not isinstance(res.exception, SystemExit) else None
    return CliResult(res.exit_code, res.stdout, res.stderr, exc)


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _last_line_error(res: CliResult, *fragments: str) -> None:
    """An error after progress lines (tl export has no -q): exit 2, no traceback, one Error line, last."""
    assert res.exit_code == 2 and res.exception is None and "Traceback" not in res.output, res
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and sum(line.startswith("Error") for line in lines) == 1, res
    assert all(f in lines[-1] for f in fragments), res


def _nothing_left(dest: Path) -> None:
    assert not dest.exists(), f"{dest} was left behind"
    assert not [p for p in dest.parent.iterdir() if "export-tmp" in p.name], "a temporary export folder was left"


@pytest.fixture(scope="module")
def weights(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the tiny BERT checkpoint: the tests plant links in it."""
    folder = tmp_path_factory.mktemp("hostile-weights") / "bert"
    shutil.copytree(tiny_bert_dir, folder)
    return folder


@pytest.fixture(scope="module")
def frozen_run(weights: Path, topics_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Feature extraction + logreg: the export copies the --weights folder."""
    out = tmp_path_factory.mktemp("hostile-runs") / "frozen"
    res = _cli(
        ["run", "--plugin", "bert", "--weights", weights, "--data", topics_csv]
        + ["--head", "logreg", "--max-length", 16, "--out", out, "-q"]
    )
    assert res.exit_code == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def tuned_run(weights: Path, topics_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fine-tuned: model.safetensors holds the whole backbone."""
    out = tmp_path_factory.mktemp("hostile-runs") / "tuned"
    res = _cli(
        ["run", "--plugin", "bert", "--weights", weights, "--data", topics_csv, "--strategy", "fine-tune"]
        + ["--head", "fc", "--epochs", 1, "--head-epochs", 0, "--max-length", 16, "--out", out, "-q"]
    )
    assert res.exit_code == 0, res.stderr
    assert json.loads((out / "model.json").read_text())["backbone"]["weights_saved"]
    return out


# --------------------------------------------------------------------------- tl export: what it copies
@pytest.mark.parametrize("target", ["private", "/dev/zero"])
def test_export_refuses_links_out_of_the_weights_folder(
    frozen_run: Path, weights: Path, tmp_path: Path, target: str
) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    link = weights / ("id_rsa" if target == "private" else "zero.bin")
    link.symlink_to(secret if target == "private" else Path(target))
    dest = tmp_path / "export"
    try:
        one_line_error(_cli(["export", frozen_run, "--to", dest]), link.name, "link leading out", out=dest)
    finally:
        link.unlink()
    _nothing_left(dest)


def test_export_copies_links_inside_the_weights_folder_as_files(
    frozen_run: Path, weights: Path, tmp_path: Path
) -> None:
    link = weights / "vocab-copy.txt"
    link.symlink_to("vocab.txt")  # relative, inside the folder: followed
    try:
        res = _cli(["export", frozen_run, "--to", tmp_path / "export"])
    finally:
        link.unlink()
    assert res.exit_code == 0, res.stderr
    copied = tmp_path / "export" / "assets" / "source" / "bert" / "vocab-copy.txt"
    assert not copied.is_symlink() and copied.read_text() == (weights / "vocab.txt").read_text()


def test_export_stores_a_tuned_backbone_once_with_usual_modes(tuned_run: Path, tmp_path: Path) -> None:
    dest = tmp_path / "export"
    res = _cli(["export", tuned_run, "--to", dest])
    assert res.exit_code == 0, res.stderr
    source = dest / "assets" / "source" / "bert"
    assert (source / "config.json").is_file() and (source / "vocab.txt").is_file()
    assert not list(source.glob("*.safetensors")), "the backbone's weights are stored twice"
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert total < 1.3 * (dest / "model.safetensors").stat().st_size
    modes = {p.relative_to(dest).as_posix(): p.stat().st_mode & 0o777 for p in dest.rglob("*") if p.is_file()}
    assert set(modes.values()) == {_new_file_mode()}, modes
    assert (tuned_run / "model.safetensors").stat().st_mode & 0o777 == _new_file_mode()  # the run's too
    res = _cli(["predict", dest, "funny comedy", "--json"])  # rebuilt from the config, weights from the folder
    assert res.exit_code == 0, res.stderr
    theirs = _cli(["predict", tuned_run, "funny comedy", "--json"])
    assert json.loads(res.stdout)["probabilities"] == pytest.approx(json.loads(theirs.stdout)["probabilities"], 1e-5)


# --------------------------------------------------------------------------- export.json is checked on load
def test_an_edited_export_is_refused_naming_the_file(frozen_run: Path, tmp_path: Path) -> None:
    from tlzoo.commands.predict import Predictor

    dest = tmp_path / "export"
    assert _cli(["export", frozen_run, "--to", dest]).exit_code == 0
    Predictor.load(dest)  # untouched: loads
    desc = json.loads((dest / "model.json").read_text())
    desc["classes"] = desc["classes"][::-1]  # the labels swapped: would predict wrong names with exit 0
    (dest / "model.json").write_text(json.dumps(desc))
    one_line_error(_cli(["predict", dest, "funny comedy"]), "model.json", "changed after `tl export`")
    with pytest.raises(TlzooError, match="model.json"):
        Predictor.load(dest)  # what load.py calls
    shutil.copy(frozen_run / "model.json", dest / "model.json")  # not the exported one either
    (dest / "assets" / "source" / "bert" / "vocab.txt").unlink()
    one_line_error(_cli(["predict", dest, "funny comedy"]), "vocab.txt", "missing")
    (dest / "export.json").write_text("{not json")
    one_line_error(_cli(["predict", dest, "funny comedy"]), "export.json", "damaged")


# --------------------------------------------------------------------------- tl export: disk problems
@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        shutil.Error([("a", "b", "[Errno 28] No space left on device")]),
        RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"),  # safetensors' Rust
    ],
)
def test_a_full_disk_in_export_is_one_line(
    frozen_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    from tlzoo.engine import artifacts

    def full(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(artifacts, "save_model", full)
    dest = tmp_path / "export"
    _last_line_error(_cli(["export", frozen_run, "--to", dest]), "disk is full", "--to")
    _nothing_left(dest)


@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Any]:
    """mount(options) -> a fresh tmpfs mount point under tmp_path (skipped where mounting is not allowed)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def test_export_to_mount_points(frozen_run: Path, mount_point: Any) -> None:
    ro = mount_point("ro,size=1m")
    one_line_error(_cli(["export", frozen_run, "--to", ro]), "not writable", "read-only")
    assert not [p for p in ro.parent.iterdir() if "export-tmp" in p.name]
    small = mount_point("size=64k")  # a real full disk: the weights folder does not fit
    _last_line_error(_cli(["export", frozen_run, "--to", small / "export"]), "disk is full", "--to")
    assert not list(small.iterdir())
    roomy = mount_point("size=16m")  # an empty, writable mount point is filled in place
    res = _cli(["export", frozen_run, "--to", roomy])
    assert res.exit_code == 0, res.stderr
    assert (roomy / "export.json").is_file() and not (roomy / ".export-tmp").exists()
    assert _cli(["predict", roomy, "funny comedy"]).exit_code == 0


def test_a_full_disk_in_save_model_is_an_os_error(mount_point: Any) -> None:
    """safetensors reports a full disk as its own error type: save_model makes it the OSError it is,
    which every command says in one line (exit 2) instead of an unexpected error (exit 1)."""
    import torch

    from tlzoo.engine.artifacts import save_model
    from tlzoo.infra.lifecycle import os_error_message

    small = mount_point("size=64k")
    with pytest.raises(OSError) as info:
        save_model(small, {"w": torch.zeros(100_000)}, {"classes": ["a"]})
    assert info.value.errno == errno.ENOSPC
    assert "No space left" in (os_error_message(info.value) or "")


# --------------------------------------------------------------------------- exit 2, not 1
def test_non_utf8_sidecar_beside_vision_weights(image_folder: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "lenet.safetensors"))
    (tmp_path / "lenet.json").write_bytes(b"\xff\xfe{not utf-8")
    res = _cli(["run", "--plugin", "lenet", "--weights", tmp_path / "lenet.safetensors", "--data", image_folder, "-q"])
    one_line_error(res, "lenet.json", "not UTF-8")


def test_pickle_named_model_safetensors(tiny_bert_dir: Path, topics_csv: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "model.safetensors").write_bytes(pickle.dumps({"weights": list(range(100))}))
    res = _cli(["run", "--plugin", "bert", "--weights", folder, "--data", topics_csv, "--out", tmp_path / "out", "-q"])
    one_line_error(res, "model.safetensors", "not a safetensors file", out=tmp_path / "out")


def test_binary_config(topics_csv: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(bytes(range(256)) * 4)
    one_line_error(_cli(["run", "--config", config, "--data", topics_csv, "-q"]), "config.toml", "not valid TOML")


@pytest.mark.parametrize("out", ["/", ".", ".."])
def test_run_out_that_names_no_new_folder(
    tiny_bert_dir: Path, topics_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str
) -> None:
    monkeypatch.chdir(tmp_path)
    res = _cli(["run", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", topics_csv, "--out", out, "-q"])
    one_line_error(res, f"--out '{out}'", "names no new folder")
    assert not list(tmp_path.iterdir())


def test_deeply_nested_model_json(frozen_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(frozen_run, run)
    (run / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    one_line_error(_cli(["predict", run, "funny comedy"]), "model.json", "damaged")


@pytest.mark.parametrize("name", ["model.json", "model.safetensors"])
def test_run_folder_model_files_that_are_links(frozen_run: Path, tmp_path: Path, name: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(frozen_run, run)
    outside = tmp_path / f"outside-{name}"
    (run / name).rename(outside)
    (run / name).symlink_to(outside)
    one_line_error(_cli(["predict", run, "funny comedy"]), name, "is a link")
    one_line_error(_cli(["export", run, "--to", tmp_path / "export"]), name, "is a link", out=tmp_path / "export")


# --------------------------------------------------------------------------- tl data export
def test_data_export_writes_every_listed_dataset(tmp_path: Path) -> None:
    from tlzoo.plugins.data.builtin import FASHION_CLASSES, fashion_mnist_files

    try:
        fashion_mnist_files()
    except TlzooError as exc:
        pytest.skip(str(exc))
    listed = _cli(["data", "list"])
    assert "fashion-mnist" in listed.stdout
    res = _cli(["data", "export", "fashion-mnist", tmp_path / "fm", "--limit", 30])
    assert res.exit_code == 0, res.stderr
    folders = sorted(p.name for p in (tmp_path / "fm").iterdir())
    assert folders == sorted(c.replace("/", "_") for c in FASHION_CLASSES)  # 'T-shirt/top' -> 'T-shirt_top'
    assert sum(1 for _ in (tmp_path / "fm").rglob("*.png")) == 30
    res = _cli(["data", "export", "fashion-mnist:test", tmp_path / "test", "--limit", 10])
    assert res.exit_code == 0, res.stderr
    assert all(p.name.startswith("test-") for p in (tmp_path / "test").rglob("*.png"))
    one_line_error(_cli(["data", "export", "fashon-mnist", tmp_path / "x"]), "Unknown dataset", "fashion-mnist")
