"""Round trips against the real Redis server."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from redis import Redis

from stream.core.events import Event, EventType
from stream.core.records import Recommendation, UserProfile
from stream.core.settings import Settings
from stream.redis.activity import RedisActivitySink
from stream.redis.reco_store import RECO_KIND, RecoStore
from stream.serving.lookups import recent_activity

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


def profile(user: str, newest: int) -> UserProfile:
    return UserProfile(
        user_id=user,
        items=(Recommendation("sku-1", 0.5, None),),
        vector=np.ones(4, dtype=np.float32),
        model_version="test",
        window_version=f"{newest:016d}e{newest}\x00",
        window_newest_ts_ms=newest,
        window_newest_event_id=f"e{newest}",
    )


def test_profile_writes_survive_a_redis_that_lost_its_script_cache(isolated: Settings) -> None:
    # A restarted Redis has no scripts: a write by EVALSHA alone would fail with NOSCRIPT.
    def newest_stored() -> int:
        client = Redis.from_url(isolated.redis_url.get_secret_value())
        raw = client.hget(isolated.redis_key(RECO_KIND, "a"), "json")
        client.close()
        return int(json.loads(raw or b"{}")["window_newest_ts_ms"])

    async def scenario() -> None:
        store = RecoStore.from_settings(isolated)  # one store, as in a worker that outlives a restart
        await store.write([profile("a", 1)], [], {}, computed_at_ms=1)
        flusher = Redis.from_url(isolated.redis_url.get_secret_value())
        flusher.script_flush()
        flusher.close()
        await store.write([profile("a", 2)], [], {}, computed_at_ms=2)
        await store.close()

    asyncio.run(scenario())
    assert newest_stored() == 2
