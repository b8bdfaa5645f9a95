"""The Python SDK: validates at the call, sends keyed by user, flush reports unacknowledged events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from stream.core.errors import InvalidEvent, ServiceUnavailable
from stream.core.settings import Settings, load_settings
from stream.ingest.sdk import ProfilestreamProducer

NOW_MS = 1_764_000_000_000


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error

    def add_errback(self, f: Any, *args: Any, **kwargs: Any) -> None:
        return None


class FakeProducer:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.flushed = 0
        self.closed = False

    def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None
    ) -> Future:
        self.sent.append((topic, key, value))
        return Future(self.error)

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


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
