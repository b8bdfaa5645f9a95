"""The recent-activity list holds an event once, however often it is written (a replay, a
redelivery after a worker restart), and stays bounded: the write plan run against a model of
Redis lists, and through the real apply-once script on a private redis-server when one is installed."""

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
from stream.redis.activity import RedisActivitySink, RedisOp, plan_activity_writes

SETTINGS = load_settings({}, recent_events_per_user=4, redis_key_prefix="t", recent_ttl_s=0)
KEY = "t:{u1}:recent"


def ev(n: int, kind: EventType = EventType.VIEW, received_ms: int | None = None) -> Event:
    item = None if kind is EventType.FORGET else f"i{n}"
    return Event(
        event_id=f"e{n}",
        user_id="u1",
        type=kind,
        ts_ms=1_700_000_000_000 + n,
        item_id=item,
        received_ms=received_ms,
    )


def apply(lists: dict[str, list[str]], ops: Sequence[RedisOp]) -> None:
    """What Redis does with the plan's list commands."""
    for op in ops:
        key = str(op.args[0])
        values = lists.setdefault(key, [])
        if op.command == "delete":
            lists.pop(key)
        elif op.command == "lrem":
            assert op.args[1] == 0
            lists[key] = [v for v in values if v != op.args[2]]
        elif op.command == "rpush":
            values.extend(str(v) for v in op.args[1:])
        elif op.command == "ltrim":
            start, stop = int(op.args[1]), int(op.args[2])
            assert stop == -1
            lists[key] = values[start:]
        else:
            assert op.command == "expire"


def ids(entries: list[str]) -> list[str]:
    return [json.loads(entry)["event_id"] for entry in entries]


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
    assert sum(op.command == "lrem" for op in ops) == SETTINGS.recent_events_per_user


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

    assert ids(asyncio.run(run())) == expected
