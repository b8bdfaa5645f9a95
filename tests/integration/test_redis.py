"""Round trips against the real Redis server."""

from __future__ import annotations

import asyncio

import pytest

from stream.events import Event, EventType
from stream.lookups import recent_activity
from stream.settings import Settings
from stream.sinks import RedisActivitySink

pytestmark = pytest.mark.integration


def ev(n: int, user: str, kind: EventType = EventType.VIEW) -> Event:
    item = None if kind is EventType.FORGET else f"sku-{n}"
    return Event(event_id=f"e{n}", user_id=user, type=kind, ts_ms=1_700_000_000_000 + n, item_id=item)


def test_sink_writes_capped_lists_that_lookups_read_back(isolated: Settings) -> None:
    settings = isolated.model_copy(update={"recent_events_per_user": 3})

    async def scenario() -> tuple[list[str], list[str]]:
        sink = RedisActivitySink.from_settings(settings)
        await sink.write([ev(1, "a"), ev(2, "b"), ev(3, "a")])
        await sink.write([ev(4, "a"), ev(5, "a")])
        await sink.close()
        a = [e["event_id"] for e in await recent_activity(settings, "a")]
        b = [e["item_id"] for e in await recent_activity(settings, "b")]
        return a, b

    a, b = asyncio.run(scenario())
    assert a == ["e3", "e4", "e5"]
    assert b == ["sku-2"]


def test_forget_removes_the_users_keys_and_nothing_else(isolated: Settings) -> None:
    async def scenario() -> tuple[int, int]:
        sink = RedisActivitySink.from_settings(isolated)
        await sink.write([ev(1, "a"), ev(2, "b")])
        await sink.write([ev(3, "a", EventType.FORGET)])
        await sink.close()
        return len(await recent_activity(isolated, "a")), len(await recent_activity(isolated, "b"))

    assert asyncio.run(scenario()) == (0, 1)
