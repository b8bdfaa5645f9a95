"""Round trips against the real Redis server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import numpy as np
import pytest
from pydantic import SecretStr
from redis import Redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import OutOfMemoryError, ResponseError

from stream.core.events import Event, EventType
from stream.core.records import Recommendation, UserProfile
from stream.core.settings import Settings, load_settings
from stream.redis import apply_once
from stream.redis.activity import RECENT_KIND, RedisActivitySink
from stream.redis.apply_once import RedisOp, execute_until_done
from stream.redis.client import redis_async, redis_sync
from stream.redis.reco_store import EMB_KIND, FORGOTTEN_KIND, RECO_KIND, RecoStore, popular_key
from stream.serving.lookups import recent_activity
from stream.worker.quarantine import is_transient
from tests.integration.conftest import Services, delete_keys
from tests.support.cutting_proxy import CuttingProxy, Mode, cutting_proxy

pytestmark = pytest.mark.integration


def ev(n: int, user: str, kind: EventType = EventType.VIEW) -> Event:
    item = None if kind is EventType.FORGET else f"sku-{n}"
    return Event(event_id=f"e{n}", user_id=user, type=kind, ts_ms=1_700_000_000_000 + n, item_id=item)


def test_sink_writes_capped_lists_that_lookups_read_back(isolated_both: Settings) -> None:
    settings = isolated_both.model_copy(update={"recent_events_per_user": 3})

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


def test_forget_removes_the_users_keys_and_nothing_else(isolated_both: Settings) -> None:
    async def scenario() -> tuple[int, int]:
        sink = RedisActivitySink.from_settings(isolated_both)
        await sink.write([ev(1, "a"), ev(2, "b")])
        await sink.write([ev(3, "a", EventType.FORGET)])
        await sink.close()
        return len(await recent_activity(isolated_both, "a")), len(await recent_activity(isolated_both, "b"))

    assert asyncio.run(scenario()) == (0, 1)


def profile(user: str, newest: int, received: int | None = None) -> UserProfile:
    return UserProfile(
        user_id=user,
        items=(Recommendation("sku-1", 0.5, None),),
        vector=np.ones(4, dtype=np.float32),
        model_version="test",
        window_version=f"{newest:016d}e{newest}\x00",
        window_newest_ts_ms=newest,
        window_newest_event_id=f"e{newest}",
        window_newest_received_ms=received,
    )


def test_profile_writes_survive_a_redis_that_lost_its_script_cache(isolated_both: Settings) -> None:
    # A restarted Redis has no scripts: a write by EVALSHA alone would fail with NOSCRIPT.
    def newest_stored() -> int:
        client = redis_sync(isolated_both)
        raw = client.hget(isolated_both.redis_key(RECO_KIND, "a"), "json")
        client.close()
        return int(json.loads(raw or b"{}")["window_newest_ts_ms"])

    async def scenario() -> None:
        store = RecoStore.from_settings(isolated_both)  # one store, as in a worker that outlives a restart
        await store.write([profile("a", 1)], [], {}, computed_at_ms=1)
        flusher = redis_sync(isolated_both)
        flusher.script_flush()
        flusher.close()
        await store.write([profile("a", 2)], [], {}, computed_at_ms=2)
        await store.close()

    asyncio.run(scenario())
    assert newest_stored() == 2


# --- the newer-only write refuses, on a real Redis ------------------------------------------------


def own_prefix(services: Services, tmp_path: Path) -> Settings:
    """Settings with their own key prefix on `services`' Redis (no model needed)."""
    prefix = f"t:redis-{uuid.uuid4().hex[:8]}"
    return load_settings(
        {},
        redis_url=services.redis_url,
        redis_cluster=services.redis_cluster,
        redis_key_prefix=prefix,
        data_dir=tmp_path,
    )


@pytest.fixture(params=["single", "cluster"])
def redis_only(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Own-prefix settings, once on the single test Redis, once on the Redis Cluster."""
    services = request.getfixturevalue("services" if request.param == "single" else "cluster_services")
    settings = own_prefix(services, tmp_path)
    yield settings
    delete_keys(settings)


@pytest.fixture
def single_redis_only(services: Services, tmp_path: Path) -> Iterator[Settings]:
    """Own-prefix settings on the single test Redis (a proxy cannot stand in for a cluster's nodes)."""
    settings = own_prefix(services, tmp_path)
    yield settings
    delete_keys(settings)


def stored(settings: Settings, user: str) -> dict[str, Any] | None:
    client = redis_sync(settings)
    try:
        raw = client.hget(settings.redis_key(RECO_KIND, user), "json")
    finally:
        client.close()
    return None if raw is None else cast(dict[str, Any], json.loads(raw))


def write_profiles(settings: Settings, *writes: tuple[UserProfile, int]) -> None:
    async def scenario() -> None:
        store = RecoStore.from_settings(settings)
        try:
            for p, computed_at_ms in writes:
                await store.write([p], [], {}, computed_at_ms=computed_at_ms)
        finally:
            await store.close()

    asyncio.run(scenario())


def test_the_newer_only_write_refuses_an_older_version(redis_only: Settings) -> None:
    write_profiles(redis_only, (profile("a", 5), 100), (profile("a", 3), 200))
    got = stored(redis_only, "a")
    assert got is not None
    assert (got["window_newest_ts_ms"], got["computed_at_ms"]) == (5, 100)


def test_the_newer_only_write_refuses_an_equal_version(redis_only: Settings) -> None:
    # The same window computed twice (a replay after a crash): the first write stays.
    write_profiles(redis_only, (profile("a", 5), 100), (profile("a", 5), 200))
    got = stored(redis_only, "a")
    assert got is not None
    assert got["computed_at_ms"] == 100


def test_the_newer_only_write_accepts_a_newer_version(redis_only: Settings) -> None:
    write_profiles(redis_only, (profile("a", 5), 100), (profile("a", 6), 200))
    got = stored(redis_only, "a")
    assert got is not None
    assert (got["window_newest_ts_ms"], got["computed_at_ms"]) == (6, 200)


def test_the_newer_only_write_refuses_a_window_at_or_before_a_forget(redis_only: Settings) -> None:
    async def scenario() -> None:
        store = RecoStore.from_settings(redis_only)
        try:
            await store.write([], [("a", 10)], {}, computed_at_ms=1)
            await store.write([profile("a", 9)], [], {}, computed_at_ms=2)
            await store.write([profile("a", 10)], [], {}, computed_at_ms=3)
        finally:
            await store.close()

    asyncio.run(scenario())
    assert stored(redis_only, "a") is None
    client = redis_sync(redis_only)
    try:
        assert client.get(redis_only.redis_key(EMB_KIND, "a")) is None
    finally:
        client.close()
    # A window newer than the forget lands (the user came back).
    write_profiles(redis_only, (profile("a", 11), 4))
    got = stored(redis_only, "a")
    assert got is not None and got["window_newest_ts_ms"] == 11


def test_the_newer_only_write_cuts_a_forget_by_receive_order_like_the_window(redis_only: Settings) -> None:
    # The window keeps an event received after a forget even when a slow client clock stamped it
    # earlier than the forget; its profile must land too. A replay of events received before the
    # forget stays refused whatever their event times say.
    async def scenario() -> None:
        store = RecoStore.from_settings(redis_only)
        try:
            await store.write([], [("slow", 1_000)], {}, computed_at_ms=1)
            await store.write([profile("slow", 900, received=1_001)], [], {}, computed_at_ms=2)
            await store.write([], [("replayed", 1_000)], {}, computed_at_ms=3)
            await store.write([profile("replayed", 5_000, received=999)], [], {}, computed_at_ms=4)
        finally:
            await store.close()

    asyncio.run(scenario())
    got = stored(redis_only, "slow")
    assert got is not None and got["window_newest_received_ms"] == 1_001
    assert stored(redis_only, "replayed") is None


def test_recent_lists_and_forget_tombstones_expire(redis_only: Settings) -> None:
    settings = redis_only.model_copy(update={"recent_ttl_s": 600, "forget_tombstone_ttl_s": 900_000})

    async def scenario() -> None:
        sink = RedisActivitySink.from_settings(settings)
        store = RecoStore.from_settings(settings)
        try:
            await sink.write([ev(1, "a")])
            await store.write([], [("b", 10)], {}, computed_at_ms=1)
        finally:
            await sink.close()
            await store.close()

    asyncio.run(scenario())
    client = redis_sync(settings)
    try:
        assert 0 < client.ttl(settings.redis_key(RECENT_KIND, "a")) <= 600
        assert 600 < client.ttl(settings.redis_key(FORGOTTEN_KIND, "b")) <= 900_000
    finally:
        client.close()


def test_popular_is_trimmed_to_its_highest_items(redis_only: Settings) -> None:
    settings = redis_only.model_copy(update={"popular_max_items": 3})

    async def scenario() -> None:
        store = RecoStore.from_settings(settings)
        try:
            await store.write([], [], {f"sku-{n}": float(n) for n in range(1, 6)}, computed_at_ms=1)
            await store.write([], [], {"sku-1": 10.0}, computed_at_ms=2)
        finally:
            await store.close()

    asyncio.run(scenario())
    client = redis_sync(settings)
    try:
        key = popular_key(settings)
        members = cast(list[bytes], client.zrevrange(key, 0, -1))
        assert [m.decode() for m in members] == ["sku-1", "sku-5", "sku-4"]
    finally:
        client.close()


# --- no double application after a connection cut mid-pipeline -----------------------------------


def through_proxy(settings: Settings, proxy: CuttingProxy) -> Settings:
    return settings.model_copy(update={"redis_url": SecretStr(f"redis://127.0.0.1:{proxy.port}/0")})


def redis_port(settings: Settings) -> int:
    port = urlsplit(settings.redis_url.get_secret_value()).port
    assert port is not None
    return port


@pytest.mark.parametrize("mode", ["mid_request", "after_apply", "mid_pipeline"])
def test_a_connection_cut_mid_pipeline_applies_a_batch_exactly_once(
    single_redis_only: Settings, mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two units per script call, so a batch of a few users is several calls in one pipeline (as a
    # batch of more than MAX_UNITS_PER_CALL users is) and a cut can fall between and inside them.
    monkeypatch.setattr(apply_once, "MAX_UNITS_PER_CALL", 2)
    events = [ev(n, f"u{n % 3}") for n in range(1, 31)]

    async def scenario() -> int:
        async with cutting_proxy("127.0.0.1", redis_port(single_redis_only), mode) as proxy:
            settings = through_proxy(single_redis_only, proxy)
            sink = RedisActivitySink.from_settings(settings)
            store = RecoStore.from_settings(settings)
            try:
                await sink.write(events)
                proxy.armed = True
                profiles = [profile(f"u{u}", 5) for u in range(3)]
                await store.write(profiles, [("gone", 1)], {"sku-1": 1.5, "sku-2": 0.5}, computed_at_ms=1)
            finally:
                await sink.close()
                await store.close()
            return proxy.cuts

    cuts = asyncio.run(scenario())
    client = redis_sync(single_redis_only)
    try:
        lengths = [client.llen(single_redis_only.redis_key(RECENT_KIND, f"u{u}")) for u in range(3)]
        popular = popular_key(single_redis_only)
        scores = (client.zscore(popular, "sku-1"), client.zscore(popular, "sku-2"))
    finally:
        client.close()
    assert lengths == [10, 10, 10]  # RPUSH applied once per event
    assert scores == (1.5, 0.5)  # ZINCRBY applied once
    assert all(stored(single_redis_only, f"u{u}") is not None for u in range(3))  # the cut parts were resent
    assert cuts == 2  # each write was cut once: the scenario really happened


# --- apply once, per hash slot, on a single Redis and on the cluster ----------------------------


def test_a_batch_resent_under_its_id_applies_once_per_user(redis_only: Settings) -> None:
    # What a retry after a lost reply does: the same units under the same batch id. Each unit's
    # marker, in its own slot, stops the second copy; a new batch id applies again.
    key = redis_only.redis_key
    ops = [RedisOp("rpush", (key(RECENT_KIND, user), "x")) for user in ("a", "b", "}c{", "popular")] + [
        RedisOp("zincrby", (popular_key(redis_only), 1.0, "sku-1"))
    ]

    async def scenario() -> None:
        client = redis_async(redis_only)
        try:
            prefix = redis_only.redis_key_prefix
            for batch_id in ("b1", "b1", "b2"):
                await execute_until_done(
                    client, ops, what="a test batch", key_prefix=prefix, writer="test", batch_id=batch_id
                )
        finally:
            await client.aclose()

    asyncio.run(scenario())
    client = redis_sync(redis_only)
    try:
        lengths = [client.llen(key(RECENT_KIND, user)) for user in ("a", "b", "}c{", "popular")]
        assert lengths == [2, 2, 2, 2]
        assert client.zscore(popular_key(redis_only), "sku-1") == 2.0
    finally:
        client.close()


def test_a_retry_applies_once_even_after_another_writer_wrote_the_same_slots(redis_only: Settings) -> None:
    # The worker writes a user's recent list and profile from two concurrent pipelines, and every
    # worker writes `popular`: between a cut try and its retry, another writer's batch lands on
    # the same tags. Its marker must not hide ours, or the retry would apply a second time.
    key = redis_only.redis_key
    mine = [
        RedisOp("rpush", (key(RECENT_KIND, "a"), "x")),
        RedisOp("zincrby", (popular_key(redis_only), 1.0, "s")),
    ]
    theirs = [
        RedisOp("rpush", (key(RECENT_KIND, "a"), "y")),
        RedisOp("zincrby", (popular_key(redis_only), 1.0, "t")),
    ]

    async def scenario() -> None:
        client = redis_async(redis_only)
        try:
            prefix = redis_only.redis_key_prefix
            await execute_until_done(
                client, mine, what="mine", key_prefix=prefix, writer="recent", batch_id="m1"
            )
            await execute_until_done(
                client, theirs, what="theirs", key_prefix=prefix, writer="reco", batch_id="t1"
            )
            # The retry of our first try, whose reply was lost:
            await execute_until_done(
                client, mine, what="mine", key_prefix=prefix, writer="recent", batch_id="m1"
            )
        finally:
            await client.aclose()

    asyncio.run(scenario())
    client = redis_sync(redis_only)
    try:
        assert client.lrange(key(RECENT_KIND, "a"), 0, -1) == [b"x", b"y"]
        assert client.zscore(popular_key(redis_only), "s") == 1.0
    finally:
        client.close()


def test_every_key_of_a_user_lies_in_one_slot(redis_only: Settings) -> None:
    # Users whose ids hold braces too: the hash tag is still the whole (escaped) id.
    users = ["u1", "}x", "a{b}c", "{}", "%7D", "popular"]
    events = [ev(n, user) for n, user in enumerate(users)] + [ev(99, "}x", EventType.FORGET)]

    async def scenario() -> None:
        sink, store = RedisActivitySink.from_settings(redis_only), RecoStore.from_settings(redis_only)
        try:
            await sink.write(events)
            await store.write([profile(u, 5) for u in users], [("}x", 1)], {"sku-1": 1.0}, computed_at_ms=1)
        finally:
            await sink.close()
            await store.close()

    asyncio.run(scenario())
    client = redis_sync(redis_only)
    try:
        kinds = (RECO_KIND, EMB_KIND, FORGOTTEN_KIND, RECENT_KIND)
        for user in users:
            keys = [redis_only.redis_key(kind, user) for kind in kinds]
            assert sum(int(client.exists(k)) for k in keys) >= 3, user
            # Redis's own hash; a cluster node answers CLUSTER KEYSLOT too.
            slots = {key_slot(k.encode()) for k in keys}
            if isinstance(client, RedisCluster):
                slots |= {client.cluster_keyslot(k) for k in keys}
            assert len(slots) == 1, (user, keys)
    finally:
        client.close()


def test_a_cluster_refuses_a_script_over_two_users_slots(cluster_services: Services) -> None:
    # Why one unit per user: the v1 write (one transaction over a whole batch) fails like this.
    settings = load_settings({}, redis_key_prefix="t:crossslot")
    keys = [settings.redis_key(RECO_KIND, user) for user in ("a", "b")]
    node = Redis.from_url(cluster_services.redis_url)  # a plain client: the server itself refuses
    try:
        with pytest.raises(ResponseError, match="hash to the same slot"):  # CROSSSLOT
            node.eval("return 1", 2, *keys)
    finally:
        node.close()


def apply_ops(settings: Settings, ops: list[RedisOp]) -> None:
    """`execute_until_done` of `ops` under a fresh batch id, with a client of its own."""

    async def scenario() -> None:
        client = redis_async(settings)
        try:
            await execute_until_done(
                client, ops, what="a test batch", key_prefix=settings.redis_key_prefix, writer="test"
            )
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_single_address_that_refuses_cross_slot_calls_gets_its_units_per_slot(
    cluster_services: Services, tmp_path: Path
) -> None:
    # A sharded Redis behind one address (a proxy) looks like a single Redis to the client, which
    # then packs many users into one script call. A cluster node reached by a plain client refuses
    # such a call the same way (CROSSSLOT): the write must fall back to one call per slot.
    settings = own_prefix(cluster_services, tmp_path).model_copy(update={"redis_cluster": False})
    node = Redis.from_url(cluster_services.redis_url)
    users: list[str] = []
    try:
        port = urlsplit(cluster_services.redis_url).port
        owned = [
            (int(low), int(high))
            for low, high, primary, *_ in cast(list[Any], node.execute_command("CLUSTER", "SLOTS"))  # type: ignore[no-untyped-call]
            if int(primary[1]) == port
        ]
        users = [
            user
            for user in (f"u{n}" for n in range(2000))
            if any(low <= key_slot(user.encode()) <= high for low, high in owned)
        ][:3]
        assert len(users) == 3 and len({key_slot(u.encode()) for u in users}) == 3
        apply_ops(
            settings, [RedisOp("rpush", (settings.redis_key(RECENT_KIND, user), "x")) for user in users]
        )
        assert [node.llen(settings.redis_key(RECENT_KIND, user)) for user in users] == [1, 1, 1]
    finally:
        for user in users:
            node.delete(settings.redis_key(RECENT_KIND, user))
        node.close()


def test_a_full_redis_refuses_the_batch_as_a_peer_failure_not_the_records(
    single_redis_only: Settings,
) -> None:
    # maxmemory below what the server already uses, no eviction: every write is refused with OOM.
    # That is the server's state, not the batch's records: the worker must exit and read the batch
    # again later, not quarantine its records one by one into the dead-letter topic.
    admin = redis_sync(single_redis_only)
    policy = cast(dict[str, str], admin.config_get("maxmemory*"))
    try:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
        with pytest.raises(OutOfMemoryError) as refused:
            apply_ops(
                single_redis_only, [RedisOp("rpush", (single_redis_only.redis_key(RECENT_KIND, "a"), "x"))]
            )
    finally:
        admin.config_set("maxmemory", policy["maxmemory"])
        admin.config_set("maxmemory-policy", policy["maxmemory-policy"])
        admin.close()
    assert is_transient(refused.value)
