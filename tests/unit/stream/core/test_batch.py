"""The worker's pure batch logic (stream/app.py) without Faust, Kafka or Redis."""

from __future__ import annotations

from stream.core.batch import apply_batch, not_forgotten
from stream.core.events import Event, EventType
from stream.core.window import Window, WindowConfig

T0 = 1_764_000_000_000


def ev(event_id: str, user: str, ts_ms: int, kind: EventType = EventType.VIEW) -> Event:
    item = None if kind is EventType.FORGET else "sku-1"
    return Event(event_id, user, kind, ts_ms, item_id=item)


def test_replayed_events_from_before_a_forget_are_not_recorded_again() -> None:
    forgotten = {"gone": Window(forgotten_ts_ms=T0 + 10, forgotten_received_ms=T0 + 10)}
    events = [
        ev("old", "gone", T0 + 5),
        ev("at-forget", "gone", T0 + 10),
        ev("forget-again", "gone", T0 + 10, EventType.FORGET),
        ev("new", "gone", T0 + 11),
        ev("other", "kept", T0 + 1),
    ]
    assert [e.event_id for e in not_forgotten(events, forgotten)] == ["forget-again", "new", "other"]


def test_a_forget_in_the_batch_cuts_events_up_to_its_time_in_any_order() -> None:
    events = [
        ev("a", "u", T0 + 1),
        ev("f", "u", T0 + 5, EventType.FORGET),
        ev("b", "u", T0 + 3),
        ev("c", "u", T0 + 9),
    ]
    windows, outcome = apply_batch({}, events, WindowConfig(), popularity_half_life_ms=7 * 86_400_000)
    assert [e.event_id for e in windows["u"].events] == ["c"]
    assert outcome.forgets == [("u", T0 + 5)]
    assert [e.event_id for e in not_forgotten(events, windows)] == ["f", "c"]


def test_a_forget_is_reported_with_its_receive_time_the_cut_redis_keeps() -> None:
    # A slow client clock: the forget's event time lags its receive time. Redis' tombstone must
    # hold the receive time, the window's cut, not the event time.
    forget = Event("f", "u", EventType.FORGET, T0 + 5, received_ms=T0 + 50)
    _, outcome = apply_batch({}, [forget], WindowConfig(), popularity_half_life_ms=7 * 86_400_000)
    assert outcome.forgets == [("u", T0 + 50)]


def test_popularity_stays_finite_for_the_shortest_half_life_allowed() -> None:
    from stream.core.prior import popularity_increment
    from stream.core.settings import Settings, load_settings

    shortest_ms = Settings.model_fields["popularity_half_life_s"].metadata[0].ge * 1000
    far_future_ms = 2_190_000_000_000  # 2039-05: the horizon the settings comment promises
    assert popularity_increment(10.0, far_future_ms, shortest_ms) < float("inf")
    assert load_settings({}).popularity_half_life_s * 1000 >= shortest_ms


def test_events_a_login_moved_from_an_anonymous_window_do_not_count_towards_popularity_again() -> None:
    from stream.core.identity import MERGED_FROM

    seen = Event("e1", "anon", EventType.VIEW, T0, item_id="sku-1")
    _, first = apply_batch({}, [seen], WindowConfig(), popularity_half_life_ms=7 * 86_400_000)
    moved = Event("e1", "known", EventType.VIEW, T0, item_id="sku-1", context={MERGED_FROM: "anon"})
    windows, second = apply_batch({}, [moved], WindowConfig(), popularity_half_life_ms=7 * 86_400_000)
    assert first.popularity.keys() == {"sku-1"}
    assert [e.event_id for e in windows["known"].events] == ["e1"]
    assert second.popularity == {}
