"""Bounded-state settings: a forget tombstone must outlive the events topic's retention."""

from __future__ import annotations

import pytest

from stream.core.errors import ConfigError
from stream.core.settings import load_settings

DAY_S = 86_400


def test_a_tombstone_shorter_than_the_events_retention_is_refused_naming_both_settings() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, forget_tombstone_ttl_s=DAY_S, events_retention_ms=7 * DAY_S * 1000)
    assert "PROFILESTREAM_FORGET_TOMBSTONE_TTL_S" in str(info.value)
    assert "PROFILESTREAM_EVENTS_RETENTION_MS" in str(info.value)


def test_expiring_tombstones_with_events_kept_forever_is_refused() -> None:
    with pytest.raises(ConfigError, match="PROFILESTREAM_FORGET_TOMBSTONE_TTL_S=0"):
        load_settings({}, events_retention_ms=-1)


def test_tombstones_that_never_expire_or_outlive_the_events_are_accepted() -> None:
    load_settings({}, forget_tombstone_ttl_s=0, events_retention_ms=-1)
    settings = load_settings({})
    assert settings.forget_tombstone_ttl_s * 1000 > settings.events_retention_ms
