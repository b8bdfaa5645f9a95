"""The recent-activity list holds an event id once, however often and in whatever form it is
written (a replay, a redelivery after a worker restart, a collector retry with a new received_ms),
keeps the newest write's content, and stays bounded: the write plan run against a model of Redis
lists, and through the real apply-once script on a private redis-server."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis.asyncio

from stream.core.events import Event, EventType
from stream.core.settings import Settings, load_settings
from stream.redis.activity import RedisActivitySink, RedisOp, activity_entry, plan_activity_writes

SETTINGS = load_settings({}, recent_events_per_user=4, redis_key_prefix="t", recent_ttl_s=0)
KEY = "t:{u1}:recent"


def ev(
    n: int,
    kind: EventType = EventType.VIEW,
    received_ms: int | None = None,
    *,
    event_id: str | None = None,
    item: str | None = None,
) -> Event:
    item = None if kind is EventType.FORGET else (item or f"i{n}")
    return Event(
        event_id=event_id or f"e{n}",
        user_id="u1",
        type=kind,
        ts_ms=1_700_000_000_000 + n,
        item_id=item,
        received_ms=received_ms,
    )


def event_id_of(entry: str) -> object:
    try:
        doc = json.loads(entry)
    except ValueError:
        return None
    return doc.get("event_id") if isinstance(doc, dict) else None


def apply(lists: dict[str, list[str]], ops: Sequence[RedisOp]) -> None:
    """What Redis does with the plan's list commands (push_by_id as its contract says)."""
    for op in ops:
        key = str(op.args[0])
        values = lists.setdefault(key, [])
        if op.command == "delete":
            lists.pop(key)
        elif op.command == "push_by_id":
            pushed = [str(v) for v in op.args[1:]]
            last_of = {event_id_of(v): i for i, v in enumerate(pushed) if event_id_of(v) is not None}
            kept = [v for v in values if event_id_of(v) is None or event_id_of(v) not in last_of]
            fresh = [
                v for i, v in enumerate(pushed) if event_id_of(v) is None or last_of[event_id_of(v)] == i
            ]
            lists[key] = kept + fresh
        elif op.command == "ltrim":
            start, stop = int(op.args[1]), int(op.args[2])
            assert stop == -1
            lists[key] = values[start:]
        else:
            assert op.command == "expire"


def ids(entries: list[str]) -> list[str]:
    return [json.loads(entry)["event_id"] for entry in entries]


def received(entries: list[str]) -> list[object]:
    return [json.loads(entry).get("received_ms") for entry in entries]


# Each scenario: batches written one after the other, and the ids the list ends with.
SCENARIOS = [
    pytest.param([[ev(1), ev(2)], [ev(1), ev(2)]], ["e1", "e2"], id="batch-redelivered-after-restart"),
    pytest.param([[ev(1), ev(2), ev(3)], [ev(2)]], ["e1", "e3", "e2"], id="one-event-replayed"),
    pytest.param([[ev(1), ev(1), ev(2), ev(1)]], ["e1", "e2"], id="duplicates-within-a-batch"),
    pytest.param([[ev(1)], [ev(2)], [ev(1)], [ev(2)], [ev(1)]], ["e2", "e1"], id="replayed-many-times"),
    pytest.param(
        [[ev(n) for n in range(6)], [ev(n) for n in range(6)]], ["e2", "e3", "e4", "e5"], id="bounded-replay"
    ),
    pytest.param([[ev(1), ev(2)], [ev(3, EventType.FORGET), ev(1)], [ev(1)]], ["e1"], id="after-a-forget"),
    # The same event id with other content in a later batch: a collector retry stamps a new
    # received_ms; a client re-sending an id with another item or type.
    pytest.param(
        [[ev(1, received_ms=10), ev(2, received_ms=11)], [ev(1, received_ms=20)]],
        ["e2", "e1"],
        id="collector-retry-new-received-ms",
    ),
    pytest.param([[ev(1), ev(2)], [ev(1, item="other")]], ["e2", "e1"], id="same-id-other-item"),
    pytest.param(
        [[ev(1), ev(2)], [ev(1, EventType.CLICK)], [ev(1, EventType.PURCHASE)]],
        ["e2", "e1"],
        id="same-id-other-type",
    ),
    pytest.param(
        [[ev(1), ev(2)], [ev(2, received_ms=5), ev(3), ev(1, received_ms=6)]],
        ["e2", "e3", "e1"],
        id="several-ids-re-sent-in-one-batch",
    ),
    # Ids that share a beginning, or hold what JSON escapes: only the very same id matches.
    pytest.param(
        [[ev(1), ev(10), ev(11)], [ev(1, received_ms=7)]], ["e10", "e11", "e1"], id="id-prefix-of-another"
    ),
    pytest.param(
        [
            [ev(1, event_id='a"b'), ev(2, event_id="a\\b"), ev(3, event_id="a"), ev(4, event_id="é€")],
            [ev(5, event_id='a"b', received_ms=1), ev(6, event_id="é€", received_ms=2)],
        ],
        ["a\\b", "a", 'a"b', "é€"],
        id="ids-json-escapes",
    ),
]


@pytest.mark.parametrize(("batches", "expected"), SCENARIOS)
def test_an_event_id_is_in_the_list_once_whatever_is_written_again(
    batches: list[list[Event]], expected: list[str]
) -> None:
    lists: dict[str, list[str]] = {}
    for batch in batches:
        apply(lists, plan_activity_writes(batch, SETTINGS))
    assert ids(lists.get(KEY, [])) == expected
    assert len(lists.get(KEY, [])) <= SETTINGS.recent_events_per_user


def test_a_list_holding_a_copy_from_before_loses_it_on_the_next_write() -> None:
    lists: dict[str, list[str]] = {}
    apply(lists, plan_activity_writes([ev(1)], SETTINGS))
    lists[KEY] = lists[KEY] * 3  # as an older worker left it
    apply(lists, plan_activity_writes([ev(1), ev(2)], SETTINGS))
    assert ids(lists[KEY]) == ["e1", "e2"]


def test_a_long_batch_writes_only_what_the_trim_keeps() -> None:
    ops = plan_activity_writes([ev(n) for n in range(100)], SETTINGS)
    pushes = [op for op in ops if op.command == "push_by_id"]
    assert len(pushes) == 1
    assert len(pushes[0].args) - 1 == SETTINGS.recent_events_per_user


# Lists as an older worker (or a copy per content) left them: the next write of an id removes
# every stored entry of it, whatever its content, and leaves entries of another shape alone.
BEFORE = [
    pytest.param(
        [ev(1, received_ms=1), ev(1, received_ms=2), ev(2)],
        [ev(1, received_ms=3)],
        ["e2", "e1"],
        id="two-contents",
    ),
    pytest.param(
        [ev(1), ev(1, item="x"), ev(1)], [ev(2)], ["e1", "e1", "e1", "e2"], id="untouched-when-not-written"
    ),
]
FOREIGN = "not an activity entry"


@pytest.mark.parametrize(("stored", "written", "expected"), BEFORE)
def test_stored_copies_of_a_written_id_all_go(
    stored: list[Event], written: list[Event], expected: list[str]
) -> None:
    lists = {KEY: [FOREIGN, *(activity_entry(e) for e in stored)]}
    apply(lists, plan_activity_writes(written, SETTINGS.model_copy(update={"recent_events_per_user": 10})))
    assert lists[KEY][0] == FOREIGN
    assert ids(lists[KEY][1:]) == expected


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Path]:
    """A redis-server of this test alone, on a Unix socket (no TCP port to share with anyone)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not on PATH: run deploy/local/install (installs Debian's redis-server)")
    socket_path = tmp_path / "redis.sock"
    server = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(socket_path), "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the private redis-server did not start")
            time.sleep(0.05)
        yield socket_path
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize(("batches", "expected"), SCENARIOS)
def test_through_the_apply_once_script_on_a_real_redis(
    private_redis: Path, batches: list[list[Event]], expected: list[str]
) -> None:
    settings: Settings = SETTINGS

    async def run() -> list[str]:
        client = redis.asyncio.Redis(unix_socket_path=str(private_redis))
        sink = RedisActivitySink(client, settings)
        try:
            for batch in batches:
                await sink.write(batch)
            entries = await client.lrange(KEY, 0, -1)
            return [entry.decode() if isinstance(entry, bytes) else entry for entry in entries]
        finally:
            await sink.close()

    entries = asyncio.run(run())
    assert ids(entries) == expected
    # Each id's entry is the newest write's: the model of the plan says exactly what Redis holds.
    lists: dict[str, list[str]] = {}
    for batch in batches:
        apply(lists, plan_activity_writes(batch, SETTINGS))
    assert entries == lists.get(KEY, [])


async def stored_entries(client: redis.asyncio.Redis) -> list[str]:
    entries = await client.lrange(KEY, 0, -1)
    return [entry.decode() if isinstance(entry, bytes) else entry for entry in entries]


def test_the_newest_content_is_kept_on_a_real_redis(private_redis: Path) -> None:
    async def run() -> list[str]:
        client = redis.asyncio.Redis(unix_socket_path=str(private_redis))
        sink = RedisActivitySink(client, SETTINGS)
        try:
            await sink.write([ev(1, received_ms=10), ev(2, received_ms=11)])
            await sink.write([ev(1, received_ms=20)])
            await sink.write([ev(2, received_ms=30), ev(1, received_ms=40)])
            return await stored_entries(client)
        finally:
            await sink.close()

    entries = asyncio.run(run())
    assert ids(entries) == ["e2", "e1"]
    assert received(entries) == [30, 40]


@pytest.mark.parametrize(("stored", "written", "expected"), BEFORE)
def test_stored_copies_of_a_written_id_all_go_on_a_real_redis(
    private_redis: Path, stored: list[Event], written: list[Event], expected: list[str]
) -> None:
    settings = SETTINGS.model_copy(update={"recent_events_per_user": 10})

    async def run() -> list[str]:
        client = redis.asyncio.Redis(unix_socket_path=str(private_redis))
        sink = RedisActivitySink(client, settings)
        try:
            await client.rpush(KEY, FOREIGN, *(activity_entry(e) for e in stored))
            await sink.write(written)
            return await stored_entries(client)
        finally:
            await sink.close()

    entries = asyncio.run(run())
    assert entries[0] == FOREIGN
    assert ids(entries[1:]) == expected


def test_a_push_longer_than_lua_unpacks_keeps_each_id_once_on_a_real_redis(private_redis: Path) -> None:
    # 2,500 entries: over Lua's unpack limit for one RPUSH, so the script pushes them in parts.
    settings = SETTINGS.model_copy(update={"recent_events_per_user": 2500})
    first = [ev(n) for n in range(2500)]
    again = [ev(n, received_ms=1) for n in range(0, 2500, 2)]

    async def run() -> list[str]:
        client = redis.asyncio.Redis(unix_socket_path=str(private_redis))
        sink = RedisActivitySink(client, settings)
        try:
            await sink.write(first)
            await sink.write(again)
            return await stored_entries(client)
        finally:
            await sink.close()

    entries = asyncio.run(run())
    assert ids(entries) == [f"e{n}" for n in range(1, 2500, 2)] + [f"e{n}" for n in range(0, 2500, 2)]
    assert received(entries)[-1] == 1
