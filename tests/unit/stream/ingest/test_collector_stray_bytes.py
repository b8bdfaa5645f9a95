"""A raw byte that is not UTF-8 inside one event's string (a Latin-1 "é" sent without its charset)
rejects that event alone, naming the field and the fix; the batch's other events land."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stream.core.settings import Settings, load_settings
from stream.ingest.body import Rejection, parse_json
from tests.support.fakes import FakeProducer
from tests.unit.stream.ingest.test_collector_http_edges import make_app, produced, request

NOW_MS = 1_764_000_000_000


def view(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"e-{n}",
        "user_id": "u1",
        "type": "view",
        "item_id": "i1",
        "ts_ms": NOW_MS - 1000,
    } | fields


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


def latin1(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("latin-1")


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (view(2, item_id="caf\u00e9"), "item_id"),
        (view(2, context={"page": {"title": "Caf\u00e9"}}), "context.page.title"),
        (view(2, context={"r\u00e9f": "x"}), "context.r\\xe9f"),
    ],
)
def test_one_event_with_a_stray_byte_is_rejected_alone(
    settings: Settings, bad: dict[str, Any], field: str
) -> None:
    producer = FakeProducer()
    body = (
        b"[" + json.dumps(view(1)).encode() + b"," + latin1(bad) + b"," + json.dumps(view(3)).encode() + b"]"
    )
    response = request(make_app(settings, producer), body, [("content-type", "application/json")])
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted"] == 2
    [rejected] = answer["rejected"]
    assert rejected["index"] == 1
    assert rejected["field"] == field
    assert "0xE9, which is not UTF-8" in rejected["reason"]
    assert "send the body as UTF-8, or declare its charset (Content-Type:" in rejected["reason"]
    assert [event["event_id"] for event in produced(producer)] == ["e-1", "e-3"]


def test_a_single_event_with_a_stray_byte_is_a_422_naming_the_field(settings: Settings) -> None:
    producer = FakeProducer()
    response = request(
        make_app(settings, producer),
        latin1(view(1, item_id="caf\u00e9")),
        [("content-type", "application/json")],
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "item_id"
    assert "not UTF-8" in error["reason"]
    assert producer.sent == []


def test_a_broken_body_with_a_stray_byte_is_still_the_400_naming_the_byte() -> None:
    # No JSON even with the byte read: the request is refused whole, as before.
    rejection = parse_json(b'[{"item_id": "caf\xe9"')
    assert isinstance(rejection, Rejection)
    assert "not UTF-8 text (invalid continuation byte at byte 17)" in json.dumps(rejection.to_dict())


def test_the_charset_declared_still_reads_the_byte(settings: Settings) -> None:
    producer = FakeProducer()
    body = b"[" + json.dumps(view(1)).encode() + b"," + latin1(view(2, item_id="caf\u00e9")) + b"]"
    response = request(
        make_app(settings, producer), body, [("content-type", "application/json; charset=latin-1")]
    )
    assert response.status_code == 202, response.text
    assert [event["item_id"] for event in produced(producer)] == ["i1", "caf\u00e9"]


@pytest.mark.parametrize("name", [b"r\xe9f", b"r\\udce9f"])
def test_an_envelope_field_with_a_stray_byte_is_named_escaped(settings: Settings, name: bytes) -> None:
    # The name cannot be written in the UTF-8 answer as read: escaped, not a 500.
    body = b'{"events": [' + json.dumps(view(1)).encode() + b'], "' + name + b'": 1}'
    response = request(make_app(settings, FakeProducer()), body, [("content-type", "application/json")])
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "r\\udce9f"
