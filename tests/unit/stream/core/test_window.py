from __future__ import annotations

import json
import random
from dataclasses import replace
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.events import Event, EventType
from stream.core.window import (
    CorruptWindow,
    Window,
    WindowConfig,
    apply_events,
    decode_window,
    encode_window,
    event_weights,
    purchased_items,
    window_from_json,
    window_to_json,
    window_version,
)

CONFIG = WindowConfig(max_events=5, max_age_ms=10_000, half_life_ms=1_000)
T0 = 1_700_000_000_000


def ev(n: int, ts: int, kind: EventType = EventType.VIEW) -> Event:
    return Event(
        event_id=f"e{n}",
        user_id="u",
        type=kind,
        ts_ms=T0 + ts,
        item_id=None if kind in (EventType.SEARCH, EventType.FORGET) else f"i{n}",
        query="q" if kind is EventType.SEARCH else None,
    )


def window_of(events: list[Event], config: WindowConfig = CONFIG, chunk: int = 1) -> Window:
    chunks = [events[i : i + chunk] for i in range(0, len(events), chunk)]
    return reduce(lambda w, c: apply_events(w, c, config).window, chunks, Window())


def ids(window: Window) -> list[str]:
    return [e.event_id for e in window.events]


def test_keeps_newest_events_in_event_time_order() -> None:
    events = [ev(n, ts) for n, ts in enumerate([5, 1, 9, 3, 7, 2, 8])]
    assert ids(window_of(events)) == ["e3", "e0", "e4", "e6", "e2"]


def test_events_older_than_max_age_are_dropped_and_counted_as_late() -> None:
    first = apply_events(Window(), [ev(1, 20_000)], CONFIG)
    change = apply_events(first.window, [ev(2, 5_000), ev(3, 15_000)], CONFIG)
    assert ids(change.window) == ["e3", "e1"]
    assert (change.added, change.late) == (1, 1)


def test_newer_event_ages_out_old_ones() -> None:
    window = window_of([ev(1, 0), ev(2, 4_000), ev(3, 12_000)])
    assert ids(window) == ["e2", "e3"]


def test_duplicates_are_counted_and_change_nothing() -> None:
    first = apply_events(Window(), [ev(1, 1), ev(2, 2)], CONFIG)
    again = apply_events(first.window, [ev(2, 2), ev(1, 1)], CONFIG)
    assert again.window == first.window
    assert (again.added, again.duplicates) == (0, 2)


def test_forget_empties_window_and_refuses_older_events() -> None:
    window = window_of([ev(1, 1), ev(2, 2), ev(3, 3, EventType.FORGET), ev(4, 2), ev(5, 4)])
    assert ids(window) == ["e5"]
    assert window.forgotten_ts_ms == T0 + 3


def test_weights_follow_type_and_halve_per_half_life() -> None:
    window = window_of([ev(1, 0, EventType.PURCHASE), ev(2, 1_000, EventType.VIEW)])
    assert event_weights(window, CONFIG) == [2.5, 1.0]


def test_purchased_items() -> None:
    window = window_of([ev(1, 0, EventType.PURCHASE), ev(2, 1, EventType.VIEW)])
    assert purchased_items(window) == {"i1"}


event_lists = st.lists(
    st.builds(
        ev,
        st.integers(0, 30),
        st.integers(0, 25_000),
        st.sampled_from([EventType.VIEW, EventType.PURCHASE, EventType.SEARCH, EventType.FORGET]),
    ),
    max_size=25,
).map(lambda events: list({e.event_id: e for e in events}.values()))


@settings(max_examples=300)
@given(event_lists, st.randoms(use_true_random=False), st.integers(1, 6))
def test_any_arrival_order_and_batching_gives_the_same_window(
    events: list[Event], rng: random.Random, chunk: int
) -> None:
    shuffled = list(events)
    rng.shuffle(shuffled)
    assert window_of(shuffled, chunk=chunk) == window_of(events, chunk=len(events) or 1)


@settings(max_examples=300)
@given(event_lists, st.data())
def test_duplicates_anywhere_change_nothing(events: list[Event], data: st.DataObject) -> None:
    extra = data.draw(st.lists(st.sampled_from(events), max_size=10)) if events else []
    with_duplicates = data.draw(st.permutations(events + extra))
    assert window_of(with_duplicates) == window_of(events)


@given(event_lists)
def test_window_invariants(events: list[Event]) -> None:
    window = window_of(events)
    keys = [e.order_key for e in window.events]
    assert keys == sorted(keys)
    assert len(window.events) <= CONFIG.max_events
    if window.events:
        assert window.events[-1].ts_ms - window.events[0].ts_ms <= CONFIG.max_age_ms


@settings(max_examples=300)
@given(event_lists, event_lists)
def test_version_never_decreases_as_events_are_added(first: list[Event], more: list[Event]) -> None:
    before = window_of(first)
    after = apply_events(before, more, CONFIG).window
    if before.forgotten_ts_ms == after.forgotten_ts_ms:
        assert window_version(after).encode() >= window_version(before).encode()
    if after != before:
        assert window_version(after) != window_version(before) or after.events == before.events


def test_version_grows_when_an_out_of_order_event_fills_the_window() -> None:
    before = window_of([ev(1, 100), ev(2, 300)])
    after = apply_events(before, [ev(3, 200)], CONFIG).window
    assert window_version(after).encode() > window_version(before).encode()


@given(event_lists)
def test_json_round_trip(events: list[Event]) -> None:
    window = window_of(events)
    assert window_from_json(json.loads(json.dumps(window_to_json(window)))) == window


# --- Forget by receive order (field case f05) ---------------------------------------------------


def received(n: int, ts: int, received_at: int, kind: EventType = EventType.VIEW) -> Event:
    return replace(ev(n, ts, kind), received_ms=T0 + received_at)


def test_forget_removes_what_was_received_before_it_whatever_its_event_time() -> None:
    # f05: an add-to-cart from a phone 10 min fast arrives before the forget but is stamped after it.
    fast_clock = received(1, 600_000, 1_000, EventType.ADD_TO_CART)
    forget = received(2, 3_000, 3_000, EventType.FORGET)
    slow_clock_after = received(3, 2_000, 4_000)
    window = window_of([fast_clock, forget, slow_clock_after], WindowConfig(max_age_ms=10**9))
    assert ids(window) == ["e3"]
    assert window.forgotten_ts_ms == T0 + 3_000
    assert window.forgotten_received_ms == T0 + 3_000


def test_without_a_receive_time_the_event_time_stands_in() -> None:
    window = window_of([ev(1, 1), ev(2, 5, EventType.FORGET), ev(3, 4), ev(4, 6)])
    assert ids(window) == ["e4"]


@st.composite
def interleavings(draw: st.DrawFn) -> list[Event]:
    """Events and forgets in receive order (strictly increasing receive times), any event times."""
    kinds = draw(st.lists(st.sampled_from([EventType.VIEW, EventType.FORGET]), max_size=30))
    events = []
    at = 0
    for n, kind in enumerate(kinds):
        at += draw(st.integers(1, 1_000))
        events.append(received(n, draw(st.integers(0, 1_000_000)), at, kind))
    return events


@settings(max_examples=300)
@given(interleavings(), st.randoms(use_true_random=False), st.integers(1, 6))
def test_the_window_holds_exactly_the_events_received_after_the_last_forget(
    events: list[Event], rng: random.Random, chunk: int
) -> None:
    config = WindowConfig(max_events=1_000, max_age_ms=10**12)
    forgets = [i for i, e in enumerate(events) if e.type is EventType.FORGET]
    after_last = events[forgets[-1] + 1 :] if forgets else events
    expected = sorted(e.event_id for e in after_last if e.type is not EventType.FORGET)
    # Processed in any order and batching: Kafka keeps a user's order, but replays and the
    # offline recomputation group differently.
    shuffled = list(events)
    rng.shuffle(shuffled)
    assert sorted(ids(window_of(shuffled, config, chunk))) == expected
    assert sorted(ids(window_of(events, config, chunk))) == expected


# --- Windows bounded in bytes (field cases f14, f14b) -------------------------------------------

EMOJI = [chr(c) for c in range(0x1F300, 0x1F5FF)]


def emoji_search(n: int, rng: random.Random) -> Event:
    query = "".join(rng.choice(EMOJI) for _ in range(512))
    return Event(f"emo-{n:04d}", "u", EventType.SEARCH, T0 + n * 1000, query=query)


def test_f14_an_emoji_searcher_cannot_make_a_window_over_its_byte_limit() -> None:
    rng = random.Random(1)
    config = WindowConfig(max_events=200, max_bytes=300_000, max_age_ms=10**9)
    change = apply_events(Window(), [emoji_search(n, rng) for n in range(200)], config)
    stored = encode_window(change.window)
    assert len(stored) <= config.max_bytes
    assert b"\\u" not in stored  # 4 bytes per emoji stored, not 12
    assert change.dropped_for_bytes == 200 - len(change.window.events) > 0
    # The oldest left first: what stays is the newest run of events.
    assert ids(change.window) == [f"emo-{n:04d}" for n in range(200 - len(change.window.events), 200)]
    assert decode_window(stored) == change.window


def test_f14b_a_crawler_with_long_ids_stays_under_the_limit() -> None:
    events = [
        Event(
            f"crawler-evt-{i:06d}-".ljust(128, "x"),
            "u",
            EventType.VIEW,
            T0 + i * 10,
            item_id=f"https://shop.example/p/{i:06d}?".ljust(128, "q"),
        )
        for i in range(5000)
    ]
    config = WindowConfig(max_events=10_000, max_bytes=1_000_000 - 8_192, max_age_ms=10**9)
    window = window_of(events, config, chunk=500)
    assert len(encode_window(window)) <= config.max_bytes
    assert len(window.events) < 5000


text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=300)


@settings(max_examples=200)
@given(st.lists(st.tuples(text, text), max_size=40), st.integers(1_024, 20_000))
def test_no_window_is_ever_stored_over_its_byte_limit(rows: list[tuple[str, str]], max_bytes: int) -> None:
    events = [
        Event(f"{n}-{eid}", "u", EventType.SEARCH, T0 + n, query=query) for n, (eid, query) in enumerate(rows)
    ]
    config = WindowConfig(max_events=100, max_bytes=max_bytes, max_age_ms=10**9)
    window = window_of(events, config, chunk=7)
    stored = encode_window(window)
    assert len(stored) <= max_bytes
    assert decode_window(stored) == window


# --- Corrupt stored windows ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"e":"x"}',
        b'{"e":[["id","view",1]]}',
        b'{"e":[["id","nope",1,null,null]]}',
        b'{"e":[["id","view","1",null,null]]}',
        b'{"e":[[1,"view",1,null,null]]}',
        b'{"e":[["id","view",1,5,null]]}',
        b'{"e":[],"f":"yesterday"}',
        b'{"e":[],"f":true}',
    ],
)
def test_a_corrupt_stored_window_raises_corrupt_window(raw: bytes) -> None:
    with pytest.raises(CorruptWindow):
        decode_window(raw)


def test_windows_stored_before_receive_times_still_read() -> None:
    window = decode_window(b'{"e":[["a","view",5,"i",null]],"f":3}')
    assert window.events[0].received_ms == 5
    assert window.forgotten_received_ms == 3
