"""Offline mode and bounded waits for everything tlzoo fetches from the network.

Only the Hugging Face hub (transformers, timm, datasets) and torch.hub download
URLs are ever contacted, and only to fetch weights or data that are not on disk.

* ``offline()``: ``--offline``, ``TLZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is set; then no
  tlzoo component opens a socket, hub libraries read only their local caches.
* ``set_offline()``: what ``--offline`` does; also sets the hub libraries' own switches,
  both in ``os.environ`` (read when they are imported) and in their already-imported
  constants (huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import).
* ``hub_access(url)``: wrap every hub call.  Before the first call to a host it asks
  that host for any HTTP answer within ``probe_timeout()`` (5 s); a host that does not answer
  (no DNS, a black-holed proxy) is treated as offline for that call, so the caller
  fails with its one-line "no weights here" message within seconds instead of
  sitting through huggingface_hub's retries (six HEAD requests of 60 s each per file);
  while it does answer, sockets get a default timeout so torch.hub's download (which
  sets none) cannot hang on a stalled transfer.

No heavy imports here: the hub libraries are touched only through ``sys.modules``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

TRUTHY = ("1", "true", "yes", "on")
# the hub libraries' own offline switches, all set by set_offline()
HUB_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 5.0  # seconds a host gets to send any HTTP answer before it counts as unreachable


def probe_timeout() -> float:
    """The probe's wait: ``TLZOO_PROBE_TIMEOUT`` seconds when set to a positive number (a slow proxy may
    need more, a test less), else :data:`PROBE_TIMEOUT_S`."""
    try:
        value = float(os.environ.get("TLZOO_PROBE_TIMEOUT", "") or PROBE_TIMEOUT_S)
    except ValueError:
        return PROBE_TIMEOUT_S
    return value if value > 0 else PROBE_TIMEOUT_S


PROBE_MEMORY_S = 60.0  # a probe's verdict is reused this long (one run asks each host once)
# huggingface_hub's per-request timeouts (its defaults are 10 s, and 60 s for its retries)
HUB_TIMEOUTS = {"HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "10"}
OFFLINE_HINT = "tlzoo is offline: --offline, TLZOO_OFFLINE or HF_HUB_OFFLINE is set"

_probes: dict[str, tuple[float, str]] = {}  # "scheme://host:port" -> (when, "" if it answered else why not)
_pending: dict[str, tuple[threading.Thread, list[str], float]] = {}  # probes started by probe_soon
_lock = threading.Lock()


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUTHY


def offline() -> bool:
    """True when tlzoo must not open any socket: --offline, TLZOO_OFFLINE or HF_HUB_OFFLINE."""
    return _truthy("TLZOO_OFFLINE") or _truthy("HF_HUB_OFFLINE")


def set_offline() -> None:
    """Switch this process (and the processes it starts) offline, hub libraries included."""
    os.environ["TLZOO_OFFLINE"] = "1"
    for name in HUB_OFFLINE_VARS:
        os.environ[name] = "1"
    _patch_loaded(True)
    configure_hub()


def configure_hub() -> None:
    """Short hub timeouts, no safetensors-conversion bot; mirror TLZOO_OFFLINE into the hub's switches.

    Called by the CLI and by every plugin that touches the hub, before they import the
    hub libraries; values the user set in the environment win."""
    if offline() and not all(_truthy(n) for n in HUB_OFFLINE_VARS):
        set_offline()
        return
    for name, value in HUB_TIMEOUTS.items():
        os.environ.setdefault(name, value)
    # transformers otherwise asks a hub Space to convert .bin checkpoints to safetensors
    os.environ.setdefault("DISABLE_SAFETENSORS_CONVERSION", "1")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported before us: its constants were read from the old environment
        for name in HUB_TIMEOUTS:
            try:
                setattr(constants, name, int(os.environ[name]))
            except ValueError:
                pass
    download = sys.modules.get("huggingface_hub.file_download")
    if download is not None and hasattr(download, "_ETAG_RETRY_TIMEOUT"):
        # the retry after a failed HEAD waits up to 60 s per attempt; keep it to the download timeout
        # (a private constant some huggingface_hub versions have: set through the module's namespace)
        value = os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT", "")
        vars(download)["_ETAG_RETRY_TIMEOUT"] = int(value) if value.isdigit() else 10


def _patch_loaded(value: bool) -> dict[tuple[Any, str], Any]:
    """Set the offline constants of already-imported hub libraries; return the old values."""
    old: dict[tuple[Any, str], Any] = {}
    targets = (
        ("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
        ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")),
    )
    for module_name, attrs in targets:
        module = sys.modules.get(module_name)
        for attr in attrs:
            if module is not None and hasattr(module, attr):
                old[(module, attr)] = getattr(module, attr)
                setattr(module, attr, value)
    return old


def endpoint() -> str:
    """The Hugging Face hub's address (HF_ENDPOINT, as huggingface_hub reads it)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _host(url: str) -> str:
    """'scheme://host:port' of an http(s) URL ('' for anything else: nothing to probe)."""
    parts = urlsplit(url or endpoint())
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def _fresh(host: str) -> str | None:
    """The remembered verdict on ``host``, if recent (call with _lock held)."""
    seen = _probes.get(host)
    return seen[1] if seen is not None and time.monotonic() - seen[0] < PROBE_MEMORY_S else None


def _start_probe(host: str) -> tuple[threading.Thread, list[str], float]:
    """Ask ``host`` for any HTTP answer in a daemon thread (a slow DNS lookup cannot hold the caller)."""
    wait = probe_timeout()
    verdict = [f"{host} did not answer within {wait:g} s"]

    def probe() -> None:
        import ssl
        import urllib.error
        import urllib.request

        request = urllib.request.Request(host + "/", method="HEAD", headers={"User-Agent": "tlzoo-probe"})
        try:
            with urllib.request.urlopen(request, timeout=wait):
                pass
            verdict[0] = ""
        except urllib.error.HTTPError:
            verdict[0] = ""  # an HTTP status is an answer
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLError):
                verdict[0] = ""  # the TLS handshake answered; the hub library checks certificates itself
            elif not isinstance(exc.reason, TimeoutError):
                verdict[0] = f"{host} is unreachable ({_short(exc.reason)})"
        except TimeoutError:
            pass
        except Exception as exc:  # a malformed proxy variable, a reset connection, ...
            verdict[0] = f"{host} is unreachable ({_short(exc)})"

    thread = threading.Thread(target=probe, name="tlzoo-hub-probe", daemon=True)
    thread.start()
    return thread, verdict, time.monotonic()


def probe_soon(url: str = "") -> None:
    """Start probing ``url``'s host now, so the verdict is ready when the hub call comes.

    For callers that know the hub will be needed before their slow imports (timm,
    transformers, torchvision); nothing happens offline."""
    host = "" if offline() else _host(url)
    if not host:
        return
    with _lock:
        if _fresh(host) is None and host not in _pending:
            _pending[host] = _start_probe(host)


def unreachable(url: str = "") -> str:
    """Why ``url``'s host cannot be used now ('' when it answered); probes it at most once a minute.

    Any HTTP answer, even an error status or a TLS certificate complaint, proves the host
    (or the proxy in front of it) answers; no answer within probe_timeout(), a DNS failure
    or a refused connection does not."""
    if offline():
        return OFFLINE_HINT
    host = _host(url)
    if not host:
        return ""
    with _lock:
        known = _fresh(host)
        if known is not None:
            return known
        pending = _pending.pop(host, None)
        thread, verdict, started = pending if pending is not None else _start_probe(host)
    thread.join(max(0.0, started + probe_timeout() + 1.0 - time.monotonic()))
    why = verdict[0]
    with _lock:
        _probes[host] = (time.monotonic(), why)
    return why


def _short(exc: object) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:100]


@contextmanager
def local_only() -> Iterator[None]:
    """Inside: huggingface_hub (and transformers, timm, datasets through it) use their caches only."""
    try:
        import huggingface_hub.constants  # noqa: F401  (so that its offline constant exists to be patched)
    except ImportError:
        pass
    old = _patch_loaded(True)
    try:
        yield
    finally:
        if not offline():
            for (module, attr), value in old.items():
                setattr(module, attr, value)


@contextmanager
def hub_access(url: str = "") -> Iterator[str]:
    """Wrap a hub call: yields why the hub cannot be used ('' = online).

    When it cannot (offline, or ``url``'s host -- the hub by default -- does not answer),
    the block runs with the hub libraries reading only their caches, so it returns at
    once with a cached file or fails at once; callers add the reason to their message."""
    configure_hub()
    why = unreachable(url)
    if why:
        with local_only():
            yield why
        return
    import socket

    # torch.hub's urllib download sets no timeout; a stalled transfer then fails instead of hanging
    before = socket.getdefaulttimeout()
    if before is None:
        value = os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT", "")
        socket.setdefaulttimeout(float(value) if value.isdigit() else 10.0)
    try:
        yield ""
    finally:
        if before is None:
            socket.setdefaulttimeout(None)
