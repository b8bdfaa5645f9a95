"""A warning each request could repeat is logged at most once per interval, counting the rest."""

from __future__ import annotations

import logging

import pytest

from stream.core.logs import ThrottledWarning


def test_a_repeated_warning_is_logged_once_per_interval_with_the_held_back_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    warning = ThrottledWarning(logging.getLogger("t"), interval_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        for second in range(25):  # 10 requests a second for 25 s
            for _ in range(10):
                now[0] = second + 0.01
                warning.warning("unreadable entry %s", "k1")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "unreadable entry k1",
        "unreadable entry k1 (and 99 more like it since the last one, 10 s ago, not logged)",
        "unreadable entry k1 (and 99 more like it since the last one, 10 s ago, not logged)",
    ]
