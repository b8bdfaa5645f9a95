"""A user id that is a program's text for an unset value ("undefined", "null", "None", "NaN",
"[object Object]") is refused naming the field at every entry point: each visitor a tracker bug
sends it for would otherwise share one profile and see the others' recommendations."""

from __future__ import annotations

import json

import pytest

from stream.core.errors import InvalidEvent
from stream.core.events import EventLimits, decode_event, event_from_dict
from stream.core.settings import Settings, load_settings
from tests.support.fakes import FakeProducer
from tests.unit.stream.ingest.test_collector_bodies import NOW_MS, good, make_app, post, produced

UNSET = ["undefined", "null", "None", "NaN", "[object Object]"]


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


@pytest.mark.parametrize("text", UNSET)
def test_the_collector_rejects_the_event_alone(settings: Settings, text: str) -> None:
    producer = FakeProducer()
    body = json.dumps([good(0), good(1, user_id=text)]).encode()
    response = post(make_app(settings, producer), "/v1/events", body)
    assert response.status_code == 202, response.text
    [rejected] = response.json()["rejected"]
    assert (rejected["index"], rejected["field"]) == (1, "user_id")
    assert "unset value" in rejected["reason"]
    assert [e["event_id"] for e in produced(producer)] == ["e-0"]


@pytest.mark.parametrize("text", UNSET)
def test_the_record_decoder_and_the_identify_target_refuse_it(text: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(json.dumps(good(1, user_id=text)).encode(), limits=EventLimits(), now_ms=NOW_MS)
    assert caught.value.field == "user_id"
    login = good(2, type="identify", item_id=None, known_user_id=text)
    with pytest.raises(InvalidEvent) as caught:
        event_from_dict(login, limits=EventLimits(), now_ms=NOW_MS)
    assert caught.value.field == "known_user_id"


@pytest.mark.parametrize("text", ["nullable", "Undefined-7", "none", "u-null"])
def test_ids_that_only_look_alike_are_ids(text: str) -> None:
    event = event_from_dict(good(1, user_id=text), limits=EventLimits(), now_ms=NOW_MS)
    assert event.user_id == text
