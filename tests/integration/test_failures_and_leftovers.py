"""Errors, leftovers and plugin isolation (issue 8, items 5-7).

Every case checks what a user sees: one line on stderr, the right exit code, no
"Traceback", and no ``<out>.incomplete``, ``<out>.lock`` or ``features/*.tmp-*`` left.
Plugins are faked as ``tlzoo`` entry points (modules written to a temporary folder on
``sys.path``, as in test_plugins.py); the signal tests run ``tl`` in a subprocess with a
real entry point (a ``.dist-info`` folder on PYTHONPATH) whose step wrapper stops inside
feature extraction and writes a marker file, so the signal arrives at a known moment.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import one_line_error

from tlzoo.api.errors import TlzooError

# --------------------------------------------------------------------------- helpers


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private TLZOO_HOME, so logs and cache folders of one test are its own."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("TLZOO_HOME", str(folder))
    return folder


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``install(name=source, ...)``: fake third-party plugins as ``tlzoo`` entry points named ``name``."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    eps: list[metadata.EntryPoint] = []
    original = metadata.entry_points

    def entry_points(**params: Any) -> Any:
        if params.get("group") == "tlzoo":
            return metadata.EntryPoints(eps)
        return original(**params)

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    from tlzoo.cli import cli

    monkeypatch.setattr(cli, "_loaded", False)
    monkeypatch.setattr(cli, "commands", dict(cli.commands))

    def add(**plugins: str) -> None:
        for name, source in plugins.items():
            module = f"tlzoo_rb_{name.replace('-', '_')}"
            (folder / f"{module}.py").write_text(textwrap.dedent(source))
            monkeypatch.delitem(sys.modules, module, raising=False)
            eps.append(metadata.EntryPoint(name=name, value=module, group="tlzoo"))

    return add


def one_line(res: Any, code: int, fragment: str = "") -> str:
    return one_line_error(res, fragment, code=code, prefix=None)


def leftovers(out: Path, home: Path | None = None) -> list[str]:
    """What a stopped run must not leave: its .incomplete folder, its lock, feature .tmp folders."""
    found = [str(p) for p in (out.with_name(out.name + ".incomplete"), out.with_name(out.name + ".lock")) if p.exists()]
    if home is not None and (home / "features").is_dir():
        found += [str(p) for p in (home / "features").iterdir() if ".tmp-" in p.name]
    return found


def run_args(out: Path, bert: Path, data: Path, *extra: Any) -> list[Any]:
    """A tiny `tl run`: the random 2-layer BERT, 16 tokens, a fitted head (no checkpoint ever)."""
    return [
        "run",
        "-q",
        "--plugin",
        "bert",
        "--weights",
        bert,
        "--data",
        data,
        "--max-length",
        "16",
        "--head",
        "logreg",
        "--out",
        out,
        *extra,
    ]


STEP_BOOM = """
from tlzoo import hookimpl

@hookimpl(wrapper=True)
def tlzoo_run_step(step, run):
    if step == "train":
        raise RuntimeError("kaboom in the plugin")
    return (yield)
"""


# --------------------------------------------------------------------------- 5: one line for every error
def test_unexpected_error_is_one_line_with_step_plugin_and_log(
    install: Any, run_cli: Any, home: Path, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path
) -> None:
    install(boom=STEP_BOOM)
    out = tmp_path / "run"
    res = run_cli(*run_args(out, tiny_bert_dir, text_csv))
    line = one_line(res, 1, "unexpected RuntimeError in step 'train' (plugin 'boom'): kaboom in the plugin")
    assert not leftovers(out, home) and not out.exists()
    logs = list((home / "logs").glob("*-run.log"))
    assert len(logs) == 1 and str(logs[0]) in line and "--debug" in line
    text = logs[0].read_text()
    assert "Traceback" in text and "kaboom in the plugin" in text and "step: train, plugin: boom" in text


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_prints_the_traceback(
    how: str,
    install: Any,
    run_cli: Any,
    home: Path,
    tmp_path: Path,
    tiny_bert_dir: Path,
    text_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install(boom=STEP_BOOM)
    out = tmp_path / "run"
    args = run_args(out, tiny_bert_dir, text_csv)
    if how == "flag":
        args = ["--debug", *args]
    else:
        monkeypatch.setenv("TLZOO_DEBUG", "1")
    res = run_cli(*args)
    assert res.exit_code == 1, res
    assert "Traceback" in res.stderr and "kaboom in the plugin" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("Error: unexpected RuntimeError in step 'train'")
    assert not (home / "logs").exists() and not leftovers(out, home)


def test_out_is_an_existing_file(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path) -> None:
    out = tmp_path / "taken.txt"
    out.write_text("not a folder")
    one_line(run_cli(*run_args(out, tiny_bert_dir, text_csv)), 2, "is an existing file")
    assert out.read_text() == "not a folder" and not leftovers(out)


def test_out_under_a_regular_file(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "sub" / "run"
    one_line(run_cli(*run_args(out, tiny_bert_dir, text_csv)), 2, f"inside '{blocker}', which is a file")


def test_out_on_a_read_only_file_system(
    run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests run as root, where chmod protects nothing: the file system refuses through os.open/os.mkdir."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_open, real_mkdir = os.open, os.mkdir

    def refuse(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if str(path).startswith(str(ro)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "open", refuse(real_open))
    monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    out = ro / "run"
    one_line(run_cli(*run_args(out, tiny_bert_dir, text_csv)), 2, "read-only; choose another --out")
    monkeypatch.undo()
    assert not any(ro.iterdir())


def test_full_disk_for_out(
    run_cli: Any, home: Path, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlzoo.evaluation import plots

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a failed write(): no file name

    monkeypatch.setattr(plots, "plot_confusion", full)
    out = tmp_path / "run"
    one_line(
        run_cli(*run_args(out, tiny_bert_dir, text_csv)),
        2,
        f"No space left on device writing '{out}'; free space or choose another --out/TLZOO_HOME",
    )
    assert not out.exists() and not leftovers(out, home)


def test_full_disk_for_the_feature_cache_falls_back_to_memory(
    run_cli: Any, home: Path, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlzoo.engine import features

    def full(self: Any, path: Path, block: np.ndarray) -> None:
        path.write_bytes(b"\x93NUMPY half")  # what a full disk leaves: part of a file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(features._ShardWriter, "_write_shard", full)
    out = tmp_path / "run"
    res = run_cli(
        "run",
        "--plugin",
        "bert",
        "--weights",
        tiny_bert_dir,
        "--data",
        text_csv,
        "--max-length",
        "16",
        "--head",
        "logreg",
        "--out",
        out,
        "--set",
        "progress=false",
    )
    assert res.exit_code == 0, res
    assert "Traceback" not in res.output
    warnings = [line for line in res.stderr.splitlines() if "warning: cannot write the feature cache" in line]
    assert len(warnings) == 3 and "continuing in memory" in warnings[0]  # train, val, test
    assert (out / "metrics.json").is_file() and not leftovers(out, home)
    assert not any((home / "features").iterdir())  # no entry, no partial folder


def test_cache_write_failure_mid_extraction_keeps_every_row(
    tiny_bert_dir: Path, text_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards written before the disk filled up are read back; the rest is extracted in memory."""
    import torch

    from tlzoo.api.interfaces import BackboneRequest, Dataset
    from tlzoo.engine import extraction, features
    from tlzoo.engine.zoo import Zoo

    factory, model = Zoo().resolve_backbone("bert", "")
    backbone = factory.create(BackboneRequest(model=model, weights=str(tiny_bert_dir), max_length=16))
    backbone.plugin = "bert"
    words = "good bad film story plot funny dull love".split()
    texts = [" ".join(words[(i * k) % len(words)] for k in range(1, 6)) for i in range(100)]
    ds = Dataset(texts, [str(i % 2) for i in range(100)], modality="text", name="toy")
    expected = extraction.extract(backbone, ds, batch_size=16, device=torch.device("cpu"), progress=False)
    calls = {"n": 0}
    real = features._ShardWriter._write_shard

    def second_fails(self: Any, path: Path, block: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, path, block)

    monkeypatch.setattr(features, "SHARD_ROWS", 40)
    monkeypatch.setattr(features._ShardWriter, "_write_shard", second_fails)
    cache = features.FeatureCache(tmp_path / "home")
    said: list[str] = []
    got = extraction.extract(
        backbone,
        ds,
        batch_size=16,
        device=torch.device("cpu"),
        progress=False,
        cache=cache,
        log=said.append,
        label="train",
    )
    assert calls["n"] == 2 and any("continuing in memory" in m for m in said)
    np.testing.assert_array_equal(got, expected)
    assert not any(cache.root.iterdir())

    monkeypatch.setattr(
        features.FeatureCache,
        "writer",
        lambda *a: (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied", str(cache.root))),
    )
    np.testing.assert_array_equal(
        extraction.extract(
            backbone, ds, batch_size=16, device=torch.device("cpu"), progress=False, cache=cache, log=said.append
        ),
        expected,
    )


def test_predict_file_in_latin1(run_cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "inputs.txt"
    path.write_bytes("un film très réussi\n".encode("latin-1"))
    line = one_line(run_cli("predict", tmp_path / "no-run", "--file", path), 2, "is not valid utf-8")
    assert "--encoding latin-1" in line and "0xe8" in line
    one_line(
        run_cli("predict", tmp_path / "no-run", "--file", path, "--encoding", "klingon"),
        2,
        "Unknown encoding 'klingon'",
    )


def test_predict_file_with_encoding_option(run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(*run_args(out, tiny_bert_dir, text_csv)).exit_code == 0
    path = tmp_path / "inputs.txt"
    path.write_bytes("un film très réussi\nthe film\n".encode("latin-1"))
    res = run_cli("predict", out, "--file", path, "--encoding", "latin-1")
    assert res.exit_code == 0, res
    assert "très réussi" in res.stdout and len(res.stdout.strip().splitlines()) == 2


PLUGIN_COMMANDS = '''
import click
from tlzoo import hookimpl

@click.command()
def locked():
    """Fails like a file without permission."""
    raise PermissionError(13, "Permission denied", "/secret/file")

@click.command()
def buggy():
    """Fails like a bug."""
    raise ValueError("a bug in a plugin command")

@hookimpl
def tlzoo_register_commands(cli):
    cli.add_command(locked)
    cli.add_command(buggy)
'''


def test_permission_errors_and_plugin_command_errors_are_one_line(install: Any, run_cli: Any, home: Path) -> None:
    install(cmds=PLUGIN_COMMANDS)
    one_line(run_cli("locked"), 2, "Permission denied for '/secret/file'")
    line = one_line(run_cli("buggy"), 1, "unexpected ValueError in `tl buggy`: a bug in a plugin command")
    assert str(home / "logs") in line


def test_os_error_messages() -> None:
    from tlzoo.infra.lifecycle import os_error_message

    assert "No space left on device writing 'x'" in os_error_message(OSError(errno.ENOSPC, "full", "x"))
    assert "No space left on device writing 'run'" in os_error_message(OSError(errno.ENOSPC, "full"), "run")
    assert "read-only" in os_error_message(OSError(errno.EROFS, "ro", "/m"))
    assert "Permission denied for '/m'" in os_error_message(PermissionError(errno.EACCES, "no", "/m"))
    assert os_error_message(OSError(errno.ECONNRESET, "reset")) is None  # not the user's to fix: a bug report


# --------------------------------------------------------------------------- 6: nothing half-written
INTERRUPT_AT_TRAIN = """
from tlzoo import hookimpl

@hookimpl(wrapper=True)
def tlzoo_run_step(step, run):
    if step == "train":
        raise KeyboardInterrupt
    return (yield)
"""


def test_ctrl_c_without_checkpoint_leaves_nothing(
    install: Any, run_cli: Any, home: Path, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path
) -> None:
    install(stop=INTERRUPT_AT_TRAIN)
    out = tmp_path / "run"
    assert one_line(run_cli(*run_args(out, tiny_bert_dir, text_csv)), 130) == "Interrupted (Ctrl-C)."
    assert not out.exists() and not leftovers(out, home)


FAIL_AFTER_TRAINING = """
import os
from pathlib import Path
from tlzoo import hookimpl

@hookimpl(wrapper=True)
def tlzoo_run_step(step, run):
    result = yield
    flag = Path(os.environ["TLZOO_TEST_FAIL_ONCE"])
    if step == "train" and not flag.exists():
        flag.write_text("failed once")
        raise RuntimeError("disk hiccup after training")
    return result
"""


def test_a_run_with_a_checkpoint_is_kept_and_resumes(
    install: Any,
    run_cli: Any,
    home: Path,
    tmp_path: Path,
    tiny_bert_dir: Path,
    text_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install(hiccup=FAIL_AFTER_TRAINING)
    monkeypatch.setenv("TLZOO_TEST_FAIL_ONCE", str(tmp_path / "failed-once"))
    out = tmp_path / "run"
    args = run_args(out, tiny_bert_dir, text_csv)
    args[args.index("logreg")] = "fc"
    (home / "features").mkdir()
    (home / "features" / "deadbeef.tmp-999999999").mkdir()  # a killed extraction's folder: the run tidies it
    (home / "features" / f"cafe.tmp-{os.getpid()}").mkdir()  # a live writer's folder: left alone
    line = one_line(run_cli(*args, "--epochs", "2"), 1, "RuntimeError in step 'train' (plugin 'hiccup')")
    assert f"continue with `tl run --resume {out}`" in line
    incomplete = out.with_name("run.incomplete")
    assert (incomplete / "checkpoint.pt").is_file() and not out.with_name("run.lock").exists()
    assert sorted(p.name for p in (home / "features").iterdir() if ".tmp-" in p.name) == [f"cafe.tmp-{os.getpid()}"]
    (incomplete / "checkpoint.pt.tmp").write_bytes(b"half a checkpoint")  # killed while saving
    res = run_cli("run", "-q", "--resume", out)
    assert res.exit_code == 0, res
    assert (out / "metrics.json").is_file() and not leftovers(out)


def test_resume_removes_a_half_written_checkpoint(tmp_path: Path) -> None:
    from tlzoo.engine.checkpoint import Checkpointer

    ck = Checkpointer(tmp_path)
    ck.save({"phase": "head", "epoch": 1})
    ck.tmp_path.write_bytes(b"half")
    assert ck.load()["epoch"] == 1 and not ck.tmp_path.exists()


def test_a_second_run_on_the_same_out_refuses_at_once(
    run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path
) -> None:
    from tlzoo.infra.lifecycle import RunLock

    out = tmp_path / "run"
    incomplete = out.with_name("run.incomplete")
    incomplete.mkdir()
    (incomplete / "config.toml").write_text("# the first run's\n")
    with RunLock(out):  # the first run, still writing
        line = one_line(run_cli(*run_args(out, tiny_bert_dir, text_csv)), 2, f"is writing '{out}' right now")
        assert f"(pid {os.getpid()})" in line
        assert (incomplete / "config.toml").read_text() == "# the first run's\n"  # untouched
    assert not out.with_name("run.lock").exists()


def test_a_second_pretrain_on_the_same_out_refuses_at_once(run_cli: Any, tmp_path: Path) -> None:
    from tlzoo.infra.lifecycle import RunLock

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"the film number {i} was good and long\n" for i in range(50)))
    out = tmp_path / "vectors"
    with RunLock(out):  # the first `tl pretrain`, still writing
        res = run_cli("pretrain", "--plugin", "word2vec", "--corpus", corpus, "--out", out, "--epochs", 1)
        one_line(res, 2, f"is writing '{out}' right now")
    assert not out.exists() and not out.with_name("vectors.incomplete").exists()
    res = run_cli("pretrain", "--plugin", "word2vec", "--corpus", corpus, "--out", out, "--epochs", 1, "--set", "dim=8")
    assert res.exit_code == 0, res
    assert (out / "pretraining.json").is_file() and not out.with_name("vectors.lock").exists()


def test_run_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    from tlzoo.infra.lifecycle import RunLock

    out = tmp_path / "run"
    code = (
        f"import os\nfrom tlzoo.infra.lifecycle import RunLock\nRunLock({str(out)!r}).acquire()\n"
        "os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", code], timeout=120)
    assert out.with_name("run.lock").exists()  # SIGKILL left the file, but not the lock
    with RunLock(out):
        pass
    assert not out.with_name("run.lock").exists()


def test_cache_ls_removes_orphans_of_dead_writers_only(run_cli: Any, home: Path) -> None:
    feats = home / "features"
    feats.mkdir()
    (feats / "abc.tmp-999999999").mkdir()
    (feats / f"def.tmp-{os.getpid()}").mkdir()
    res = run_cli("cache", "ls")
    assert res.exit_code == 0 and "removed 1 partial entry" in res.stderr, res
    assert sorted(p.name for p in feats.iterdir()) == [f"def.tmp-{os.getpid()}"]
    assert "(partial" in res.stdout  # the live writer's folder is listed, not removed


SLOW_PLUGIN = '''
"""Stops inside feature extraction: writes a marker after the first batch, then sleeps."""
import os
import time
from pathlib import Path

from tlzoo import hookimpl


@hookimpl(wrapper=True)
def tlzoo_run_step(step, run):
    if step == "train":
        forward = run.backbone.forward

        def slow(*args, **kwargs):
            out = forward(*args, **kwargs)
            Path(os.environ["TLZOO_TEST_MARKER"]).write_text(str(os.getpid()))
            time.sleep(600)
            return out

        run.backbone.forward = slow
    return (yield)
'''


@pytest.mark.parametrize("sig,code,name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_signal_during_feature_extraction_leaves_nothing(
    sig: int, code: int, name: str, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path
) -> None:
    site = tmp_path / "site"
    (site / "tlzoo_slow_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "tlzoo_slow_plugin.py").write_text(textwrap.dedent(SLOW_PLUGIN))
    (site / "tlzoo_slow_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tlzoo-slow-plugin\nVersion: 0.1\n"
    )
    (site / "tlzoo_slow_plugin-0.1.dist-info" / "entry_points.txt").write_text("[tlzoo]\nslow = tlzoo_slow_plugin\n")
    home, out, marker = tmp_path / "home", tmp_path / "run", tmp_path / "marker"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "TLZOO_HOME": str(home),
        "TLZOO_TEST_MARKER": str(marker),
    }
    env.pop("TLZOO_DEBUG", None)
    args = [sys.executable, "-m", "tlzoo.cli", *map(str, run_args(out, tiny_bert_dir, text_csv))]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300  # a safety net for a stuck child, not a timing assertion
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never reached feature extraction"
            time.sleep(0.1)
        assert any(".tmp-" in p.name for p in (home / "features").iterdir())  # mid-extraction indeed
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == f"Interrupted ({name}).", stderr
    assert not out.exists() and not leftovers(out, home)


# --------------------------------------------------------------------------- 7: plugin isolation
BAD_IMPORTS = {
    "exits": "import sys\nsys.exit(3)\n",
    "exits-none": "import sys\nsys.exit()\n",
    "ctrl-c": "raise KeyboardInterrupt\n",
}

COMMANDS_BOOM = """
from tlzoo import hookimpl

@hookimpl
def tlzoo_register_commands(cli):
    raise RuntimeError("commands hook exploded")
"""

SHADOWS = """
import click
from tlzoo import hookimpl
from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import BackboneFactory


def create(request):
    raise AssertionError("the built-in bert must win")


@hookimpl
def tlzoo_register_backbones(register):
    register(BackboneFactory(name="bert", modality="text", create=create, default_model="fake", models=("fake",)))


@click.command(name="run")
def fake_run():
    raise AssertionError("the built-in run must win")


@hookimpl
def tlzoo_register_commands(cli):
    cli.add_command(fake_run)
"""

TLZOO_ERROR_HOOK = """
from tlzoo import hookimpl
from tlzoo.api.errors import TlzooError

@hookimpl
def tlzoo_register_heads(register):
    raise TlzooError("this plugin needs a licence key")
"""

RAISING_SOURCE = """
from tlzoo import hookimpl
from tlzoo.api.interfaces import DataSource


class Fragile(DataSource):
    name = "fragile"
    modality = "text"
    description = "raises on every question"

    def can_load(self, location):
        raise ValueError("cannot even look")

    def load(self, location, options):
        raise AssertionError("never asked")


@hookimpl(tryfirst=True)
def tlzoo_register_data_sources(register):
    register(Fragile())
"""


def _plugin_rows(run_cli: Any) -> dict[str, dict[str, Any]]:
    res = run_cli("plugins", "--json")
    assert res.exit_code == 0 and "Traceback" not in res.output, res
    return {r["name"]: r for r in json.loads(res.stdout)}


def test_plugins_that_exit_or_interrupt_at_import_are_recorded(install: Any, run_cli: Any) -> None:
    install(**BAD_IMPORTS)
    rows = _plugin_rows(run_cli)
    assert rows["exits"]["error"] == "SystemExit: the plugin called sys.exit(3)"
    assert rows["exits-none"]["error"] == "SystemExit: the plugin called sys.exit(None)"
    assert rows["ctrl-c"]["error"] == "KeyboardInterrupt: raised by the plugin"
    for args in (["--help"], ["list"], ["heads"], ["strategies"], ["data", "list"]):
        res = run_cli(*args)
        assert res.exit_code == 0 and "Traceback" not in res.output, (args, res)
    text = run_cli("plugins").stdout
    assert "ERROR SystemExit: the plugin called sys.exit(3)" in text


def test_failing_register_commands_does_not_break_help(install: Any, run_cli: Any) -> None:
    install(cmdboom=COMMANDS_BOOM)
    res = run_cli("--help")
    assert res.exit_code == 0 and "Traceback" not in res.output and "run" in res.stdout, res
    assert (
        "RuntimeError in tlzoo_register_commands: commands hook exploded" in _plugin_rows(run_cli)["cmdboom"]["error"]
    )
    assert run_cli("heads").exit_code == 0


def test_name_clashes_keep_the_builtin_and_are_reported(
    install: Any, run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path
) -> None:
    from tlzoo.engine.zoo import Zoo

    install(shadow=SHADOWS)
    zoo = Zoo()
    assert zoo.backbones.owner["bert"] == "bert" and "fake" not in zoo.backbones.get("bert").models
    row = _plugin_rows(run_cli)["shadow"]
    assert row["error"] is None
    assert any("plugin 'bert' is already registered by built-in plugin 'bert'" in w for w in row["warnings"])
    assert any("command 'run' already exists" in w for w in row["warnings"])
    assert "warning: plugin 'bert' is already registered" in run_cli("plugins").stdout
    out = tmp_path / "run"
    res = run_cli(*run_args(out, tiny_bert_dir, text_csv))  # the built-in `run` and the built-in bert
    assert res.exit_code == 0, res
    assert (out / "metrics.json").is_file()


def test_tlzoo_error_in_a_register_hook_is_recorded(
    install: Any, run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path
) -> None:
    install(licence=TLZOO_ERROR_HOOK)
    assert (
        "TlzooError in tlzoo_register_heads: this plugin needs a licence key"
        in _plugin_rows(run_cli)["licence"]["error"]
    )
    out = tmp_path / "run"
    assert run_cli(*run_args(out, tiny_bert_dir, text_csv)).exit_code == 0


def test_a_raising_can_load_is_skipped_and_recorded(
    install: Any, run_cli: Any, tmp_path: Path, tiny_bert_dir: Path, text_csv: Path
) -> None:
    install(fragile=RAISING_SOURCE)
    out = tmp_path / "run"
    res = run_cli(*run_args(out, tiny_bert_dir, text_csv))
    assert res.exit_code == 0 and "Traceback" not in res.output, res
    res = run_cli("data", "list")
    assert res.exit_code == 0 and "rotten-tomatoes" in res.stdout, res
    assert (
        "data source 'fragile': can_load raised ValueError: cannot even look; the source is skipped"
        in _plugin_rows(run_cli)["fragile"]["error"]
    )


def test_run_with_a_plugin_that_failed_to_load(install: Any, run_cli: Any, tmp_path: Path, text_csv: Path) -> None:
    install(broken="raise ImportError('needs libfoo')\n")
    out = tmp_path / "run"
    one_line(
        run_cli("run", "-q", "--plugin", "broken", "--data", text_csv, "--out", out),
        2,
        "plugin 'broken' failed to load: ImportError: needs libfoo; see `tl plugins`",
    )
    assert not leftovers(out)


def test_unknown_names_in_tlzoo_plugins(run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLZOO_PLUGINS", "bertt,heads")
    res = run_cli("heads")
    assert res.exit_code == 0, res
    line = one_line(res, 0, "TLZOO_PLUGINS names 'bertt', which is no built-in or installed plugin.")
    assert "Did you mean 'bert'?" in line and line.startswith("Warning:")
    rows = _plugin_rows(run_cli)
    assert rows["bertt"]["missing"] and "Did you mean 'bert'?" in rows["bertt"]["error"]
    assert rows["heads"]["error"] is None
    from tlzoo.engine.zoo import Zoo

    with pytest.raises(TlzooError, match="Unknown plugin or model 'bertt'"):
        Zoo().resolve_backbone("bertt")
