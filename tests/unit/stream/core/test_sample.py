from __future__ import annotations

from collections import Counter

from stream.core.events import EventLimits, decode_event
from stream.core.sample import SampleSpec, sample_catalogue, sample_events


def test_same_seed_same_events_and_different_seed_differs() -> None:
    spec = SampleSpec(users=10, events=200)
    assert sample_events(spec) == sample_events(spec)
    assert sample_events(spec) != sample_events(SampleSpec(users=10, events=200, seed=8))


def test_events_are_valid_unique_and_per_user_time_ordered() -> None:
    events = sample_events(SampleSpec(users=30, events=2000))
    now_ms = max(e.ts_ms for e in events)
    assert all(decode_event(e.to_json(), limits=EventLimits(), now_ms=now_ms) == e for e in events)
    assert len({e.event_id for e in events}) == len(events)
    last: dict[str, int] = {}
    for event in events:
        assert event.ts_ms > last.get(event.user_id, 0)
        last[event.user_id] = event.ts_ms


def test_activity_is_skewed_towards_few_users() -> None:
    counts = Counter(e.user_id for e in sample_events(SampleSpec(users=50, events=5000)))
    top, *_ = counts.most_common()
    assert top[1] > 5 * (5000 / 50) / 2


def test_catalogue_ids_cover_the_sample_events_items() -> None:
    catalogue = sample_catalogue(items=100)
    ids = {row["item_id"] for row in catalogue}
    events = sample_events(SampleSpec(users=10, events=300, items=100))
    assert {e.item_id for e in events if e.item_id} <= ids
    assert sample_catalogue(items=100) == catalogue
    assert any(not row["in_stock"] for row in sample_catalogue(items=500))
