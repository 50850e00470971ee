"""``TLZOO_PROBE_TIMEOUT``: how long tlzoo waits for a hub to answer before treating it as offline."""

from __future__ import annotations

import pytest

from tlzoo.infra import network


@pytest.mark.parametrize(
    ("raw", "seconds"), [("", 5.0), ("2.5", 2.5), ("30", 30.0), ("0", 5.0), ("-1", 5.0), ("x", 5.0)]
)
def test_the_probe_waits_the_set_seconds_or_the_default(
    raw: str, seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLZOO_PROBE_TIMEOUT", raw)
    assert network.probe_timeout() == seconds
