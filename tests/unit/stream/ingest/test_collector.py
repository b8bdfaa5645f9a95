"""The collector's HTTP contract with a fake producer: statuses, field-level errors, partial batches,
compressed bodies, receive time and clock skew, invisible text and over-long queries."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from kafka.errors import KafkaTimeoutError

from stream.core.errors import ServiceUnavailable
from stream.core.events import (
    MAX_QUERY_CHARS,
    EventLimits,
    event_from_dict,
    is_blank,
    normalise_query,
    trim_invisible,
)
from stream.core.settings import Settings, load_settings
from stream.ingest.body import Batch, check_content_type, parse_batch
from stream.ingest.collector import create_collector_app
from stream.ingest.gateway import CollectorConfig, KafkaGateway
from tests.support.fakes import FakeProducer

NOW_MS = 1_764_000_000_000
FIELD_CASES = Path(__file__).resolve().parents[3] / "support" / "field_cases"


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


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


def post(
    app: Any, content: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            return await client.post(
                "/v1/events", content=content, headers={"content-type": content_type, **(headers or {})}
            )

    return asyncio.run(call())


def make_app(settings: Settings, producer: FakeProducer, now_ms: int = NOW_MS, **config: Any) -> Any:
    return create_collector_app(
        settings,
        producer_factory=lambda _: producer,
        config=CollectorConfig(**config),
        clock_ms=lambda: now_ms,
    )


def produced(producer: FakeProducer) -> list[dict[str, Any]]:
    return [json.loads(v or b"") for _, _, v in producer.sent]


def test_batch_is_produced_keyed_by_user_and_acknowledged(settings: Settings) -> None:
    producer = FakeProducer()
    batch = [good(n) for n in range(5)]
    response = post(make_app(settings, producer), json.dumps(batch).encode())
    assert response.status_code == 202
    assert response.json() == {
        "accepted": 5,
        "rejected": [],
        "truncated": 0,
        "clamped": 0,
        "clamped_events": [],
    }
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


def test_the_valid_events_of_a_batch_land_and_each_bad_one_is_named(settings: Settings) -> None:
    producer = FakeProducer()
    batch = [good(0), good(1, type="nope"), good(2), good(3, ts_ms=None)]
    response = post(make_app(settings, producer), json.dumps(batch).encode())
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert [(e["index"], e["field"]) for e in body["rejected"]] == [(1, "type"), (3, "ts_ms")]
    assert all(e["reason"] for e in body["rejected"])
    assert [json.loads(v or b"")["event_id"] for _, _, v in producer.sent] == ["e-0", "e-2"]


def test_a_batch_without_one_valid_event_is_a_422_listing_each(settings: Settings) -> None:
    producer = FakeProducer()
    batch = [good(0, type="nope"), good(1, item_id=None)]
    response = post(make_app(settings, producer), json.dumps(batch).encode())
    assert response.status_code == 422
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(0, "type"), (1, "item_id")]
    assert producer.sent == []


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"\xff\xfe\xfa", "application/json", 400),
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
    assert response.status_code == 202
    rejected = response.json()["rejected"]
    # The field that makes it large, not "$": what the sender must shorten.
    assert [(e["index"], e["field"]) for e in rejected] == [(1, "context")]
    assert "blob" in rejected[0]["reason"]


def test_no_record_produced_is_over_the_event_limit_once_stamped(settings: Settings) -> None:
    # Just under the limit as sent; the receive time and "v" the collector adds must not push the
    # record past what the worker accepts.
    limit = settings.event_max_bytes
    doc = good(0, context={"blob": ""})
    doc["context"]["blob"] = "x" * (limit - len(json.dumps(doc, separators=(",", ":"))))
    assert len(json.dumps(doc, separators=(",", ":"))) == limit
    producer = FakeProducer()
    response = post(make_app(settings, producer), json.dumps([doc, good(1)], separators=(",", ":")).encode())
    assert response.status_code == 202
    assert all(len(v or b"") <= limit for _, _, v in producer.sent)
    assert [e["index"] for e in response.json()["rejected"]] == [0]


def test_kafka_not_acknowledging_gives_503_with_retry_after(settings: Settings) -> None:
    producer = FakeProducer(error=KafkaTimeoutError("no ack"))
    response = post(make_app(settings, producer, retry_after_s=7), json.dumps(good()).encode())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert "did not acknowledge" in response.json()["errors"][0]["reason"]


def test_cross_origin_pages_can_read_retry_after(settings: Settings) -> None:
    # The snippet backs off by Retry-After; without exposing it a page on the shop's origin sees none.
    producer = FakeProducer(error=KafkaTimeoutError("no ack"))
    app = make_app(settings, producer, retry_after_s=7, cors_origins=("https://shop.example",))
    response = post(app, json.dumps(good()).encode(), headers={"origin": "https://shop.example"})
    assert response.status_code == 503
    assert "retry-after" in response.headers["access-control-expose-headers"].lower()


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
    down = make_app(settings, FakeProducer(error=KafkaTimeoutError("down")))
    assert asyncio.run(get(up, "/readyz")).status_code == 200
    assert asyncio.run(get(down, "/readyz")).status_code == 503
    assert asyncio.run(get(down, "/healthz")).status_code == 200


class CachedMetadataProducer(FakeProducer):
    """A broker that went away: sends fail, but kafka-python still answers `partitions_for` from
    its cached metadata."""

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))


def test_readiness_fails_after_an_unacknowledged_publish_until_retry_after_or_a_good_publish(
    settings: Settings,
) -> None:
    now = [100.0]
    event = event_from_dict(good(), limits=EventLimits.from_settings(settings), now_ms=NOW_MS)
    producer = CachedMetadataProducer(error=KafkaTimeoutError("broker stopped"))
    gateway = KafkaGateway(
        settings, lambda _: producer, ack_timeout_s=0.1, retry_after_s=5, clock=lambda: now[0]
    )
    assert gateway.ready() is None  # the cached metadata alone says nothing is wrong
    with pytest.raises(ServiceUnavailable):
        gateway.publish([event])
    assert "did not acknowledge" in (gateway.ready() or "")
    now[0] += 5.0  # the Retry-After the 503 gave has passed: back to the metadata check
    assert gateway.ready() is None
    with pytest.raises(ServiceUnavailable):
        gateway.publish([event])
    producer.error = None
    gateway.publish([event])
    assert gateway.ready() is None


def test_content_type_parameters_are_ignored() -> None:
    assert check_content_type("application/json; charset=utf-8") is None
    assert check_content_type(None) is not None


def test_parse_batch_keeps_request_order() -> None:
    body = json.dumps([good(n) for n in range(10)]).encode()
    batch = parse_batch(body, limits=EventLimits(), max_events=10, received_ms=NOW_MS)
    assert isinstance(batch, Batch)
    assert [e.event_id for e in batch.events] == [f"e-{n}" for n in range(10)]


# --- compressed bodies (field case f01) ---------------------------------------------------------


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


FIELD_NOW_MS = 1_796_006_100_000  # just after the field cases were recorded


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # RFC 1950, what HTTP's "deflate" means
        ("deflate", deflate_raw),  # raw RFC 1951, what some clients send anyway
        ("gzip, identity", gzip.compress),
        ("identity", lambda data: data),
    ],
)
def test_compressed_bodies_are_decompressed(
    settings: Settings, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    producer = FakeProducer()
    body = json.dumps([good(n) for n in range(3)]).encode()
    response = post(make_app(settings, producer), compress(body), headers={"content-encoding": encoding})
    assert response.status_code == 202, response.text
    assert [e["event_id"] for e in produced(producer)] == ["e-0", "e-1", "e-2"]


def test_field_case_f01_gzip_file_lands_and_its_uncompressed_twin_labelled_gzip_is_a_400(
    settings: Settings,
) -> None:
    producer = FakeProducer()
    app = make_app(settings, producer, now_ms=FIELD_NOW_MS)
    gz = (FIELD_CASES / "f01-gzip-body.json.gz").read_bytes()
    plain = (FIELD_CASES / "f01-gzip-body.json").read_bytes()
    assert post(app, gz, headers={"content-encoding": "gzip"}).status_code == 202
    mislabelled = post(app, plain, headers={"content-encoding": "gzip"})
    assert mislabelled.status_code == 400
    assert "not gzip data" in mislabelled.json()["errors"][0]["reason"]
    unlabelled = post(app, gz)
    assert unlabelled.status_code == 400
    assert "send Content-Encoding: gzip" in unlabelled.json()["errors"][0]["reason"]
    assert [e["event_id"] for e in produced(producer)] == ["gz-1"]


def test_several_gzip_members_are_one_body(settings: Settings) -> None:
    producer = FakeProducer()
    text = json.dumps([good(0), good(1)]).encode()
    body = gzip.compress(text[:10]) + gzip.compress(text[10:])
    assert post(make_app(settings, producer), body, headers={"content-encoding": "gzip"}).status_code == 202
    assert len(producer.sent) == 2


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_small_compressed_bomb_is_a_413_naming_the_limit(settings: Settings, encoding: str) -> None:
    bomb_text = b"[" + b" " * 50_000_000 + b"]"
    bomb = gzip.compress(bomb_text) if encoding == "gzip" else zlib.compress(bomb_text)
    assert len(bomb) < 100_000
    producer = FakeProducer()
    response = post(
        make_app(settings, producer, max_body_bytes=65_536), bomb, headers={"content-encoding": encoding}
    )
    assert response.status_code == 413
    assert "over the limit of 65536 bytes" in response.json()["errors"][0]["reason"]
    assert producer.sent == []


@pytest.mark.parametrize(
    ("body", "encoding", "status", "fragment"),
    [
        (b'[{"event_id": "x"}]', "deflate", 400, "not deflate data"),
        (gzip.compress(b'[{"a": 1}]')[:-12], "gzip", 400, "ends inside"),
        (zlib.compress(b"[]") + b"junk", "deflate", 400, "trailing bytes after the deflate data"),
        (b"", "gzip", 400, "body is empty"),
        (b"[]", "br", 415, "gzip, deflate, identity"),
        (b"[]", "compress", 415, "gzip, deflate, identity"),
    ],
)
def test_wrong_or_unsupported_encodings_are_refused_with_the_fix(
    settings: Settings, body: bytes, encoding: str, status: int, fragment: str
) -> None:
    producer = FakeProducer()
    response = post(make_app(settings, producer), body, headers={"content-encoding": encoding})
    assert response.status_code == status
    assert fragment in response.json()["errors"][0]["reason"]
    assert producer.sent == []


# --- over-long queries (field case f03) and invisible text (f15) -----------------------------------


def test_field_case_f03_an_over_long_query_is_truncated_and_the_batch_lands(settings: Settings) -> None:
    batch = json.loads((FIELD_CASES / "f03-one-long-query-in-a-batch.json").read_bytes())
    producer = FakeProducer()
    response = post(make_app(settings, producer, now_ms=FIELD_NOW_MS), json.dumps(batch).encode())
    assert response.status_code == 202
    assert response.json() == {
        "accepted": 20,
        "rejected": [],
        "truncated": 1,
        "clamped": 0,
        "clamped_events": [],
    }
    long_query = next(e["query"] for e in batch if "query" in e)
    [sent] = [e for e in produced(producer) if "query" in e]
    assert sent["query"] == long_query.strip()[:MAX_QUERY_CHARS]
    assert len(sent["query"]) == MAX_QUERY_CHARS


INVISIBLE = ["\u200b", "\u200b\u200b\u200b", "\u200b\ufeff", "\u2060", "\u3000", "\u00a0 \u200c\u200d", " \t"]


def test_field_case_f15_invisible_only_text_is_empty_in_every_text_field(settings: Settings) -> None:
    cases = json.loads((FIELD_CASES / "f15-invisible-only-queries.json").read_bytes())
    queries = [*cases["zero_width_queries"], *INVISIBLE]
    batch = [good(0, type="search", item_id=None, query=q) for q in queries]
    batch += [good(1, user_id=v) for v in INVISIBLE] + [good(2, item_id=v) for v in INVISIBLE]
    batch.append(good(3, type="search", item_id=None, query=cases["emoji_only"]))  # visible: valid
    producer = FakeProducer()
    response = post(make_app(settings, producer), json.dumps(batch).encode())
    assert response.status_code == 202
    rejected = response.json()["rejected"]
    assert [e["index"] for e in rejected] == list(range(len(batch) - 1))
    assert all("empty" in e["reason"] for e in rejected)
    assert [e["query"] for e in produced(producer)] == [cases["emoji_only"]]


# --- receive time and clock skew (snippet-harness MODE=clockahead) ---------------------------------


def test_every_event_carries_the_collectors_receive_time(settings: Settings) -> None:
    producer = FakeProducer()
    batch = [good(0), good(1, received_ms=5)]  # a client's own value is replaced
    assert post(make_app(settings, producer), json.dumps(batch).encode()).status_code == 202
    assert [e["received_ms"] for e in produced(producer)] == [NOW_MS, NOW_MS]


DAY_AND_AN_HOUR_MS = 25 * 3600 * 1000


@pytest.mark.parametrize("where", ["envelope", "header"])
def test_a_client_clock_a_day_fast_is_corrected_from_its_send_time(settings: Settings, where: str) -> None:
    client_now = NOW_MS + DAY_AND_AN_HOUR_MS
    events = [good(n, ts_ms=client_now - 1000 * (5 - n)) for n in range(5)]
    producer = FakeProducer()
    if where == "envelope":
        response = post(
            make_app(settings, producer), json.dumps({"sent_at_ms": client_now, "events": events}).encode()
        )
    else:
        response = post(
            make_app(settings, producer),
            json.dumps(events).encode(),
            headers={"x-sent-at-ms": str(client_now)},
        )
    assert response.status_code == 202, response.text
    assert response.json()["clamped"] == 0
    assert [e["ts_ms"] for e in produced(producer)] == [NOW_MS - 1000 * (5 - n) for n in range(5)]


def test_impossible_times_without_a_send_time_are_clamped_and_counted(settings: Settings) -> None:
    batch = [
        good(0, ts_ms=NOW_MS + DAY_AND_AN_HOUR_MS),  # a clock a day fast
        good(1, ts_ms=1_700_000_000),  # seconds, or a phone whose clock reset
        good(2, ts_ms=NOW_MS - 5000),  # fine
    ]
    producer = FakeProducer()
    app = make_app(settings, producer)
    response = post(app, json.dumps(batch).encode())
    assert response.status_code == 202
    answer = response.json()
    assert (answer["accepted"], answer["rejected"], answer["clamped"]) == (3, [], 2)
    assert [(c["index"], c["field"], c["original"]) for c in answer["clamped_events"]] == [
        (0, "ts_ms", NOW_MS + DAY_AND_AN_HOUR_MS),
        (1, "ts_ms", 1_700_000_000),
    ]
    assert [e["ts_ms"] for e in produced(producer)] == [NOW_MS, NOW_MS, NOW_MS - 5000]

    async def metrics() -> str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as client:
            return (await client.get("/metrics")).text

    text = asyncio.run(metrics())
    assert 'profilestream_collector_events_total{outcome="clamped"} 2.0' in text
    assert 'profilestream_collector_events_total{outcome="accepted"} 3.0' in text


@pytest.mark.parametrize(
    ("body", "headers", "field_name"),
    [
        ({"sent_at_ms": "yesterday", "events": [good(0)]}, {}, "sent_at_ms"),
        ({"sent_at_ms": NOW_MS, "events": [good(0)], "extra": 1}, {}, "extra"),
        ({"events": good(0)}, {}, "events"),
        ([good(0)], {"x-sent-at-ms": "soon"}, "X-Sent-At-Ms"),
    ],
)
def test_a_malformed_envelope_or_send_time_is_a_422_naming_it(
    settings: Settings, body: Any, headers: dict[str, str], field_name: str
) -> None:
    producer = FakeProducer()
    response = post(make_app(settings, producer), json.dumps(body).encode(), headers=headers)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field_name]
    assert producer.sent == []


# --- numbers too large to parse --------------------------------------------------------------------

# 5001 digits: json.loads raised Python's own ValueError and the whole body was a 400 on field "$".
BIG = "1" + "0" * 5000


def with_big_numbers(body: Any) -> bytes:
    return json.dumps(body).replace('"@BIG@"', BIG).encode()


def test_a_number_too_large_to_parse_rejects_its_event_alone_naming_the_field(settings: Settings) -> None:
    batch = [good(0), good(1, ts_ms="@BIG@"), good(2, context={"quantity": "@BIG@"}), good(3)]
    producer = FakeProducer()
    response = post(make_app(settings, producer), with_big_numbers(batch))
    assert response.status_code == 202, response.text
    rejected = response.json()["rejected"]
    assert [(e["index"], e["field"]) for e in rejected] == [(1, "ts_ms"), (2, "context")]
    assert rejected[0]["reason"].startswith("number too large (5001 digits); send ms since the epoch")
    assert rejected[1]["reason"].startswith("context.quantity: number too large (5001 digits)")
    assert [e["event_id"] for e in produced(producer)] == ["e-0", "e-3"]


def test_a_single_event_with_a_number_too_large_is_a_422_naming_the_field(settings: Settings) -> None:
    body = with_big_numbers(
        {"event_id": "w-bigint", "user_id": "u1", "type": "view", "item_id": "sku-1", "ts_ms": "@BIG@"}
    )
    response = post(make_app(settings, FakeProducer()), body)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["index"], error["field"]) == (0, "ts_ms")
    assert "int_max_str_digits" not in error["reason"]


def test_a_clients_own_huge_receive_time_is_replaced_like_any_other(settings: Settings) -> None:
    producer = FakeProducer()
    response = post(make_app(settings, producer), with_big_numbers([good(0, received_ms="@BIG@")]))
    assert response.status_code == 202
    assert [e["received_ms"] for e in produced(producer)] == [NOW_MS]


@pytest.mark.parametrize(
    ("body", "headers", "field_name"),
    [
        ({"sent_at_ms": "@BIG@", "events": [good(0)]}, {}, "sent_at_ms"),
        ({"sent_at_ms": 2**64, "events": [good(0)]}, {}, "sent_at_ms"),
        ([good(0)], {"x-sent-at-ms": BIG}, "X-Sent-At-Ms"),
    ],
    ids=["envelope-5001-digits", "envelope-2**64", "header-5001-digits"],
)
def test_a_send_time_too_large_is_a_422_naming_it(
    settings: Settings, body: Any, headers: dict[str, str], field_name: str
) -> None:
    producer = FakeProducer()
    response = post(make_app(settings, producer), with_big_numbers(body), headers=headers)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == field_name
    assert error["reason"].startswith("number too large (")
    assert "send ms since the epoch as an integer" in error["reason"]  # the one time rule
    assert producer.sent == []


def test_an_event_time_past_64_bits_is_rejected_not_clamped(settings: Settings) -> None:
    # A clock's wrong reading is clamped to the receive time; a number past 64 bits is no reading.
    producer = FakeProducer()
    response = post(make_app(settings, producer), json.dumps([good(0, ts_ms=2**64), good(1)]).encode())
    assert response.status_code == 202
    assert response.json()["clamped"] == 0
    assert [(e["index"], e["field"]) for e in response.json()["rejected"]] == [(0, "ts_ms")]


# --- fuzz: partial batches, compressed bodies, odd text ---------------------------------------------

BAD_CHANGES: list[dict[str, Any]] = [
    {"type": "like"},
    {"item_id": None},
    {"user_id": "\u200b\ufeff"},
    {"event_id": " padded"},
    {"ts_ms": "soon"},
    {"colour": "red"},
    {"type": "search", "item_id": None, "query": "\u3000\u2060"},
]


@given(
    plan=st.lists(st.one_of(st.none(), st.sampled_from(range(len(BAD_CHANGES)))), min_size=1, max_size=30),
    query=st.text(min_size=1, max_size=700).filter(lambda q: not is_blank(q) and q.isprintable()),
    encoding=st.sampled_from(["", "gzip", "deflate"]),
)
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_fuzz_each_valid_event_lands_and_each_invalid_one_is_named(
    settings: Settings, plan: list[int | None], query: str, encoding: str
) -> None:
    batch = []
    for n, bad in enumerate(plan):
        doc = good(n, type="search", item_id=None, query=query) if n % 2 else good(n)
        batch.append(good(n, **BAD_CHANGES[bad]) if bad is not None else doc)
    body = json.dumps(batch).encode()
    compressed = {"gzip": gzip.compress, "deflate": zlib.compress, "": lambda b: b}[encoding](body)
    producer = FakeProducer()
    response = post(
        make_app(settings, producer), compressed, headers={"content-encoding": encoding} if encoding else {}
    )
    valid = [n for n, bad in enumerate(plan) if bad is None]
    invalid = [n for n, bad in enumerate(plan) if bad is not None]
    if not valid:
        assert response.status_code == 422
        assert [e["index"] for e in response.json()["errors"]] == invalid
        return
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted"] == len(valid)
    assert [e["index"] for e in answer["rejected"]] == invalid
    sent = produced(producer)
    assert [e["event_id"] for e in sent] == [f"e-{n}" for n in valid]
    for event in sent:
        if "query" in event:
            # Trimmed at its edges, then cut ("0 " is stored as "0"), as every entry point does.
            assert event["query"] == normalise_query(query)
            assert len(event["query"]) <= MAX_QUERY_CHARS
    assert answer["truncated"] == sum(
        1 for e in sent if "query" in e and len(trim_invisible(query)) > MAX_QUERY_CHARS
    )


@given(
    data=st.one_of(
        st.binary(max_size=2000),
        st.builds(
            lambda n, cut: gzip.compress(json.dumps([good(i) for i in range(n)]).encode())[:cut],
            st.integers(1, 20),
            st.integers(0, 400),
        ),
        st.builds(
            lambda n, cut: zlib.compress(json.dumps([good(i) for i in range(n)]).encode())[:cut],
            st.integers(1, 20),
            st.integers(0, 400),
        ),
    ),
    encoding=st.sampled_from(["gzip", "deflate", "x-gzip", "gzip, deflate", "zstd"]),
)
@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_fuzz_any_bytes_under_any_encoding_get_an_answer_never_a_5xx(
    settings: Settings, data: bytes, encoding: str
) -> None:
    response = post(
        make_app(settings, FakeProducer(), max_body_bytes=4096), data, headers={"content-encoding": encoding}
    )
    assert response.status_code in {202, 400, 413, 415, 422}, response.text
    assert response.json()
