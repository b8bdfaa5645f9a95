"""The SDK holds at most `sdk_max_pending_sends` unacknowledged events."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError

from stream.core.errors import Overloaded
from stream.core.settings import load_settings
from stream.ingest.sdk import ProfilestreamProducer
from tests.support.fakes import FakeProducer

NOW_MS = 1_764_000_000_000


def make(fake: FakeProducer, limit: int) -> ProfilestreamProducer:
    settings = load_settings({}, events_topic="t.events", sdk_max_pending_sends=limit)
    return ProfilestreamProducer(
        settings, producer_factory=lambda _: fake, clock_ms=lambda: NOW_MS, flush_timeout_s=0.01
    )


def test_a_full_queue_waits_for_the_broker_before_sending_more() -> None:
    fake = FakeProducer()
    producer = make(fake, limit=3)
    for n in range(7):
        producer.track("u1", "view", item_id=f"i{n}")
    # Sends 4 and 7 each waited for the three before them to be acknowledged.
    assert fake.flushed == 2
    assert len(fake.sent) == 7
    assert producer.flush() == 1


def test_a_full_queue_the_broker_does_not_acknowledge_refuses_the_send_naming_the_setting() -> None:
    fake = FakeProducer(error=KafkaTimeoutError("no ack"))
    producer = make(fake, limit=2)
    producer.track("u1", "view", item_id="i1")
    producer.track("u1", "view", item_id="i2")
    with pytest.raises(Overloaded, match="PROFILESTREAM_SDK_MAX_PENDING_SENDS=2"):
        producer.track("u1", "view", item_id="i3")
    assert len(fake.sent) == 2  # the refused event was not sent
