"""The collector's OpenAPI document says which forms of a time it accepts (`stream.core.normalise`),
and every form it names is accepted: as ts_ms, as the envelope's sent_at_ms and as X-Sent-At-Ms."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stream.core.settings import Settings, load_settings
from stream.ingest.collector import create_collector_app
from tests.support.fakes import FakeProducer
from tests.unit.stream.ingest.test_collector import NOW_MS, good, make_app, post

CANONICAL_MS = 1_763_000_000_034
# Every form the descriptions name, with the ms it stands for.
FORMS: list[tuple[Any, int]] = [
    (CANONICAL_MS, CANONICAL_MS),
    (1763000000034.0, CANONICAL_MS),
    ("1763000000034", CANONICAL_MS),
    ("1.763000000034e12", CANONICAL_MS),
    ("2025-11-13T02:13:20.034Z", CANONICAL_MS),
    ("2025-11-13T04:13:20.034+02:00", CANONICAL_MS),
    ("2025-11-13", 1_762_992_000_000),
    ("2025-11-13 02:13:20.034 UTC", CANONICAL_MS),
]
FORM_IDS = [repr(form) for form, _ in FORMS]


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


def operation(settings: Settings) -> dict[str, Any]:
    app = create_collector_app(settings, producer_factory=lambda _: FakeProducer())
    return dict(app.openapi()["paths"]["/v1/events"]["post"])


def time_schemas(settings: Settings) -> dict[str, dict[str, Any]]:
    """The schema of each time the request can carry, by name."""
    post_op = operation(settings)
    event, _batch, envelope = post_op["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    header = next(p for p in post_op["parameters"] if p["name"] == "X-Sent-At-Ms")
    return {
        "ts_ms": event["properties"]["ts_ms"],
        "received_ms": event["properties"]["received_ms"],
        "sent_at_ms": envelope["properties"]["sent_at_ms"],
        "X-Sent-At-Ms": {**header["schema"], "description": header["description"], "in": header["in"]},
    }


@pytest.mark.parametrize("name", ["ts_ms", "received_ms", "sent_at_ms", "X-Sent-At-Ms"])
def test_every_time_describes_the_forms_it_accepts(settings: Settings, name: str) -> None:
    schema = time_schemas(settings)[name]
    # The canonical form stays the schema's type: what schema-driven clients and tests generate.
    assert schema["type"] == "integer"
    description = schema["description"]
    for form, _ in FORMS:
        assert (json.dumps(form) if isinstance(form, str) else str(form)) in description, form
    assert "without a zone is UTC" in description
    assert "a fraction of a ms" in description
    assert "signed 64-bit" in description


def test_the_header_is_documented_as_an_optional_header(settings: Settings) -> None:
    header = time_schemas(settings)["X-Sent-At-Ms"]
    assert header["in"] == "header"
    assert header["minimum"] == 0
    assert "sent_at_ms wins over it" in header["description"]


@pytest.mark.parametrize(("form", "ms"), FORMS, ids=FORM_IDS)
def test_every_documented_form_is_accepted_as_ts_ms(settings: Settings, form: Any, ms: int) -> None:
    producer = FakeProducer()
    response = post(make_app(settings, producer), json.dumps([good(0, ts_ms=form)]).encode())
    assert response.status_code == 202, response.text
    assert response.json()["clamped"] == 0
    assert json.loads(producer.sent[0][2] or b"")["ts_ms"] == ms


@pytest.mark.parametrize(("form", "ms"), FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("where", ["envelope", "header"])
def test_every_documented_form_is_accepted_as_the_send_time(
    settings: Settings, form: Any, ms: int, where: str
) -> None:
    producer = FakeProducer()
    # Sent 500 ms after the event by the client's clock: received at NOW_MS, it happened at NOW_MS - 500.
    events = [good(0, ts_ms=ms - 500)]
    body: object = events
    headers: dict[str, str] = {}
    if where == "envelope":
        body = {"sent_at_ms": form, "events": events}
    else:
        headers = {"X-Sent-At-Ms": str(form)}
    response = post(make_app(settings, producer), json.dumps(body).encode(), headers=headers)
    assert response.status_code == 202, response.text
    assert json.loads(producer.sent[0][2] or b"")["ts_ms"] == NOW_MS - 500


@pytest.mark.parametrize("sent", [*[form for form, _ in FORMS], "soon", -5, None], ids=repr)
def test_received_ms_is_replaced_whatever_its_form(settings: Settings, sent: Any) -> None:
    producer = FakeProducer()
    response = post(make_app(settings, producer), json.dumps([good(0, received_ms=sent)]).encode())
    assert response.status_code == 202, response.text
    assert json.loads(producer.sent[0][2] or b"")["received_ms"] == NOW_MS
