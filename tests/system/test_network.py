"""No socket when offline, bounded waits when the network black-holes (issue 8, items 3-4).

* Socket guard: ``socket.socket.connect``, ``socket.create_connection`` and
  ``socket.getaddrinfo`` are replaced by functions that record the call and raise;
  ``tl --offline ...`` runs in-process (click's CliRunner) for bert (the tiny random
  checkpoint and the packaged MiniLM default), efficientnet (packaged Lite0 weights),
  resnet50 without weights, glove, ``--data hf:NAME``, ``tl predict`` and ``tl pull``, and the guard must
  have recorded nothing.  The suite's own HF_HUB_OFFLINE is removed for these tests, so
  the flag alone (or TLZOO_OFFLINE) must switch everything offline.
* Black hole: a TCP server on 127.0.0.1 accepts connections and never answers; the hub
  endpoint and the HTTP(S) proxies point at it, the suite's offline variables are
  removed, and ``tl run`` / ``tl pull`` in a subprocess must fail with the one-line
  "No pretrained weights" message (exit 2) well within 30 s.  Before the fix the
  resnet50 case took 810 s (huggingface_hub's retries: six HEADs of up to 60 s each).
  Only loopback addresses are ever used.
* A bert ``--weights`` folder holding only a pickled ``pytorch_model.bin`` is refused
  with one line saying how to convert it, and the pickle is never loaded.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import one_line_error

from tlzoo.infra import network

OFFLINE_VARS = ("TLZOO_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


# --------------------------------------------------------------------------- socket guard
@pytest.fixture
def online_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the suite's HF_HUB_OFFLINE & co. (restored afterwards): only --offline may switch it."""
    for name in OFFLINE_VARS:
        monkeypatch.setenv(name, "0")  # recorded first, so what set_offline() writes is undone too
        monkeypatch.delenv(name)
    for module_name, attrs in (
        ("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
        ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")),
    ):
        module = sys.modules.get(module_name)
        for attr in attrs:
            if module is not None and hasattr(module, attr):
                monkeypatch.setattr(module, attr, False)
    assert not network.offline()


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch, online_env: None) -> list[tuple[str, str]]:
    """Every connect or DNS lookup in this process is recorded, and fails."""
    calls: list[tuple[str, str]] = []

    def refuse(kind: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append((kind, repr(args[1:3] if kind.startswith("socket.") else args[:2])))
            raise OSError(f"socket guard: {kind} is not allowed in this test")

        return call

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return calls


def test_guard_catches_a_hub_request(guard: list[tuple[str, str]]) -> None:
    """The guard is real: a request through huggingface_hub's own HTTP client is recorded (and fails)."""
    from huggingface_hub.utils import get_session

    with pytest.raises(Exception):  # noqa: B017 - the type is the HTTP client's (httpx or requests) wrapping the OSError
        get_session().head("http://127.0.0.1:9/", timeout=1)  # loopback; the guard refuses it before any packet
    assert guard, "the socket guard recorded nothing; it would not notice a connection either"


OFFLINE_RUNS = {
    # name: (where the flag goes, `tl run` options, inputs for `tl predict` afterwards or "")
    "bert-local": ("before", "--plugin bert --weights {tiny_bert} --data {texts} --limit 60 --epochs 2 --max-length 32",
                   "{a funny and charming film} {a dull boring movie}"),
    # the default bert model (no --weights) comes from its package; the flag given on `tl run`
    "minilm-packaged": ("after", "--plugin bert --data {texts} --limit 40 --epochs 1 --max-length 24 "
                        "--head logreg", ""),
    "efficientnet": ("before", "--plugin efficientnet --data {images} --limit 40 --image-size 64 --epochs 1 "
                     "--head logreg", "{first_image}"),
    "glove": ("before", "--plugin glove --data {texts} --limit 60 --epochs 2", ""),
}  # fmt: skip


@pytest.mark.parametrize("name", list(OFFLINE_RUNS))
def test_offline_run_and_predict(
    name: str,
    request: pytest.FixtureRequest,
    run_cli: Callable[..., Any],
    guard: list[tuple[str, str]],
    text_csv: Path,
    image_folder: Path,
    tmp_path: Path,
) -> None:
    """A whole run (and a prediction from it) under --offline opens no socket."""
    where, options, inputs = OFFLINE_RUNS[name]
    values = {"texts": text_csv, "images": image_folder, "first_image": next(iter(sorted(image_folder.rglob("*.png"))))}
    if "{tiny_bert}" in options:  # built only where needed
        values["tiny_bert"] = request.getfixturevalue("tiny_bert_dir")

    def fill(words: str) -> list[Any]:  # {name}: a value above; {some text}: that text, one argument
        return [values.get(w, w) for w in re.findall(r"\{([^}]*)\}|(\S+)", words) for w in [w[0] or w[1]]]

    out = tmp_path / name
    command = ["run", *fill(options), "--out", out, "-q"]
    res = run_cli(*(["--offline", *command] if where == "before" else [command[0], "--offline", *command[1:]]))
    assert res.exit_code == 0, res
    assert network.offline() and os.environ["HF_HUB_OFFLINE"] == "1"
    if inputs:
        res = run_cli("--offline", "predict", out, *fill(inputs))
        assert res.exit_code == 0, res
        assert len(res.stdout.strip().splitlines()) == len(fill(inputs))
    assert guard == []


def test_offline_hf_dataset_fails_at_once(
    run_cli: Callable[..., Any], guard: list[tuple[str, str]], tmp_path: Path
) -> None:
    """--data hf:NAME offline: the datasets cache only, so a dataset not in it is one line at once."""
    res = run_cli(
        "--offline", "run", "--plugin", "glove", "--data", "hf:rotten_tomatoes", "--out", tmp_path / "r", "-q"
    )
    one_line_error(res, "Could not load Hugging Face dataset 'rotten_tomatoes'", "offline", "save_to_disk")
    assert guard == []


@pytest.mark.parametrize("how", ["flag", "env"])
def test_offline_resnet50_without_weights_fails_at_once(
    run_cli: Callable[..., Any],
    guard: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    image_folder: Path,
    tmp_path: Path,
    how: str,
) -> None:
    """No local weights: the clear message at once, no socket, with --offline or TLZOO_OFFLINE=1."""
    import timm  # noqa: F401  (imported before the clock starts: the bound is on waiting, not on importing)

    flag = ["--offline"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv("TLZOO_OFFLINE", "1")
    out = tmp_path / "resnet"
    start = time.monotonic()
    res = run_cli(
        *flag,
        "run",
        "--plugin",
        "resnet",
        "--model",
        "resnet50",
        "--data",
        image_folder,
        "--limit",
        30,
        "--epochs",
        1,
        "--out",
        out,
        "-q",
    )
    elapsed = time.monotonic() - start
    one_line_error(res, "No pretrained weights for 'resnet50'", "tl pull resnet50", "offline")
    assert elapsed < 20, f"an offline failure took {elapsed:.1f} s"
    assert guard == []
    assert not out.exists() and not Path(f"{out}.incomplete").exists()


def test_offline_still_reads_the_hub_cache(
    guard: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Offline means "caches only", not "nothing": weights in the local hub cache still load, without a socket."""
    import huggingface_hub.constants as hub_constants
    import timm
    import torch
    from safetensors.torch import save_file

    from tlzoo.plugins.vision.timm_vision import _from_hub

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    network.set_offline()
    repo = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    torch.manual_seed(7)
    state = {k: v.clone() for k, v in timm.create_model("resnet18").state_dict().items()}
    save_file(state, str(folder / "snapshots" / commit / "model.safetensors"))
    found = _from_hub("resnet18", "resnet18")
    assert torch.equal(found.state["fc.weight"], state["fc.weight"])
    assert repo in found.source
    assert guard == []


def test_offline_pull_refuses_at_once(run_cli: Callable[..., Any], guard: list[tuple[str, str]]) -> None:
    start = time.monotonic()
    res = run_cli("--offline", "pull", "resnet50")
    elapsed = time.monotonic() - start
    one_line_error(res, "tl pull resnet50", "offline")
    assert elapsed < 5, f"`tl pull` took {elapsed:.1f} s to refuse"
    assert guard == []


def test_offline_pull_of_a_packaged_model_works(
    run_cli: Callable[..., Any],
    guard: list[tuple[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offline, `tl pull` still copies weights that an installed package ships."""
    # its own home: the suite's shared TLZOO_HOME must keep preferring the packaged weights
    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))
    res = run_cli("pull", "--offline", "efficientnet_lite0")
    assert res.exit_code == 0, res
    assert Path(res.stdout.strip()).is_file()
    assert guard == []


def test_set_offline_reaches_an_imported_huggingface_hub(online_env: None) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import: set_offline patches the loaded constant too."""
    import huggingface_hub.constants as hub_constants

    assert hub_constants.HF_HUB_OFFLINE is False and not hub_constants.is_offline_mode()
    network.set_offline()
    assert hub_constants.is_offline_mode()
    assert all(os.environ[name] == "1" for name in OFFLINE_VARS)


# --------------------------------------------------------------------------- black hole
class Server:
    """A TCP server on 127.0.0.1 that accepts and then either never answers or answers 404."""

    def __init__(self, answer: bool = False, life_s: float = 180.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.answer, self.accepted = answer, 0
        self.first_accept: float | None = None
        self.held: list[socket.socket] = []
        self.deadline = time.monotonic() + life_s  # never outlives a hung test by much
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True, name="test-black-hole")
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            if self.first_accept is None:
                self.first_accept = time.monotonic()
            if self.answer:
                conn.settimeout(2)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass
                conn.close()
            else:
                self.held.append(conn)  # kept open, never answered

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def black_hole() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


def black_hole_env(server: Server, tmp_path: Path) -> dict[str, str]:
    """Online as far as tlzoo knows, with every route (hub endpoint, proxies) into the black hole."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS and k.lower() != "no_proxy"}
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        env[name] = server.url
    env.update(
        HF_ENDPOINT=server.url,
        NO_PROXY="",
        no_proxy="",
        TLZOO_HOME=str(tmp_path / "home"),
        HF_HOME=str(tmp_path / "hf"),
        TORCH_HOME=str(tmp_path / "torch"),
        TLZOO_PROBE_TIMEOUT="1",  # the bound under test is the same at 1 s as at the default 5 s, sooner
    )
    return env


def run_tl(
    args: list[str], env: dict[str, str], cwd: Path, server: Server | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run tl; return the process and the seconds it spent after first reaching the network.

    The bound is on waiting for the network (810 s before the fix), so it counts from the
    black hole's first accepted connection: torch and timm imports before it take from 5 s
    on an idle machine to 25 s on a loaded 2-core one, and are not what this test is about.
    Without a connection (a run that never tried the network) the whole time counts.
    """
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tlzoo.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    end = time.monotonic()
    first = server.first_accept if server is not None and server.first_accept is not None else start
    return proc, end - max(start, first)


def assert_bounded_failure(proc: subprocess.CompletedProcess[str], elapsed: float, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in error[0], error[0]
    # a bound on a hang, not a speed test: it took 810 s before the fix
    assert elapsed < 30, f"waited {elapsed:.1f} s on a black-holed network: {error[0]}"


def test_black_hole_resnet50(black_hole: Server, image_folder: Path, tmp_path: Path) -> None:
    proc, elapsed = run_tl(
        [
            "run",
            "--plugin",
            "resnet",
            "--model",
            "resnet50",
            "--data",
            str(image_folder),
            "--limit",
            "30",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
            "-q",
        ],
        black_hole_env(black_hole, tmp_path),
        tmp_path,
        black_hole,
    )
    assert_bounded_failure(proc, elapsed, "No pretrained weights for 'resnet50'", "tl pull resnet50", "did not answer")
    assert black_hole.accepted >= 1, "the run never tried the (black-holed) network: the test proves nothing"


def test_black_hole_bert_hub_id(black_hole: Server, text_csv: Path, tmp_path: Path) -> None:
    proc, elapsed = run_tl(
        [
            "run",
            "--plugin",
            "bert",
            "--model",
            "bert-base-uncased",
            "--data",
            str(text_csv),
            "--limit",
            "30",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
            "-q",
        ],
        black_hole_env(black_hole, tmp_path),
        tmp_path,
        black_hole,
    )
    assert_bounded_failure(
        proc, elapsed, "No pretrained weights for 'bert-base-uncased'", "--weights", "did not answer"
    )
    assert black_hole.accepted >= 1


def test_black_hole_pull_through_torch_hub_url(black_hole: Server, tmp_path: Path) -> None:
    """AlexNet's weights are a download.pytorch.org URL (torch.hub sets no timeout), reached through the proxy."""
    proc, elapsed = run_tl(["pull", "alexnet"], black_hole_env(black_hole, tmp_path), tmp_path, black_hole)
    assert_bounded_failure(proc, elapsed, "tl pull alexnet", "did not answer")
    assert black_hole.accepted >= 1


def test_probe_tells_an_answer_from_silence(online_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any HTTP answer (a 404 here) counts as reachable; silence is reported within the probe's bound."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(network, "_probes", {})
    monkeypatch.setenv("TLZOO_PROBE_TIMEOUT", "1.5")
    answering, silent = Server(answer=True, life_s=60), Server(life_s=60)
    try:
        assert network.unreachable(answering.url + "/some/file") == ""
        start = time.monotonic()
        why = network.unreachable(silent.url)
        assert f"{silent.url} did not answer within 1.5 s" in why
        assert 1.4 < time.monotonic() - start < network.probe_timeout() + 2
        start = time.monotonic()
        assert network.unreachable(silent.url) == why  # remembered: one wait per host, not one per file
        assert time.monotonic() - start < 0.5
    finally:
        answering.close()
        silent.close()


# --------------------------------------------------------------------------- pickled bert checkpoints
class Evil:
    """Unpickling this creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def test_bert_refuses_a_pickled_checkpoint_folder(
    run_cli: Callable[..., Any], tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "pickled-bert"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Evil(marker)))
    out = tmp_path / "run"
    res = run_cli(
        "run",
        "--plugin",
        "bert",
        "--weights",
        folder,
        "--data",
        text_csv,
        "--limit",
        30,
        "--epochs",
        1,
        "--out",
        out,
        "-q",
    )
    line = one_line_error(res, "pytorch_model.bin", "safetensors", "save_pretrained")
    assert "AutoModel.from_pretrained" in line
    assert not marker.exists(), "the pickled checkpoint was loaded"
    assert not out.exists() and not Path(f"{out}.incomplete").exists()
