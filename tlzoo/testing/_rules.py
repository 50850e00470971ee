"""What every check of the kit shares: failures that name their rule, skips, the default zoo.

A check is a function decorated with :func:`rule`.  Whatever goes wrong inside it, the
caller gets an ``AssertionError`` whose message starts with ``[check_name]``: a failed
assertion keeps its text (and traceback) behind the prefix, and any other exception the
plugin raised (an ``IndexError`` deep in a forward pass, a ``RuntimeError`` from a shape
mismatch) becomes an ``AssertionError`` that says which rule was being checked, chained
to the original.  A check that cannot run for a reason outside the plugin's control
raises :class:`unittest.SkipTest` through :func:`skip`, which pytest reports as a skip.
"""

from __future__ import annotations

import functools
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def rule(fn: F) -> F:
    """Make ``fn`` a check: every failure is an AssertionError starting with ``[fn.__name__]``."""
    prefix = f"[{fn.__name__}]"

    @functools.wraps(fn)
    def check(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except unittest.SkipTest:
            raise
        except AssertionError as exc:
            message = str(exc)
            if not message.startswith("["):  # a nested check already named its rule
                exc.args = (f"{prefix} {message or 'assertion failed'}",)
            raise
        except Exception as exc:  # the plugin's own error, reported against the rule that was running
            lines = str(exc).strip().splitlines()
            detail = f": {lines[0]}" if lines else ""
            raise AssertionError(f"{prefix} raised {type(exc).__name__}{detail}") from exc

    check.__tlzoo_rule__ = True  # type: ignore[attr-defined]
    return check  # type: ignore[return-value]


class Check:
    """One check bound to the way a case supplies its arguments: ``check(case)`` runs it.

    ``call(case, rule)`` calls ``rule`` with the arguments ``case`` holds.  ``check.__name__`` is
    the rule's name (``check_forward_shape``), which
    :func:`~tlzoo.testing.parametrize_with_checks` puts in the test id.
    """

    __name__: str

    def __init__(self, rule: Callable[..., Any], call: Callable[[Any, Callable[..., Any]], Any]) -> None:
        functools.update_wrapper(self, rule)
        self.rule = rule
        self._call = call

    def __call__(self, case: Any) -> Any:
        return self._call(case, self.rule)

    def __repr__(self) -> str:
        return self.__name__


def skip(check: str, reason: str) -> None:
    """Skip ``check`` (raises :class:`unittest.SkipTest`, which pytest and unittest report)."""
    raise unittest.SkipTest(f"[{check}] skipped: {reason}")


@functools.lru_cache(maxsize=1)
def default_zoo() -> Any:
    """The :class:`~tlzoo.engine.zoo.Zoo` of every installed plugin, built once per process."""
    from tlzoo.engine.zoo import Zoo

    return Zoo()


def defaults_of(obj: Any) -> dict[str, Any]:
    """``obj.defaults`` as a dict, whether it is a method, a classmethod or a plain dict attribute."""
    d = getattr(obj, "defaults", None)
    if callable(d):
        d = d()
    return dict(d) if d is not None else {}


PICKLE_HINT = "save arrays with safetensors (or .npy with allow_pickle=False) and settings as JSON"


def pickle_kind(path: Path) -> str | None:
    """What makes ``path`` a pickle or a zip archive (a torch.save file is a zip of pickles), or None.

    Pickle protocols 2-5 start with 0x80 and the protocol number; a safetensors file starts
    with an 8-byte header length, whose first byte may be 0x80, followed by ``{``.
    """
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        if len(head) == 9 and head[8:9] == b"{":  # safetensors: header length, then JSON
            return None
        return f"a Python pickle (protocol {head[1]})"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "a zip archive (torch.save writes pickles inside a zip)"
    return None
