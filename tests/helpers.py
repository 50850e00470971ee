"""Assertions the tiers share (``from helpers import one_line_error``: tests/ is on sys.path through conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def one_line_error(
    res: Any, *fragments: str, code: int = 2, out: Path | None = None, prefix: str | None = "Error: "
) -> str:
    """What a user must see when a command refuses: exit ``code``, exactly one non-empty stderr line
    (starting with ``prefix`` and containing every fragment), no traceback, and nothing of ``out`` left."""
    assert res.exit_code == code, res
    assert getattr(res, "exception", None) is None, res
    assert "Traceback" not in res.output, res
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res
    if prefix is not None:
        assert lines[0].startswith(prefix), res
    for fragment in fragments:
        assert fragment in lines[0], res
    if out is not None:
        assert not out.exists(), f"{out} was left behind"
        assert not out.with_name(out.name + ".incomplete").exists(), f"{out}.incomplete was left behind"
    return lines[0]


def fused_run_args(items: Path, bert: Path, out: Path, *more: Any) -> list[Any]:
    """``tl run`` of a fused run on ``small_items``: the title through BERT at ``bert``, price as tabular."""
    return [
        "run", "--plugin", "title=bert", "--weights", f"title={bert}", "--tabular-columns", "price",
        "--data", items, "--head", "logreg", "--device", "cpu", "--out", out, *more,
    ]  # fmt: skip
