"""One policy for control characters in a search query: GET /v1/search refuses "red\\x00shoes"
(422 "q contains control characters"), and so does every event entry point, rejecting the event
alone and naming `query`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stream.core.errors import InvalidEvent
from stream.core.events import EventLimits, event_from_dict
from stream.core.settings import Settings, load_settings
from stream.serving.search import clean_query
from tests.support.fakes import FakeProducer
from tests.unit.stream.ingest.test_collector_http_edges import make_app, produced, request

NOW_MS = 1_764_000_000_000
TEXTS = [
    ("red\x00shoes", False),
    ("red\tshoes", True),  # tabs and line breaks inside read as a space, on both sides
    ("red\r\n\nshoes", True),
    ("red\x1bshoes", False),
    ("shoes\x07", True),  # a control at an edge is trimmed with the other invisible edges
    ("  red shoes\n", True),  # whitespace at the edges is trimmed, on both sides
    ("red\x7fshoes", True),  # DEL is no C0 control: both sides take it
    ("caf\u00e9 cr\u00e8me", True),
]


def search(n: int, query: str) -> dict[str, Any]:
    return {"event_id": f"e-{n}", "user_id": "u1", "type": "search", "query": query, "ts_ms": NOW_MS - 1000}


def test_tabs_and_line_breaks_inside_read_as_one_space_on_both_sides() -> None:
    assert clean_query("red\t\tshoes\r\nsize 9") == "red shoes size 9"
    event = event_from_dict(search(1, "red\t\tshoes\r\nsize 9"), limits=EventLimits(), now_ms=NOW_MS)
    assert event.query == "red shoes size 9"


def search_accepts(text: str) -> bool:
    try:
        clean_query(text)
    except ValueError:
        return False
    return True


def event_accepts(text: str) -> bool:
    try:
        event_from_dict(search(1, text), limits=EventLimits(), now_ms=NOW_MS)
    except InvalidEvent as exc:
        assert exc.field == "query"
        assert "control characters" in exc.reason
        return False
    return True


@pytest.mark.parametrize(("text", "accepted"), TEXTS)
def test_search_and_events_agree_on_control_characters(text: str, accepted: bool) -> None:
    assert search_accepts(text) is accepted
    assert event_accepts(text) is accepted


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


def test_the_collector_rejects_such_a_search_alone(settings: Settings) -> None:
    producer = FakeProducer()
    body = json.dumps([search(1, "red shoes"), search(2, "red\u0000shoes")]).encode()
    response = request(make_app(settings, producer), body, [("content-type", "application/json")])
    assert response.status_code == 202, response.text
    [rejected] = response.json()["rejected"]
    assert (rejected["index"], rejected["field"]) == (1, "query")
    assert "send plain text" in rejected["reason"]
    assert [event["query"] for event in produced(producer)] == ["red shoes"]
