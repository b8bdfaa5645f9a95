"""The recent-activity list: per-event records the worker keeps beside the recommendations.

`ActivitySink` is the seam (named apart from replay's `EventSink`, which sends events to Kafka);
`RedisActivitySink` keeps each user's most recent events as received, newest last, under
``{prefix}:recent:{user_id}`` (for debugging and `profilestream recent`); a `forget` event deletes
that list. Each write renews the list's expiry (`recent_ttl_s`), so a user who goes quiet leaves
no list behind. Recommendations themselves are written by `stream.redis.reco_store`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from stream.core.events import Event, EventType
from stream.core.settings import Settings
from stream.redis.client import redis_async

log = logging.getLogger(__name__)

RECENT_KIND = "recent"
MAX_BACKOFF_S = 5.0
APPLIED_KIND = "applied"
# An applied batch's marker only has to outlive the retries of that one batch, which check it as
# soon as Redis answers again; ten minutes covers that and keeps the markers few.
APPLIED_MARKER_TTL_S = 600


class ActivitySink(Protocol):
    """Where the worker records each batch's events beside the recommendations."""

    async def write(self, events: Sequence[Event]) -> None:
        """Persist the effect of a batch; return only once it is durable, never drop it."""

    async def close(self) -> None: ...


def activity_entry(event: Event) -> str:
    """The compact JSON line kept per event in a user's recent-activity list."""
    entry: dict[str, object] = {"event_id": event.event_id, "type": event.type.value, "ts_ms": event.ts_ms}
    if event.received_ms is not None:
        # Search compares it with the forget tombstone, which holds the forget's receive time.
        entry["received_ms"] = event.received_ms
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
    ttl_s = settings.recent_ttl_s
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
            if ttl_s > 0:
                ops.append(RedisOp("expire", (key, ttl_s)))
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
            await execute_until_done(
                self._redis,
                ops,
                what=f"a batch of {len(events)} events",
                key_prefix=self._settings.redis_key_prefix,
            )

    async def close(self) -> None:
        await self._redis.aclose()


async def execute_until_done(redis: Redis, ops: Sequence[RedisOp], *, what: str, key_prefix: str) -> None:
    """Apply `ops` exactly once, as one MULTI/EXEC transaction, retrying while Redis is unreachable.

    Blocking here holds the partition back, which is the back-pressure we want: the batch's
    offsets are not committed until Redis has it, so nothing is lost.

    Exactly once, although ZINCRBY and RPUSH are not idempotent: the transaction also sets a marker
    key unique to this batch, and is queued under WATCH of that marker. A connection cut mid-way
    leaves an incomplete MULTI that Redis discards; a cut after EXEC reached Redis (or a hung Redis
    that applies it later) leaves the marker set, and the next try reads it and stops. The WATCH
    makes a late application of the earlier try between our read and our EXEC abort ours; redis-py
    never resends a pipeline that is watching.
    """
    marker = f"{key_prefix}:{APPLIED_KIND}:{uuid.uuid4().hex}"
    backoff_s = 0.1
    while True:
        # redis-py clears a pipeline after execute(), even a failed one: build it anew each try.
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(marker)
                if await pipe.exists(marker):
                    log.info("redis already applied %s before the connection was lost", what)
                    return
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                for op in ops:
                    getattr(pipe, op.command)(*op.args)
                pipe.set(marker, 1, ex=APPLIED_MARKER_TTL_S)
                await pipe.execute()
            except WatchError:
                # The marker changed under our WATCH (an earlier try applied late) or the
                # connection died while watching: read the marker again on the next try.
                continue
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("redis unreachable (%s); retrying %s in %.1fs", exc, what, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
                continue
        return
