"""The recent-activity list: per-event records the worker keeps beside the recommendations.

`ActivitySink` is the seam (named apart from replay's `EventSink`, which sends events to Kafka);
`RedisActivitySink` keeps each user's most recent events as received, newest last, under
``{prefix}:{<user_id>}:recent`` (for debugging and `profilestream recent`); a `forget` event deletes
that list. Each write renews the list's expiry (`recent_ttl_s`), so a user who goes quiet leaves
no list behind. Recommendations themselves are written by `stream.redis.reco_store`.

An event id is in the list at most once, however often and in whatever form it is written: a
batch keeps the first event of each `event_id` (as the window does), and the push, inside the
apply-once script (``push_by_id`` in `stream.redis.apply_once`), first removes every stored entry
of a pushed id, whatever its content. So an event replayed, redelivered after a worker restart,
or re-sent by a collector retry with a new `received_ms` moves to the end of the list with the
newest write's content instead of appearing twice, and a list that already holds copies from
before loses them. The list stays within `recent_events_per_user` entries and needs no other key;
a write scans that list once (matching the event id at the head of each entry), plus one LREM
scan per stored entry that goes: at most `recent_events_per_user` + 1 scans per user (only the
last `recent_events_per_user` events of a batch are written: the trim would drop the others).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

import orjson

from stream.core.events import Event, EventType
from stream.core.settings import Settings
from stream.redis.apply_once import RedisOp, execute_until_done
from stream.redis.client import AsyncRedis, redis_async

__all__ = [
    "RECENT_KIND",
    "ActivitySink",
    "RedisActivitySink",
    "RedisOp",
    "activity_entry",
    "execute_until_done",
]

RECENT_KIND = "recent"


class ActivitySink(Protocol):
    """Where the worker records each batch's events beside the recommendations."""

    async def write(self, events: Sequence[Event]) -> None:
        """Persist the effect of a batch; return only once it is durable, never drop it."""

    async def close(self) -> None: ...


def activity_entry(event: Event) -> str:
    """The compact JSON line kept per event in a user's recent-activity list.

    `event_id` comes first: the push (``push_by_id``) finds an entry's id at its head.
    """
    entry: dict[str, object] = {"event_id": event.event_id, "type": event.type.value, "ts_ms": event.ts_ms}
    if event.received_ms is not None:
        # Search compares it with the forget tombstone, which holds the forget's receive time.
        entry["received_ms"] = event.received_ms
    if event.item_id is not None:
        entry["item_id"] = event.item_id
    if event.query is not None:
        entry["query"] = event.query
    # orjson (the same compact, unescaped UTF-8 as json.dumps with those options): one entry per
    # event, on the event loop.
    return orjson.dumps(entry).decode()


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
        # The trim keeps only the last `keep` entries: the earlier ones of the batch would go too.
        entries = [activity_entry(e) for e in _first_of_each_id(survivors)][-keep:]
        if entries:
            # A stored entry of a pushed event id leaves first, whatever its content (a replay, a
            # redelivery, a collector retry's new received_ms): each id is in the list once.
            ops.append(RedisOp("push_by_id", (key, *entries)))
            ops.append(RedisOp("ltrim", (key, -keep, -1)))
            if ttl_s > 0:
                ops.append(RedisOp("expire", (key, ttl_s)))
    return ops


def _first_of_each_id(events: Sequence[Event]) -> list[Event]:
    """`events` without a later event of an id already seen (an id names one event: the window
    keeps the first too)."""
    seen: set[str] = set()
    kept = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            kept.append(event)
    return kept


class RedisActivitySink:
    """Appends each user's events to a capped Redis list, applied once per user (`apply_once`)."""

    def __init__(self, redis: AsyncRedis, settings: Settings) -> None:
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
                writer=RECENT_KIND,
            )

    async def close(self) -> None:
        await self._redis.aclose()
