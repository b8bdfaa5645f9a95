from __future__ import annotations

import json
import random
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.events import Event, EventType
from stream.core.window import (
    Window,
    WindowConfig,
    apply_events,
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
