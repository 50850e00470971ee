"""A process's life around a run: where tlzoo keeps files, signals, run locks, OS errors.

torch-free on purpose: the CLI uses it on its error path (which must work even when
importing torch is what failed) and ``tl --help`` must stay fast.

* ``Interrupted`` is what Ctrl-C and SIGTERM raise while ``signals_raise_interrupted``
  is active, so cleanup runs for both and the CLI exits 130 or 143.  Being raised by
  our handler is also how plugin loading tells a real Ctrl-C from a plugin that raises
  ``KeyboardInterrupt`` at import.
* ``RunLock`` keeps two runs from writing the same ``--out``: ``fcntl.flock`` on
  ``<out>.lock``, released by the kernel when the process dies, even by SIGKILL.
* ``os_error_message`` turns an ``OSError`` the user can fix (full disk, permissions,
  a read-only file system, a file in the way) into one line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError


def tlzoo_home() -> Path:
    """``$TLZOO_HOME``, else ``$XDG_CACHE_HOME/tlzoo``, else ``~/.cache/tlzoo``."""
    if os.environ.get("TLZOO_HOME"):
        return Path(os.environ["TLZOO_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tlzoo"


# --------------------------------------------------------------------------- signals
class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM, delivered by our handler: a KeyboardInterrupt, so cleanup runs."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        """The shell convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextmanager
def signals_raise_interrupted() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM raise :class:`Interrupted`; the old handlers come back after.

    Only the main thread can set handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, _raise_interrupted)
        except (ValueError, OSError):  # not settable here (e.g. an embedded interpreter)
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            try:
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (``os.kill(pid, 0)`` sends nothing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OverflowError:
        return False
    return True


# --------------------------------------------------------------------------- locks
class RunLock:
    """An exclusive, non-blocking lock on ``<out>.lock`` for one run's output folder.

    The kernel drops a flock when its process dies, so a killed run never blocks the
    next one; the file itself is removed on ``release``.  After locking, the inode is
    compared with the path's, so a holder that has just unlinked the file cannot leave
    two processes each holding a lock on a different file.
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        if self.out.name in ("", ".", ".."):  # '/', '.', '..': a folder that cannot become the run's
            raise TlzooError(
                f"--out '{out}' names no new folder (the root, the current or the parent folder); "
                "name the run's folder, e.g. --out runs/my-run."
            )
        self.path = self.out.with_name(self.out.name + ".lock")
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f" (pid {holder})" if holder else ""
                raise TlzooError(
                    f"Another tl process{who} is writing '{self.out}' right now; wait for it to finish "
                    "or choose another --out."
                ) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous holder removed the file meanwhile: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: see the inode check above
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- OS errors
_PERMISSION = {errno.EACCES, errno.EPERM}


def os_error_message(exc: OSError, where: str | os.PathLike[str] | None = None) -> str | None:
    """One line naming the problem and the fix for an OSError the user can fix; None for others.

    ``where``: the file or folder being written when the error carries no file name
    (a failed ``write()`` only knows its descriptor).
    """
    target = exc.filename if exc.filename not in (None, "") else where
    what = f" '{target}'" if target else ""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"No space left on device writing{what or ' the output'}; free space or choose another --out/TLZOO_HOME."
    if code == errno.EROFS:
        return f"Cannot write{what}: the file system is read-only; choose another --out/TLZOO_HOME."
    if code in _PERMISSION:
        return (
            f"Permission denied for{what or ' a file'}; check its permissions or choose another "
            "path (--out, TLZOO_HOME)."
        )
    if code == errno.ENOTDIR:
        return f"A part of the path{what} is a file, not a folder; choose another path."
    if code == errno.EISDIR:
        return f"{(what or ' The path').strip()} is a folder where a file was expected; choose another path."
    if code == errno.EEXIST:
        return f"{(what or ' The path').strip()} already exists and is in the way; remove it or choose another path."
    if code == errno.ENAMETOOLONG:
        return f"The path{what} is too long; choose a shorter one."
    if code == errno.EMFILE:
        return "Too many open files; raise the limit (ulimit -n) or lower train.num_workers."
    return None
