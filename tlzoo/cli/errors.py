"""One line per failure: how every ``tl`` command turns an exception into a message and an exit code.

Bad input exits 2, an unexpected error 1 (its traceback saved to a log), Ctrl-C 130, SIGTERM 143.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from tlzoo.api.errors import TlzooError
from tlzoo.infra.safe_text import printable

_CLICK_FLOW = (click.ClickException, click.exceptions.Exit, click.exceptions.Abort)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every exception -> one line on stderr, never a traceback (``--debug`` prints it).

    Bad input (TlzooError, a full disk, a permission problem) exits 2; an unexpected error
    exits 1 and names the step and plugin, with its traceback in a log file; Ctrl-C exits
    130 and SIGTERM 143.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _CLICK_FLOW:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            fail(exc)

    return wrapper


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get("tlzoo.debug"):
        return True
    return os.environ.get("TLZOO_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta["tlzoo.debug"] = True


def _set_offline(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """--offline: no socket at all; set before any hub library is imported (network imports nothing heavy)."""
    from tlzoo.infra import network

    if value:
        network.set_offline()
    else:
        network.configure_hub()  # short hub timeouts; TLZOO_OFFLINE=1 mirrored into the hub's switches


# on the group (`tl --offline run ...`) and on the commands that may reach the network
offline_option = click.option(
    "--offline",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_offline,
    help="Open no network connection: local files and caches only (or TLZOO_OFFLINE=1).",
)


def _flat(text: str, limit: int = 0) -> str:
    """One line: newlines folded, optionally shortened."""
    line = " ".join(str(text).split())
    return line if not limit or len(line) <= limit else line[: limit - 3] + "..."


def _command_name() -> str:
    ctx = click.get_current_context(silent=True)
    parts = ctx.command_path.split()[1:] if ctx is not None else []
    return "-".join(parts) or "tl"


def fail(exc: BaseException, command: str | None = None) -> NoReturn:
    """Print the one line for ``exc`` (and, with --debug, its traceback) and exit with its code.

    ``command``: the sub-command's name when the current click context no longer knows it.
    """
    from tlzoo.engine import distributed  # torch-free

    if isinstance(exc, BrokenPipeError):  # `tl list | head`: the reader has gone; nothing is wrong
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes stdout at exit; keep it quiet
        except OSError:
            pass
        sys.exit(0)
    debug = _debug()
    if distributed.is_relayed(exc) and not debug:  # under torchrun: rank 0 has printed this one
        sys.exit(exc.exit_code if isinstance(exc, TlzooError) else 1)
    if debug:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    code, line = _one_line(exc, debug, command or _command_name())
    if not distributed.is_main():
        line = f"[rank {distributed.rank()}] {line}"
    click.echo(printable(line), err=True)  # a message may quote a label or a file's text
    sys.exit(code)


def _one_line(exc: BaseException, debug: bool, command: str) -> tuple[int, str]:
    resume = getattr(exc, "tlzoo_resume", None)
    kept = f" The finished epochs are kept: continue with `tl run --resume {resume}`." if resume else ""
    if isinstance(exc, KeyboardInterrupt):
        code = int(getattr(exc, "exit_code", 130))
        return code, f"Interrupted ({'SIGTERM' if code == 143 else 'Ctrl-C'}).{kept}"
    if isinstance(exc, TlzooError):
        return exc.exit_code, f"Error: {_flat(str(exc))}{kept}"
    if isinstance(exc, OSError):
        from tlzoo.infra.lifecycle import os_error_message

        message = os_error_message(exc)
        if message:
            return 2, f"Error: {message}{kept}"
    step, plugin = getattr(exc, "tlzoo_step", None), getattr(exc, "tlzoo_plugin", None)
    where = f"in step '{step}'" if step else f"in `tl {command.replace('-', ' ')}`"
    where += f" (plugin '{plugin}')" if plugin else ""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return 2, (
            f"Error: out of memory {where}; use a smaller --batch-size, --max-length/--image-size or "
            f"--limit, or another --device.{kept}"
        )
    detail = _flat(str(exc), 240)
    head = f"Error: unexpected {type(exc).__name__} {where}" + (f": {detail}" if detail else "") + "."
    if debug:
        return 1, head + kept
    try:
        log = _write_log(exc, step, plugin, command)
        tail = f" Details in {log}; rerun with --debug to print them."
    except Exception as log_exc:  # a full or read-only TLZOO_HOME: still one line
        tail = f" (could not save the details: {_flat(str(log_exc), 80)}); rerun with --debug to print them."
    return 1, head + kept + tail


def _write_log(exc: BaseException, step: str | None, plugin: str | None, command: str) -> Path:
    """The full traceback in ``$TLZOO_HOME/logs/<time>-<cmd>.log``, for a bug report."""
    import platform
    import traceback

    from tlzoo.infra.lifecycle import tlzoo_home

    folder = tlzoo_home() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{command}"
    path = folder / f"{stem}.log"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.log"
    try:
        from importlib import metadata

        version = metadata.version("tlzoo")
    except Exception:
        version = "?"
    head = [
        f"command: tl {' '.join(sys.argv[1:])}",
        f"tlzoo {version}, Python {platform.python_version()}",
        f"step: {step or '-'}, plugin: {plugin or '-'}",
        "",
    ]
    body = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    path.write_text("\n".join(head) + body, encoding="utf-8")
    return path
