"""The pure part of anonymous to known (`stream.core.identity`)."""

from __future__ import annotations

from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.errors import InvalidEvent
from stream.core.events import MAX_ID_CHARS, Event, EventLimits, EventType, event_from_dict
from stream.core.identity import (
    FORGET_OF,
    MERGED_FROM,
    cleared,
    joined_events,
    linked_forgets,
    resolve_identities,
    split_identities,
)
from stream.core.window import Window, WindowConfig, apply_events

CONFIG = WindowConfig(max_events=6, max_age_ms=50_000, half_life_ms=1_000)
T0 = 1_700_000_000_000
KINDS = [EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE, EventType.SEARCH]


def ev(
    event_id: str, user: str, ts: int, kind: EventType = EventType.VIEW, received: int | None = None
) -> Event:
    return Event(
        event_id=event_id,
        user_id=user,
        type=kind,
        ts_ms=T0 + ts,
        item_id=None if kind in (EventType.SEARCH, EventType.FORGET) else f"i-{event_id}",
        query="q" if kind is EventType.SEARCH else None,
        received_ms=None if received is None else T0 + received,
    )


def identify(anonymous: str, known: str, ts: int, event_id: str = "login") -> Event:
    return Event(event_id, anonymous, EventType.IDENTIFY, T0 + ts, known_user_id=known)


def forget(user: str, received: int, event_id: str = "f") -> Event:
    return Event(event_id, user, EventType.FORGET, T0 + received, received_ms=T0 + received)


def window(events: list[Event], start: Window | None = None, chunk: int = 3) -> Window:
    chunks = [events[i : i + chunk] for i in range(0, len(events), chunk)]
    return reduce(lambda w, c: apply_events(w, c, CONFIG).window, chunks, start or Window())


def test_identify_needs_the_known_id_and_nothing_else_may_carry_one() -> None:
    limits = EventLimits()
    base = {"event_id": "l1", "user_id": "anon-1", "ts_ms": T0}
    login = event_from_dict({**base, "type": "identify", "known_user_id": "u42"}, limits=limits, now_ms=T0)
    assert (login.type, login.known_user_id) == (EventType.IDENTIFY, "u42")
    assert event_from_dict(login.to_dict(), limits=limits, now_ms=T0) == login
    for doc, field in [
        ({**base, "type": "identify"}, "known_user_id"),
        ({**base, "type": "identify", "known_user_id": "u42", "item_id": "x"}, "item_id"),
        ({**base, "type": "view", "item_id": "x", "known_user_id": "u42"}, "known_user_id"),
        ({**base, "type": "identify", "known_user_id": " u42"}, "known_user_id"),
    ]:
        with pytest.raises(InvalidEvent) as caught:
            event_from_dict(doc, limits=limits, now_ms=T0)
        assert caught.value.field == field


def test_an_identify_record_never_enters_a_window() -> None:
    assert (
        window([ev("a", "anon", 1), identify("anon", "u", 2)]).events == window([ev("a", "anon", 1)]).events
    )


def test_split_keeps_batch_order_and_drops_self_joins() -> None:
    events = [ev("a", "anon", 1), identify("anon", "u", 2), identify("u", "u", 3), forget("u", 4)]
    regular, joins = split_identities(events)
    assert regular == [events[0], events[3]]
    assert [(j.anonymous_id, j.known_id) for j in joins] == [("anon", "u")]


def test_joined_events_keep_ids_and_times_and_name_the_known_user() -> None:
    anonymous = window([ev("a", "anon", 1, received=5), ev("b", "anon", 2, EventType.SEARCH)])
    moved = joined_events(anonymous, "anon", "u")
    assert [(e.event_id, e.user_id, e.ts_ms, e.received_ms) for e in moved] == [
        ("a", "u", T0 + 1, T0 + 5),
        ("b", "u", T0 + 2, T0 + 2),
    ]
    assert all(e.context == {MERGED_FROM: "anon"} for e in moved)
    # The window of the moved events is the anonymous window under the known id.
    assert window(moved).events == anonymous.events


def test_cleared_keeps_a_forget_cut() -> None:
    forgotten = window([ev("a", "anon", 1), forget("anon", 2), ev("b", "anon", 3)])
    assert cleared(forgotten).events == ()
    assert cleared(forgotten).forgotten_received_ms == T0 + 2


behaviour = st.lists(
    st.tuples(
        st.sampled_from(["x", "y", "z", "w", "v", "s", "t"]), st.integers(0, 60_000), st.sampled_from(KINDS)
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(behaviour, behaviour, st.randoms(use_true_random=False), st.integers(1, 3), st.integers(1, 4))
def test_a_merge_is_an_event_time_union_whatever_the_order_and_however_often_sent(
    anon_rows: list[tuple[str, int, EventType]],
    known_rows: list[tuple[str, int, EventType]],
    rng: object,
    sends: int,
    chunk: int,
) -> None:
    """At-least-once delivery of the moved events, interleaved anyhow with the known user's own
    events, gives the known user's window of the union (duplicates by event id removed)."""
    # Distinct ids: a different event reusing an id is a producer's bug, kept first-seen.
    anonymous = window([ev(f"a-{n}-{i}", "anon", ts, kind) for n, (i, ts, kind) in enumerate(anon_rows)])
    own = [ev(f"k-{n}-{i}", "u", ts, kind) for n, (i, ts, kind) in enumerate(known_rows)]
    moved = joined_events(anonymous, "anon", "u")
    arrivals = own + moved * sends
    rng.shuffle(arrivals)  # type: ignore[attr-defined]
    expected = apply_events(Window(), own + moved, CONFIG).window
    assert window(arrivals, chunk=chunk).events == expected.events


@settings(max_examples=200, deadline=None)
@given(behaviour, behaviour, st.integers(0, 12))
def test_resolve_moves_the_window_at_the_login_and_keeps_later_anonymous_events(
    anon_rows: list[tuple[str, int, EventType]], known_rows: list[tuple[str, int, EventType]], cut: int
) -> None:
    anon = [ev(f"a-{n}-{i}", "anon", ts, kind) for n, (i, ts, kind) in enumerate(anon_rows)]
    known = [ev(f"k-{n}-{i}", "u", ts, kind) for n, (i, ts, kind) in enumerate(known_rows)]
    before, after = anon[:cut], anon[cut:]
    resolved = resolve_identities([*before, *known, identify("anon", "u", 0), *after], CONFIG)
    assert all(e.type is not EventType.IDENTIFY for e in resolved)
    by_user = {u: [e for e in resolved if e.user_id == u] for u in ("anon", "u")}
    assert window(by_user["anon"]).events == window(after).events
    moved = joined_events(window(before), "anon", "u")
    assert window(by_user["u"]).events == window(known + moved).events


def test_resolve_keeps_an_anonymous_forget_cut_across_the_join() -> None:
    events = [
        ev("a", "anon", 1, received=1),
        forget("anon", 2),
        ev("b", "anon", 3, received=3),
        identify("anon", "u", 4),
        # Received before the forget (a replay of an old event): refused after the join too.
        ev("a", "anon", 1, received=1),
    ]
    resolved = resolve_identities(events, CONFIG)
    assert (
        window([e for e in resolved if e.user_id == "u"]).events
        == window([ev("b", "u", 3, received=3)]).events
    )
    assert window([e for e in resolved if e.user_id == "anon"]).events == ()


def test_a_forget_reaches_linked_ids_once() -> None:
    original = forget("u", 10, event_id="f" * MAX_ID_CHARS)
    derived = linked_forgets(original, ["anon-2", "anon-1", "u"])
    assert [f.user_id for f in derived] == ["anon-1", "anon-2"]
    assert all(f.received_ms == original.received_ms and f.ts_ms == original.ts_ms for f in derived)
    assert all(f.context == {FORGET_OF: "u"} and len(f.event_id) <= MAX_ID_CHARS for f in derived)
    assert len({f.event_id for f in derived}) == 2
    assert linked_forgets(original, ["anon-1"]) == derived[:1]  # same ids when sent again
    # A forget made for a link is not sent on: the two ids would bounce it forever.
    assert linked_forgets(derived[0], ["u"]) == []
    assert linked_forgets(ev("a", "u", 1), ["anon-1"]) == []


def test_resolve_forgets_both_ids_after_a_join() -> None:
    events = [
        ev("a", "anon", 1, received=1),
        identify("anon", "u", 2),
        ev("k", "u", 3, received=3),
        forget("anon", 4),
        ev("late", "u", 5, received=5),
    ]
    resolved = resolve_identities(events, CONFIG)
    known = window([e for e in resolved if e.user_id == "u"])
    assert [e.event_id for e in known.events] == ["late"]
    assert known.forgotten_received_ms == T0 + 4
