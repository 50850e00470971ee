"""User-facing errors: one line that names the problem and the fix.

Anything raised as a :class:`TlzooError` is bad input or a missing resource, not a bug.
The CLI prints it as ``Error: <message>`` and exits with code 2; the Python API lets
it propagate so notebooks see the same message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TlzooError(Exception):
    """A problem the user can fix; the message says how."""

    exit_code = 2

    def __init__(self, message: str = "", *args: object) -> None:
        # a DataLoader worker re-raises an error as TlzooError("Caught ... Original Traceback ...
        # module.TlzooError: <message>"): keep the one-line message, not the worker's traceback
        if isinstance(message, str) and "\nOriginal Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(message, *args)


def suggest(name: str, known: Iterable[str], n: int = 3) -> str:
    """Return ' Did you mean 'x' or 'y'?' for the closest known names, or ''."""
    known = list(known)
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    if not close:
        # substring matches help with prefixes such as 'efficient' -> 'efficientnet'
        close = [k for k in lowered if name.lower() in k][:n]
    if not close:
        return ""
    quoted = " or ".join(f"'{lowered[c]}'" for c in close)
    return f" Did you mean {quoted}?"


def unknown(kind: str, name: str, known: Iterable[str], see: str = "") -> TlzooError:
    """The standard 'Unknown <kind> ...' error with did-you-mean and a pointer."""
    known = sorted(known)
    hint = suggest(name, known)
    if not hint and known and len(known) <= 12:
        hint = " Known: " + ", ".join(known) + "."
    tail = f" See `{see}`." if see else ""
    return TlzooError(f"Unknown {kind} '{name}'.{hint}{tail}")
