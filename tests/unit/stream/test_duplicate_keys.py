"""A JSON object that repeats a key (``"user_id": "alice", ..., "user_id": "mallory"``) is refused
with its event alone, naming the key, at the collector and in every record decoder (worker, replay):
parsers disagree on which copy counts (RFC 8259 section 4), so a proxy or audit log reading the
first would see another user than the worker, which kept the last."""

from __future__ import annotations

import json

import pytest

from stream.core.errors import InvalidEvent
from stream.core.events import EventLimits, decode_event
from stream.core.json_numbers import BoundedDecoder, first_duplicate_key, mark_duplicate_keys
from stream.core.settings import Settings, load_settings
from tests.support.fakes import FakeProducer
from tests.unit.stream.ingest.test_collector_bodies import NOW_MS, make_app, post, produced

GOOD = '{"event_id":"e-%d","user_id":"alice","type":"view","item_id":"sku-1","ts_ms":%d}'
TWICE_TOP = (
    '{"event_id":"e-%d","user_id":"alice","type":"view","item_id":"sku-1","ts_ms":%d,"user_id":"mallory"}'
)
TWICE_NESTED = (
    '{"event_id":"e-%d","user_id":"alice","type":"view","item_id":"sku-1","ts_ms":%d,'
    '"context":{"page":{"ref":"a","ref":"b"}}}'
)


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


@pytest.mark.parametrize(("template", "where"), [(TWICE_TOP, "$"), (TWICE_NESTED, "context.page")])
def test_the_collector_rejects_the_event_alone_naming_where(
    settings: Settings, template: str, where: str
) -> None:
    body = "[" + GOOD % (0, NOW_MS - 1000) + "," + template % (1, NOW_MS - 1000) + "]"
    producer = FakeProducer()
    response = post(make_app(settings, producer), "/v1/events", body.encode())
    assert response.status_code == 202, response.text
    [rejected] = response.json()["rejected"]
    assert (rejected["index"], rejected["field"]) == (1, where)
    assert "appears more than once" in rejected["reason"]
    assert [event["event_id"] for event in produced(producer)] == ["e-0"]


def test_a_repeated_envelope_key_is_refused(settings: Settings) -> None:
    body = f'{{"sent_at_ms": {NOW_MS}, "events": [], "events": [{GOOD % (0, NOW_MS - 1000)}]}}'
    response = post(make_app(settings, FakeProducer()), "/v1/events", body.encode())
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "events"


@pytest.mark.parametrize("template", [TWICE_TOP, TWICE_NESTED])
def test_a_record_decoder_refuses_it_alone(template: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event((template % (1, NOW_MS - 1000)).encode(), limits=EventLimits(), now_ms=NOW_MS)
    assert "appears more than once" in caught.value.reason
    assert decode_event((GOOD % (1, NOW_MS - 1000)).encode(), limits=EventLimits(), now_ms=NOW_MS)


def test_marking_keeps_what_json_loads_keeps() -> None:
    text = '{"a": 1, "b": {"c": 2, "c": 3}, "a": 4}'
    marked = BoundedDecoder(None, mark_duplicate_keys).decode(text)
    assert marked == json.loads(text)
    assert first_duplicate_key(marked) == ("$", "a")
    assert first_duplicate_key(
        BoundedDecoder(None, mark_duplicate_keys).decode('{"b": {"c": 2, "c": 3}}')
    ) == (
        "b",
        "c",
    )
