"""No code from a weights folder ever runs (issue 17, item 9, first bullet).

A transformers checkpoint folder whose ``config.json`` carries ``auto_map`` makes transformers
import Python files from that folder; on a terminal, without ``trust_remote_code=False``, it asks
"Do you wish to run the custom code? [y/N]" and a ``y`` runs them.  Each command here runs ``tl``
in a pseudo-terminal that answers ``y`` to every prompt: it must refuse in one line, exit 2, and
the planted module (which creates a marker file when imported) must never run.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import BertConfig, BertModel
class EvilConfig(BertConfig):
    model_type = "evil"
class EvilModel(BertModel):
    config_class = EvilConfig
"""


def plant_remote_code(src: Path, dest: Path, marker: Path, where: str = "config.json") -> Path:
    """A copy of the checkpoint ``src`` whose ``where`` asks transformers to import ``evil.py``."""
    shutil.copytree(src, dest)
    (dest / "evil.py").write_text(EVIL.format(marker=str(marker)), encoding="utf-8")
    path = dest / where
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel", "AutoTokenizer": ["evil.X"]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return dest


def tl_in_a_terminal(*args: str, cwd: Path, timeout: float = 180.0) -> tuple[int, str]:
    """Run ``tl ARGS`` with a pseudo-terminal as stdin/stdout/stderr, answering ``y`` to every prompt."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlzoo", *args], stdin=follower, stdout=follower, stderr=follower, cwd=cwd, env=env
    )
    os.close(follower)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                if b"[y/N]" in chunk or b"custom code" in chunk:
                    os.write(leader, b"y\n")
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    return code, out.decode("utf-8", "replace")


def one_line_refusal(code: int, out: str) -> str:
    lines = [line for line in out.replace("\r", "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert code == 2, out
    assert "Traceback" not in out and "[y/N]" not in out, out
    assert len(errors) == 1 and "never runs" in errors[0], out
    return errors[0]


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_weights_folder_with_auto_map_is_refused_without_a_prompt(
    tiny_bert_dir: Path, text_csv: Path, tmp_path: Path, where: str
) -> None:
    marker = tmp_path / "PWNED"
    folder = plant_remote_code(tiny_bert_dir, tmp_path / "evil-bert", marker, where)
    code, out = tl_in_a_terminal(
        "run", "--plugin", "bert", "--weights", str(folder), "--data", str(text_csv), "--out", "r", cwd=tmp_path
    )
    line = one_line_refusal(code, out)
    assert where in line or "Python code" in line
    assert not marker.exists(), "the folder's Python ran"
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_python_file_alone_in_a_weights_folder_is_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from tlzoo.api.errors import TlzooError
    from tlzoo.plugins.text.bert import resolve_source

    folder = tmp_path / "with-code"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "modeling_x.py").write_text("raise SystemExit('ran')\n", encoding="utf-8")
    with pytest.raises(TlzooError, match="never runs code.*modeling_x.py|modeling_x.py.*never runs code"):
        resolve_source("tiny", str(folder))


def test_run_folder_pointing_at_remote_code_in_its_assets_is_refused(
    tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    """A shared run folder whose model.json points request.weights at assets/<folder>: the path passes the
    run-directory confinement, so the refusal must come from the backbone itself, in every command."""
    from tlzoo import Engine, RunConfig

    cfg = RunConfig()
    cfg.model.plugin = "bert"
    cfg.model.weights = str(tiny_bert_dir)
    cfg.data.path = str(text_csv)
    cfg.out = str(tmp_path / "run")
    cfg.train.head_epochs = 2
    cfg.progress = False
    Engine().run(cfg)
    run = tmp_path / "run"
    marker = tmp_path / "PWNED"
    plant_remote_code(tiny_bert_dir, run / "assets" / "evil", marker)
    model_json = run / "model.json"
    meta = json.loads(model_json.read_text(encoding="utf-8"))
    meta["backbone"]["request"]["weights"] = "assets/evil"
    meta["backbone"].pop("weights_copy", None)
    model_json.write_text(json.dumps(meta), encoding="utf-8")
    for command in (["predict", str(run), "a funny comedy"], ["export", str(run), "--to", str(tmp_path / "exp")]):
        code, out = tl_in_a_terminal(*command, cwd=tmp_path)
        one_line_refusal(code, out)
        assert not marker.exists(), f"the folder's Python ran under tl {command[0]}"
