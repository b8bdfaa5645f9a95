"""The Python SDK: validates at the call, sends keyed by user, flush reports unacknowledged events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from stream.core.errors import InvalidEvent, ServiceUnavailable
from stream.core.events import MAX_QUERY_CHARS, truncate_query
from stream.core.settings import Settings, load_settings
from stream.ingest.sdk import ProfilestreamProducer
from tests.support.fakes import FakeProducer

NOW_MS = 1_764_000_000_000


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


def make(settings: Settings, fake: FakeProducer) -> ProfilestreamProducer:
    return ProfilestreamProducer(settings, producer_factory=lambda _: fake, clock_ms=lambda: NOW_MS)


def test_track_builds_a_valid_event_and_sends_it_keyed(settings: Settings) -> None:
    fake = FakeProducer()
    with make(settings, fake) as producer:
        event = producer.track("u42", "purchase", item_id="sku-9", context={"page": "cart"})
        producer.track("u42", "search", query="gel pens", ts_ms=NOW_MS - 5, event_id="e-2")
    assert fake.closed and fake.flushed >= 1
    assert [(t, k) for t, k, _ in fake.sent] == [("t.events", b"u42"), ("t.events", b"u42")]
    first, second = (json.loads(v or b"") for _, _, v in fake.sent)
    assert first["event_id"] == event.event_id and first["ts_ms"] == NOW_MS
    assert first["context"] == {"page": "cart"}
    assert (second["event_id"], second["query"], second["ts_ms"]) == ("e-2", "gel pens", NOW_MS - 5)


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"user_id": "u1", "type": "view"}, "item_id"),
        ({"user_id": "u1", "type": "like", "item_id": "i"}, "type"),
        ({"user_id": " u1", "type": "view", "item_id": "i"}, "user_id"),
        ({"user_id": "u1", "type": "view", "item_id": "i", "ts_ms": 1_700_000_000}, "ts_ms"),
        ({"user_id": "u1", "type": "forget", "item_id": "i"}, "item_id"),
    ],
)
def test_bad_input_raises_invalid_event_at_once(
    settings: Settings, kwargs: dict[str, Any], field_name: str
) -> None:
    fake = FakeProducer()
    producer = make(settings, fake)
    with pytest.raises(InvalidEvent) as raised:
        producer.track(**kwargs)
    assert raised.value.field == field_name
    assert fake.sent == []


def test_flush_raises_when_the_broker_does_not_acknowledge(settings: Settings) -> None:
    producer = make(settings, FakeProducer(error=KafkaTimeoutError("no ack")))
    producer.track("u1", "view", item_id="i")
    with pytest.raises(ServiceUnavailable, match="did not acknowledge"):
        producer.flush()
    assert producer.flush() == 0  # nothing pending any more


def test_flush_counts_acknowledged_events(settings: Settings) -> None:
    producer = make(settings, FakeProducer())
    for n in range(3):
        producer.track("u1", "click", item_id=f"i{n}")
    assert producer.flush() == 3


def test_an_over_long_query_is_cut_as_the_schema_and_collector_cut_it(settings: Settings) -> None:
    fake = FakeProducer()
    pasted = "  gel pens " + "x" * 900
    with make(settings, fake) as producer:
        event = producer.track("u1", "search", query=pasted)
    assert event.query == truncate_query(pasted) == pasted.strip()[:MAX_QUERY_CHARS]
    [(_, _, value)] = fake.sent
    assert json.loads(value or b"")["query"] == event.query


@pytest.mark.parametrize(
    "query",
    [
        "\u200b",
        "\ufeff\u2060",
        "\u3000\u00a0",
        # Default_Ignorable_Code_Point and blank fillers, outside the Cc/Cf/Z categories.
        "\u3164",
        "\u115f\u1160",
        "\uffa0",
        "\u2800",
        "\u034f",
        "\ufe0f",
        "\U000e0100",
    ],
    ids=repr,
)
def test_an_invisible_only_query_is_refused(settings: Settings, query: str) -> None:
    with make(settings, FakeProducer()) as producer, pytest.raises(InvalidEvent) as info:
        producer.track("u1", "search", query=query)
    assert info.value.field == "query"


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"ts_ms": 10**5000}, "ts_ms"),
        ({"ts_ms": -(10**5000)}, "ts_ms"),
        ({"context": {"price": 10**5000}}, "context"),
        ({"context": {"quantity": float("inf")}}, "context"),
    ],
    # pytest's own ids would convert the 5001-digit ints to text, which is the very fault.
    ids=["ts_ms=10**5000", "ts_ms=-10**5000", "price=10**5000", "quantity=inf"],
)
def test_a_number_too_large_is_an_invalid_event_naming_the_field(
    settings: Settings, kwargs: dict[str, Any], field_name: str
) -> None:
    # Before: a bare ValueError (Python's int-to-text limit) for ts_ms and price, and an
    # Infinity written into the record for quantity.
    fake = FakeProducer()
    with pytest.raises(InvalidEvent) as raised:
        make(settings, fake).track("u1", "view", item_id="sku-1", **kwargs)
    assert raised.value.field == field_name
    assert "number too" in raised.value.reason or "JSON cannot carry" in raised.value.reason
    assert fake.sent == []
