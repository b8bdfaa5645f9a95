"""The collector's HTTP contract with a fake producer: statuses, field-level errors, all-or-nothing."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from kafka.errors import KafkaTimeoutError

from stream.core.errors import ServiceUnavailable
from stream.core.events import EventLimits
from stream.core.settings import Settings, load_settings
from stream.ingest.body import check_content_type, parse_batch
from stream.ingest.collector import CollectorConfig, create_collector_app

NOW_MS = 1_764_000_000_000


def good(n: int = 0, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": f"e-{n}",
        "user_id": f"u{n % 3}",
        "type": "view",
        "item_id": "sku-1",
        "ts_ms": NOW_MS - 1000,
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


class DoneFuture:
    def __init__(self, error: Exception | None = None) -> None:
        self._error = error

    def get(self, timeout: float | None = None) -> Any:
        if self._error is not None:
            raise self._error
        return None

    def add_errback(self, f: Any, *args: Any, **kwargs: Any) -> None:
        if self._error is not None:
            f(self._error)


@dataclass
class FakeProducer:
    fail: Exception | None = None
    sent: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)

    def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None
    ) -> DoneFuture:
        if self.fail is None:
            self.sent.append((topic, key, value))
        return DoneFuture(self.fail)

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None

    def partitions_for(self, topic: str) -> set[int]:
        if self.fail is not None:
            raise self.fail
        return {0}


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


def post(app: Any, content: bytes, content_type: str = "application/json") -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            return await client.post("/v1/events", content=content, headers={"content-type": content_type})

    return asyncio.run(call())


def make_app(settings: Settings, producer: FakeProducer, **config: Any) -> Any:
    return create_collector_app(
        settings,
        producer_factory=lambda _: producer,
        config=CollectorConfig(**config),
        clock_ms=lambda: NOW_MS,
    )


def test_batch_is_produced_keyed_by_user_and_acknowledged(settings: Settings) -> None:
    producer = FakeProducer()
    batch = [good(n) for n in range(5)]
    response = post(make_app(settings, producer), json.dumps(batch).encode())
    assert response.status_code == 202
    assert response.json() == {"accepted": 5}
    assert [(t, k) for t, k, _ in producer.sent] == [("t.events", f"u{n % 3}".encode()) for n in range(5)]
    assert [json.loads(v or b"")["event_id"] for _, _, v in producer.sent] == [f"e-{n}" for n in range(5)]


def test_single_event_object_is_accepted(settings: Settings) -> None:
    producer = FakeProducer()
    response = post(make_app(settings, producer), json.dumps(good()).encode(), "text/plain;charset=UTF-8")
    assert response.status_code == 202
    assert len(producer.sent) == 1


@pytest.mark.parametrize(
    ("doc", "field_name"),
    [
        (good(event_id=None), "event_id"),
        (good(user_id=" u1"), "user_id"),
        (good(type="like"), "type"),
        (good(item_id=None), "item_id"),
        (good(type="search", item_id=None), "query"),
        (good(ts_ms=1_700_000_000), "ts_ms"),
        (good(ts_ms="soon"), "ts_ms"),
        (good(context=[1]), "context"),
        (good(colour="red"), "colour"),
        (good(v=2), "v"),
        ([1], "$"),
    ],
)
def test_schema_violations_get_422_naming_the_field(settings: Settings, doc: Any, field_name: str) -> None:
    producer = FakeProducer()
    response = post(make_app(settings, producer), json.dumps(doc).encode())
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == field_name
    assert error["index"] == 0
    assert error["reason"]
    assert producer.sent == []


def test_one_bad_event_rejects_the_whole_batch_and_names_each_index(settings: Settings) -> None:
    producer = FakeProducer()
    batch = [good(0), good(1, type="nope"), good(2), good(3, ts_ms=None)]
    response = post(make_app(settings, producer), json.dumps(batch).encode())
    assert response.status_code == 422
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "type"), (3, "ts_ms")]
    assert producer.sent == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"\xff\xfe\xfa", "application/json", 400),
        (b'{"ts_ms": NaN}', "application/json", 400),
        (b"[" + b" " * 1_100_000 + b"]", "application/json", 413),
        (b"[]", "application/json", 422),
        (b'"text"', "application/json", 422),
        (b"{}", "application/x-www-form-urlencoded", 415),
    ],
)
def test_malformed_bodies_get_a_clear_4xx(
    settings: Settings, body: bytes, content_type: str, status: int
) -> None:
    producer = FakeProducer()
    response = post(make_app(settings, producer), body, content_type)
    assert response.status_code == status
    (error,) = response.json()["errors"]
    assert error["field"] == "$"
    assert error["index"] is None
    assert error["reason"]
    assert producer.sent == []


def test_deep_nesting_under_the_size_limit_is_a_400(settings: Settings) -> None:
    response = post(make_app(settings, FakeProducer()), b"[" * 50_000 + b"]" * 50_000)
    assert response.status_code == 400
    assert "deeply" in response.json()["errors"][0]["reason"]


def test_too_many_events_is_413(settings: Settings) -> None:
    producer = FakeProducer()
    response = post(
        make_app(settings, producer, max_batch_events=3), json.dumps([good(n) for n in range(4)]).encode()
    )
    assert response.status_code == 413
    assert "over the limit of 3" in response.json()["errors"][0]["reason"]
    assert producer.sent == []


def test_an_event_over_the_size_limit_inside_a_batch_is_rejected(settings: Settings) -> None:
    big = good(1, context={"blob": "x" * 20_000})
    response = post(make_app(settings, FakeProducer()), json.dumps([good(0), big]).encode())
    assert response.status_code == 422
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "$")]


def test_kafka_not_acknowledging_gives_503_with_retry_after(settings: Settings) -> None:
    producer = FakeProducer(fail=KafkaTimeoutError("no ack"))
    response = post(make_app(settings, producer, retry_after_s=7), json.dumps(good()).encode())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert "did not acknowledge" in response.json()["errors"][0]["reason"]


def test_kafka_unreachable_at_connect_gives_503_and_fails_fast_afterwards(settings: Settings) -> None:
    attempts = []

    def factory(_: Settings) -> FakeProducer:
        attempts.append(1)
        raise ServiceUnavailable("Kafka at 127.0.0.1:1 did not answer")

    app = create_collector_app(settings, producer_factory=factory, config=CollectorConfig(retry_after_s=60))
    for _ in range(3):
        response = post(app, json.dumps(good()).encode())
        assert response.status_code == 503
        assert response.headers["retry-after"] == "60"
    assert len(attempts) == 1


def test_readiness_follows_kafka(settings: Settings) -> None:
    async def get(app: Any, path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as client:
            return await client.get(path)

    up = make_app(settings, FakeProducer())
    down = make_app(settings, FakeProducer(fail=KafkaTimeoutError("down")))
    assert asyncio.run(get(up, "/readyz")).status_code == 200
    assert asyncio.run(get(down, "/readyz")).status_code == 503
    assert asyncio.run(get(down, "/healthz")).status_code == 200


def test_content_type_parameters_are_ignored() -> None:
    assert check_content_type("application/json; charset=utf-8") is None
    assert check_content_type(None) is not None


def test_parse_batch_keeps_request_order() -> None:
    body = json.dumps([good(n) for n in range(10)]).encode()
    events = parse_batch(body, limits=EventLimits(), max_events=10, now_ms=NOW_MS)
    assert isinstance(events, list)
    assert [e.event_id for e in events] == [f"e-{n}" for n in range(10)]
