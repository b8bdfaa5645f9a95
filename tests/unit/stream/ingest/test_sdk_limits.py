"""The SDK refuses an event over PROFILESTREAM_EVENT_MAX_BYTES at `track` time, as the collector
does, instead of sending it for the worker to dead-letter."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from stream.core.errors import InvalidEvent
from stream.core.events import Event, EventLimits, EventType
from stream.core.settings import Settings, load_settings
from stream.ingest.body import Batch, parse_batch
from stream.ingest.sdk import ProfilestreamProducer
from tests.support.fakes import FakeProducer

NOW_MS = 1_764_000_000_000


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events", event_max_bytes=4_096)


def make(settings: Settings, fake: FakeProducer) -> ProfilestreamProducer:
    return ProfilestreamProducer(settings, producer_factory=lambda _: fake, clock_ms=lambda: NOW_MS)


def _unsized(reason: str) -> str:
    return re.sub(r"\d+ bytes", "N bytes", reason)


OVERSIZED = [
    pytest.param({"type": "view", "item_id": "i", "context": {"blob": "x" * 5_000}}, "context", id="context"),
    pytest.param(
        {"type": "view", "item_id": "i", "context": {"n": list(range(1_500))}}, "context", id="numbers"
    ),
    pytest.param(
        {
            "type": "view",
            "item_id": "\U0001f4e6" * 128,
            "session_id": "s" * 128,
            "context": {"k": "v" * 3_500},
        },
        "context",
        id="ids-and-context",
    ),
]


@pytest.mark.parametrize(("kwargs", "field_name"), OVERSIZED)
def test_an_event_over_the_byte_limit_is_refused_at_track_time_as_the_collector_refuses_it(
    settings: Settings, kwargs: dict[str, Any], field_name: str
) -> None:
    fake = FakeProducer()
    producer = make(settings, fake)
    with pytest.raises(InvalidEvent) as raised:
        producer.track("u1", event_id="e-big", ts_ms=NOW_MS, **kwargs)
    assert fake.sent == []
    assert raised.value.field == field_name
    assert "PROFILESTREAM_EVENT_MAX_BYTES (now 4096" in raised.value.reason
    doc = {"event_id": "e-big", "user_id": "u1", "ts_ms": NOW_MS, **kwargs}
    outcome = parse_batch(
        json.dumps([doc, {**doc, "context": None, "event_id": "ok"}]).encode(),
        limits=EventLimits.from_settings(settings),
        max_events=10,
        received_ms=NOW_MS,
    )
    assert isinstance(outcome, Batch)
    [rejected] = outcome.rejected
    # The same field and reason; the collector's size counts the receive time it stamps.
    assert (rejected.field, _unsized(rejected.reason)) == (raised.value.field, _unsized(raised.value.reason))


def test_an_over_long_query_still_fits_and_is_sent(settings: Settings) -> None:
    fake = FakeProducer()
    with make(settings, fake) as producer:
        producer.track("u1", "search", query="\U0001f600" * 5_000)
    [(_, _, value)] = fake.sent
    assert len(value or b"") <= settings.event_max_bytes


def test_send_refuses_a_hand_built_event_over_the_limit(settings: Settings) -> None:
    fake = FakeProducer()
    producer = make(settings, fake)
    event = Event(
        event_id="e", user_id="u1", type=EventType.VIEW, ts_ms=NOW_MS, item_id="i", context={"b": "x" * 5_000}
    )
    with pytest.raises(InvalidEvent) as raised:
        producer.send(event)
    assert raised.value.field == "context"
    assert fake.sent == []
