"""Event sinks: per-event records the worker keeps beside the recommendations.

`EventSink` is the seam; `RedisActivitySink` keeps each user's most recent events as received,
newest last, under ``{prefix}:recent:{user_id}`` (for debugging and `profilestream recent`); a
`forget` event deletes that list. Recommendations themselves are written by `stream.redis.reco_store`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream.core.events import Event, EventType
from stream.core.settings import Settings
from stream.redis.client import redis_async

log = logging.getLogger(__name__)

RECENT_KIND = "recent"
MAX_BACKOFF_S = 5.0


class EventSink(Protocol):
    async def write(self, events: Sequence[Event]) -> None:
        """Persist the effect of a batch; return only once it is durable, never drop it."""

    async def close(self) -> None: ...


def activity_entry(event: Event) -> str:
    """The compact JSON line kept per event in a user's recent-activity list."""
    entry: dict[str, object] = {"event_id": event.event_id, "type": event.type.value, "ts_ms": event.ts_ms}
    if event.item_id is not None:
        entry["item_id"] = event.item_id
    if event.query is not None:
        entry["query"] = event.query
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class RedisOp:
    """One Redis command of a batch's write plan, e.g. ``RedisOp("rpush", (key, v1, v2))``."""

    command: str
    args: tuple[str | int | float | bytes, ...]


def plan_activity_writes(events: Sequence[Event], settings: Settings) -> list[RedisOp]:
    """The Redis commands that apply a batch to the users' recent-activity lists (pure)."""
    by_user: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_user[event.user_id].append(event)
    keep = settings.recent_events_per_user
    ops: list[RedisOp] = []
    for user_id, user_events in by_user.items():
        key = settings.redis_key(RECENT_KIND, user_id)
        # Only what follows a user's last `forget` in this batch survives it.
        forgets = [i for i, e in enumerate(user_events) if e.type is EventType.FORGET]
        survivors = user_events[forgets[-1] + 1 :] if forgets else user_events
        if forgets:
            ops.append(RedisOp("delete", (key,)))
        if survivors:
            ops.append(RedisOp("rpush", (key, *(activity_entry(e) for e in survivors))))
            ops.append(RedisOp("ltrim", (key, -keep, -1)))
    return ops


class RedisActivitySink:
    """Appends each user's events to a capped Redis list in one pipeline per batch."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisActivitySink:
        return cls(redis_async(settings), settings)

    async def write(self, events: Sequence[Event]) -> None:
        ops = plan_activity_writes(events, self._settings)
        if ops:
            await execute_until_done(self._redis, ops, what=f"a batch of {len(events)} events")

    async def close(self) -> None:
        await self._redis.aclose()


async def execute_until_done(redis: Redis, ops: Sequence[RedisOp], *, what: str) -> None:
    """Run `ops` in one pipeline, retrying while Redis is unreachable.

    Blocking here holds the partition back, which is the back-pressure we want: the batch's
    offsets are not committed until Redis has it, so nothing is lost.
    """
    backoff_s = 0.1
    while True:
        # redis-py clears a pipeline after execute(), even a failed one: build it anew each try.
        pipe = redis.pipeline(transaction=False)
        for op in ops:
            getattr(pipe, op.command)(*op.args)
        try:
            await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("redis unreachable (%s); retrying %s in %.1fs", exc, what, backoff_s)
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
            continue
        return
