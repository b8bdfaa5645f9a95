from __future__ import annotations

import json

from stream.core.events import Event, EventType
from stream.core.settings import load_settings
from stream.redis.activity import RedisOp, activity_entry, plan_activity_writes

SETTINGS = load_settings({}, recent_events_per_user=3, redis_key_prefix="t", recent_ttl_s=0)


def ev(n: int, user: str = "u1", kind: EventType = EventType.VIEW) -> Event:
    item = None if kind is EventType.FORGET else f"i{n}"
    return Event(event_id=f"e{n}", user_id=user, type=kind, ts_ms=1_700_000_000_000 + n, item_id=item)


def test_one_push_by_id_and_trim_per_user_in_arrival_order() -> None:
    ops = plan_activity_writes([ev(1), ev(2, "u2"), ev(3)], SETTINGS)
    assert ops == [
        RedisOp("push_by_id", ("t:{u1}:recent", activity_entry(ev(1)), activity_entry(ev(3)))),
        RedisOp("ltrim", ("t:{u1}:recent", -3, -1)),
        RedisOp("push_by_id", ("t:{u2}:recent", activity_entry(ev(2, "u2")))),
        RedisOp("ltrim", ("t:{u2}:recent", -3, -1)),
    ]


def test_forget_deletes_and_keeps_only_later_events() -> None:
    ops = plan_activity_writes([ev(1), ev(2, kind=EventType.FORGET), ev(3)], SETTINGS)
    assert ops[0] == RedisOp("delete", ("t:{u1}:recent",))
    assert ops[1] == RedisOp("push_by_id", ("t:{u1}:recent", activity_entry(ev(3))))
    assert plan_activity_writes([ev(1), ev(2, kind=EventType.FORGET)], SETTINGS) == [
        RedisOp("delete", ("t:{u1}:recent",))
    ]


def test_activity_entry_is_compact_json_led_by_the_event_id() -> None:
    search = Event(event_id="e", user_id="u", type=EventType.SEARCH, ts_ms=5, query="pens")
    # The push finds an entry's id at its head (push_by_id in stream/redis/apply_once.py).
    assert activity_entry(search).startswith('{"event_id":"e",')
    assert json.loads(activity_entry(search)) == {
        "event_id": "e",
        "type": "search",
        "ts_ms": 5,
        "query": "pens",
    }


def test_each_write_renews_the_lists_expiry() -> None:
    settings = SETTINGS.model_copy(update={"recent_ttl_s": 600})
    ops = plan_activity_writes([ev(1), ev(2, "u2")], settings)
    assert RedisOp("expire", ("t:{u1}:recent", 600)) in ops
    assert RedisOp("expire", ("t:{u2}:recent", 600)) in ops


def test_activity_entry_carries_the_receive_time_the_forget_cut_compares() -> None:
    event = Event(event_id="e", user_id="u", type=EventType.VIEW, ts_ms=5, item_id="i", received_ms=9)
    assert json.loads(activity_entry(event))["received_ms"] == 9
