"""The SDK stamps each event with its own receive time, as the collector does: a forget sent
through it removes what was received before it whatever its event time, and an event tracked
after it is kept."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from stream.core.errors import InvalidEvent
from stream.core.events import RECEIVE_TIME_TOLERANCE_MS, Event, EventLimits, EventType, decode_event
from stream.core.settings import Settings, load_settings
from stream.core.window import Window, WindowConfig, apply_events
from stream.ingest.sdk import ProfilestreamProducer
from tests.support.fakes import FakeProducer

NOW_MS = 1_764_000_000_000


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


def with_clock(settings: Settings, fake: FakeProducer, times: list[int]) -> ProfilestreamProducer:
    ticks: Iterator[int] = iter(times)
    return ProfilestreamProducer(settings, producer_factory=lambda _: fake, clock_ms=lambda: next(ticks))


def sent(fake: FakeProducer) -> list[Event]:
    return [decode_event(value or b"", limits=EventLimits(), now_ms=NOW_MS) for _, _, value in fake.sent]


def test_track_stamps_the_receive_time_with_the_producers_clock(settings: Settings) -> None:
    fake = FakeProducer()
    producer = with_clock(settings, fake, [NOW_MS])
    event = producer.track("u1", "view", item_id="sku-1", ts_ms=NOW_MS - 5_000)
    [record] = sent(fake)
    assert event.received_ms == record.received_ms == NOW_MS
    assert json.loads(fake.sent[0][2] or b"")["received_ms"] == NOW_MS


def test_receive_times_never_go_back_and_a_forget_is_before_what_follows(settings: Settings) -> None:
    fake = FakeProducer()
    # The clock steps back 2 s (an NTP correction) and stands still over a forget.
    producer = with_clock(settings, fake, [NOW_MS, NOW_MS - 2_000, NOW_MS, NOW_MS, NOW_MS + 5])
    producer.track("u1", "view", item_id="a")
    producer.track("u1", "view", item_id="b")
    producer.track("u1", "forget")
    producer.track("u1", "view", item_id="c")
    producer.track("u1", "view", item_id="d")
    received = [e.received_ms for e in sent(fake)]
    assert received == [NOW_MS, NOW_MS, NOW_MS, NOW_MS + 1, NOW_MS + 5]


def test_a_queued_forget_stamped_when_the_user_asked_still_removes_what_came_before(
    settings: Settings,
) -> None:
    # The collector received a view at NOW_MS; the shop's backend sends the user's erasure request
    # 5 s later, stamped with when the user asked, two minutes earlier.
    collected = Event("c-view", "u1", EventType.VIEW, NOW_MS - 1_000, item_id="sku-1", received_ms=NOW_MS)
    fake = FakeProducer()
    producer = with_clock(settings, fake, [NOW_MS + 5_000, NOW_MS + 6_000])
    producer.track("u1", "forget", ts_ms=NOW_MS - 120_000)
    # A purchase the backend tracks after it, stamped earlier than the forget (a queue behind).
    producer.track("u1", "purchase", item_id="sku-2", ts_ms=NOW_MS - 200_000)
    window = apply_events(Window(), [collected], WindowConfig()).window
    change = apply_events(window, sent(fake), WindowConfig())
    assert [e.event_id for e in change.window.events] == [sent(fake)[1].event_id]
    assert change.received_before_forget == 0


def test_a_refused_event_moves_no_receive_time(settings: Settings) -> None:
    fake = FakeProducer()
    producer = with_clock(settings, fake, [NOW_MS, NOW_MS])
    with pytest.raises(InvalidEvent):
        producer.track("u1", "forget", item_id="not allowed")
    producer.track("u1", "view", item_id="a")
    assert [e.received_ms for e in sent(fake)] == [NOW_MS]


def test_send_stamps_an_event_without_a_receive_time_and_keeps_a_given_one(settings: Settings) -> None:
    fake = FakeProducer()
    producer = with_clock(settings, fake, [NOW_MS, NOW_MS, NOW_MS])
    producer.send(Event("e1", "u1", EventType.VIEW, NOW_MS, item_id="a"))
    producer.send(Event("e2", "u1", EventType.FORGET, NOW_MS, received_ms=NOW_MS - 30_000))
    producer.send(Event("e3", "u1", EventType.VIEW, NOW_MS, item_id="b"))
    assert [e.received_ms for e in sent(fake)] == [NOW_MS, NOW_MS - 30_000, NOW_MS]


def test_send_refuses_a_receive_time_past_the_producers_clock(settings: Settings) -> None:
    fake = FakeProducer()
    producer = with_clock(settings, fake, [NOW_MS])
    future = NOW_MS + RECEIVE_TIME_TOLERANCE_MS + 1
    with pytest.raises(InvalidEvent) as raised:
        producer.send(Event("e1", "u1", EventType.VIEW, NOW_MS, item_id="a", received_ms=future))
    assert raised.value.field == "received_ms" and "leave received_ms out" in raised.value.reason
    assert fake.sent == []


@pytest.mark.parametrize("ahead_ms", [RECEIVE_TIME_TOLERANCE_MS + 1, 3_600_000, 20 * 3_600_000])
def test_an_event_time_ahead_of_the_receive_time_is_set_to_it_as_the_collector_does(
    settings: Settings, ahead_ms: int, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeProducer()
    producer = with_clock(settings, fake, [NOW_MS, NOW_MS])
    with caplog.at_level("WARNING"):
        event = producer.track("u1", "view", item_id="sku-1", ts_ms=NOW_MS + ahead_ms)
        kept = producer.track("u1", "view", item_id="sku-1", ts_ms=NOW_MS + RECEIVE_TIME_TOLERANCE_MS)
    assert (event.ts_ms, event.received_ms) == (NOW_MS, NOW_MS)
    assert kept.ts_ms == NOW_MS + RECEIVE_TIME_TOLERANCE_MS  # within the tolerance: as sent
    assert [e.ts_ms for e in sent(fake)] == [NOW_MS, NOW_MS + RECEIVE_TIME_TOLERANCE_MS]
    assert producer.clamped_events == 1
    assert "time zone" in caplog.text
