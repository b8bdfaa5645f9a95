"""Request bodies the field sends that lost whole batches: NaN/Infinity in one event, gzip with
trailing NUL padding, BOM-less UTF-16/32, a device clock hours ahead; and what the 202 says
about each clamped event. Through the ASGI app, on /v1/events and the standard routes."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import httpx
import pytest

from stream.core.events import RECEIVE_TIME_TOLERANCE_MS
from stream.core.json_numbers import NonFiniteNumber, OversizedNumber, parse_json_constant, unsafe_number_path
from stream.core.settings import Settings, load_settings
from stream.ingest.body import clamp_reason
from tests.support.collector_app import collector_app
from tests.support.fakes import FakeProducer

NOW_MS = 1_764_000_000_000
HOUR_MS = 3_600_000


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


def make_app(settings: Settings, producer: FakeProducer, **config: Any) -> Any:
    return collector_app(settings, producer, NOW_MS, **config)


def post(
    app: Any,
    path: str,
    content: bytes,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            return await client.post(
                path, content=content, headers={"content-type": content_type, **(headers or {})}
            )

    return asyncio.run(call())


def good(n: int, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": f"e-{n}",
        "user_id": "u1",
        "type": "view",
        "item_id": "sku-1",
        "ts_ms": NOW_MS - 1000,
    }
    doc.update(changes)
    return doc


def produced(producer: FakeProducer) -> list[dict[str, Any]]:
    return [json.loads(v or b"") for _, _, v in producer.sent]


# --- 1. NaN / Infinity in one event --------------------------------------------------------------

CONSTANTS = ["NaN", "Infinity", "-Infinity"]


@pytest.mark.parametrize("constant", CONSTANTS)
@pytest.mark.parametrize(
    ("place", "field_name", "reason_start"),
    [
        ({"context": {"price": "@"}}, "context", "context.price: {c} is not a JSON number"),
        (
            {"context": {"cart": [{"price": "@"}]}},
            "context",
            "context.cart[0].price: {c} is not a JSON number",
        ),
        ({"ts_ms": "@"}, "ts_ms", "{c} is not a JSON number"),
        ({"item_id": "@"}, "item_id", "{c} is not a JSON number"),
        ({"v": "@"}, "v", ""),
    ],
)
@pytest.mark.parametrize("shape", ["array", "envelope"])
def test_a_non_json_constant_rejects_its_event_alone_naming_the_field(
    settings: Settings,
    constant: str,
    *,
    place: dict[str, Any],
    field_name: str,
    reason_start: str,
    shape: str,
) -> None:
    # json.dumps writes float("nan") as NaN by default: a missing price lost the whole batch (400).
    events = [good(0, **place), good(1), good(2)]
    doc: Any = events if shape == "array" else {"sent_at_ms": NOW_MS, "events": events}
    body = json.dumps(doc).replace('"@"', constant).encode()
    producer = FakeProducer()
    response = post(make_app(settings, producer), "/v1/events", body)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted"] == 2
    [error] = answer["rejected"]
    assert (error["index"], error["field"]) == (0, field_name)
    assert error["reason"].startswith(reason_start.format(c=constant)), error["reason"]
    assert constant in error["reason"]
    assert [e["event_id"] for e in produced(producer)] == ["e-1", "e-2"]


@pytest.mark.parametrize("constant", CONSTANTS)
def test_a_batch_of_only_such_events_is_a_422_listing_each(settings: Settings, constant: str) -> None:
    body = json.dumps([good(0, ts_ms="@"), good(1, context={"p": "@"})]).replace('"@"', constant).encode()
    response = post(make_app(settings, FakeProducer()), "/v1/events", body)
    assert response.status_code == 422
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(0, "ts_ms"), (1, "context")]


@pytest.mark.parametrize("constant", CONSTANTS)
def test_a_segment_batch_keeps_its_other_messages(settings: Settings, constant: str) -> None:
    def track(n: int, **extra: Any) -> dict[str, Any]:
        return {
            "type": "track",
            "messageId": f"m{n}",
            "userId": "u1",
            "event": "Product Viewed",
            "properties": {"product_id": f"p{n}"},
            "timestamp": "2025-11-24T16:00:00.000Z",
            **extra,
        }

    batch = {
        "batch": [
            track(0, timestamp="@"),  # rejected alone, naming Segment's field
            track(1, properties={"product_id": "p1", "price": "@"}),  # an unkept property: dropped
            track(2),
        ]
    }
    producer = FakeProducer()
    body = json.dumps(batch).replace('"@"', constant).encode()
    response = post(make_app(settings, producer), "/v1/batch", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 2
    [error] = answer["rejected"]
    assert (error["index"], error["field"]) == (0, "batch[0].timestamp")
    assert error["reason"].startswith(f"{constant} is not a JSON number")
    assert sorted(e["item_id"] for e in produced(producer)) == ["p1", "p2"]


@pytest.mark.parametrize("constant", CONSTANTS)
def test_the_placeholder_is_an_oversized_number_to_every_rule(constant: str) -> None:
    value = parse_json_constant(constant)
    assert isinstance(value, NonFiniteNumber) and isinstance(value, OversizedNumber)
    assert unsafe_number_path({"a": [1, value]}, "context") == (
        "context.a[1]",
        f"{constant} is not a JSON number (null is JSON's missing value)",
    )


# --- 2. gzip with trailing padding or several members -----------------------------------------------


def gz(*parts: bytes) -> bytes:
    return b"".join(gzip.compress(part) for part in parts)


BATCH = json.dumps([good(0), good(1)]).encode()


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (gz(BATCH) + b"\0", "gzip"),
        (gz(BATCH) + b"\0" * 511, "gzip"),
        (gz(BATCH) + b"\0" * 8192, "gzip"),
        (gz(BATCH[:7], BATCH[7:]) + b"\0" * 64, "gzip"),  # several members, then padding
        (gz(BATCH[:3], BATCH[3:9], BATCH[9:]), "gzip"),
        (gz(BATCH), "x-gzip"),
        (gz(gz(BATCH) + b"\0" * 100) + b"\0" * 100, "gzip, gzip"),  # padding in each layer
        (zlib.compress(BATCH) + b"\0" * 300, "deflate"),
    ],
)
def test_compressed_bodies_with_nul_padding_or_several_members_are_read(
    settings: Settings, body: bytes, encoding: str
) -> None:
    producer = FakeProducer()
    response = post(make_app(settings, producer), "/v1/events", body, headers={"content-encoding": encoding})
    assert response.status_code == 202, response.text
    assert [e["event_id"] for e in produced(producer)] == ["e-0", "e-1"]


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (gz(BATCH) + b"junk", "gzip"),
        (gz(BATCH) + b"\0\0\0x", "gzip"),
        (gz(BATCH) + b"\n", "gzip"),
        (gz(BATCH, BATCH[:5]) + b"\r\n", "gzip"),
        (zlib.compress(BATCH) + b"\0 ", "deflate"),
    ],
)
def test_other_trailing_bytes_are_a_400_saying_so(settings: Settings, body: bytes, encoding: str) -> None:
    producer = FakeProducer()
    response = post(make_app(settings, producer), "/v1/events", body, headers={"content-encoding": encoding})
    assert response.status_code == 400
    coding = encoding.rsplit(",", maxsplit=1)[-1].strip()
    assert f"trailing bytes after the {coding} data" in response.json()["errors"][0]["reason"]
    assert producer.sent == []


def test_padding_counts_against_the_body_limit(settings: Settings) -> None:
    body = gz(BATCH) + b"\0" * 70_000
    response = post(
        make_app(settings, FakeProducer(), max_body_bytes=65_536),
        "/v1/events",
        body,
        headers={"content-encoding": "gzip"},
    )
    assert response.status_code == 413


def test_several_members_share_one_decompressed_limit(settings: Settings) -> None:
    member = b" " * 40_000
    body = gz(b"[", member, member, b"]")
    response = post(
        make_app(settings, FakeProducer(), max_body_bytes=65_536),
        "/v1/events",
        body,
        headers={"content-encoding": "gzip"},
    )
    assert response.status_code == 413
    assert "decompressed" in response.json()["errors"][0]["reason"]


# --- 3. UTF-16 and UTF-32 without a byte-order mark ------------------------------------------------

TEXT = json.dumps([good(0, context={"note": "café €"}), good(1)], ensure_ascii=False)


@pytest.mark.parametrize(
    ("declared", "codec"),
    [
        ("utf-16", "utf-16-be"),  # RFC 2781: BOM-less UTF-16 is big-endian
        ("utf-16", "utf-16-le"),  # what Windows writes: told by JSON's zero bytes
        ("UTF-16", "utf-16"),  # with a BOM, in the machine's order
        ("utf16", "utf-16-be"),
        ("utf-32", "utf-32-be"),
        ("utf-32", "utf-32-le"),
        ("utf-16-be", "utf-16-be"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/events", "/v1/batch"])
def test_bom_less_utf16_and_utf32_are_read_in_their_byte_order(
    settings: Settings, declared: str, codec: str, path: str
) -> None:
    producer = FakeProducer()
    if path == "/v1/events":
        text = TEXT
    else:
        text = json.dumps(
            {"batch": [{"type": "track", "messageId": "m1", "userId": "u1", "event": "Product Viewed",
                        "properties": {"product_id": "p€"}}]},
            ensure_ascii=False,
        )  # fmt: skip
    content = text.encode(codec)
    response = post(make_app(settings, producer), path, content, f"application/json; charset={declared}")
    assert response.status_code in (200, 202), response.text
    if path == "/v1/events":
        assert produced(producer)[0]["context"] == {"note": "café €"}
    else:
        assert produced(producer)[0]["item_id"] == "p€"


@pytest.mark.parametrize(
    ("declared", "content", "named"),
    [
        ("windows-1252", TEXT.encode("utf-16"), "windows-1252"),  # UTF-16 with a BOM, labelled cp1252
        ("utf-16", TEXT.encode("utf-8") + (b" " if len(TEXT.encode()) % 2 else b""), "utf-16"),
        ("latin-1", b"\xef\xbb\xbf" + TEXT.encode("utf-8"), "latin-1"),  # a UTF-8 BOM read as text
        ("utf-32", ("x" + TEXT).encode("utf-32-be"), "utf-32"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/events", "/v1/track"])
def test_a_body_not_json_once_decoded_from_a_declared_charset_names_it(
    settings: Settings, declared: str, content: bytes, named: str, path: str
) -> None:
    response = post(
        make_app(settings, FakeProducer()), path, content, f"application/json; charset={declared}"
    )
    assert response.status_code == 400
    reason = response.json()["errors"][0]["reason"]
    assert named in reason and "charset" in reason, reason


def test_a_body_without_a_declared_charset_is_not_said_to_have_one(settings: Settings) -> None:
    response = post(make_app(settings, FakeProducer()), "/v1/events", b"{not json")
    assert "charset" not in response.json()["errors"][0]["reason"]


# --- 4 and 5. a device clock ahead: clamped at the receive time, each listed ---------------------------


@pytest.mark.parametrize(
    "ahead_ms",
    [RECEIVE_TIME_TOLERANCE_MS + 1, 10 * 60_000, HOUR_MS, 23 * HOUR_MS, 25 * HOUR_MS],
)
def test_an_event_time_after_its_receive_time_is_clamped_and_listed(
    settings: Settings, ahead_ms: int
) -> None:
    producer = FakeProducer()
    batch = [good(0), good(1, ts_ms=NOW_MS + ahead_ms), good(2, ts_ms=NOW_MS + RECEIVE_TIME_TOLERANCE_MS)]
    response = post(make_app(settings, producer), "/v1/events", json.dumps(batch).encode())
    assert response.status_code == 202
    answer = response.json()
    assert answer["clamped"] == 1
    [clamp] = answer["clamped_events"]
    assert (clamp["index"], clamp["field"], clamp["original"]) == (1, "ts_ms", NOW_MS + ahead_ms)
    assert f"{ahead_ms} ms after the receive time {NOW_MS}" in clamp["reason"]
    assert "sent_at_ms" in clamp["reason"]
    assert [e["ts_ms"] for e in produced(producer)] == [
        NOW_MS - 1000,
        NOW_MS,
        NOW_MS + RECEIVE_TIME_TOLERANCE_MS,  # within the tolerance: kept
    ]


def test_a_time_still_ahead_after_the_send_time_correction_is_clamped(settings: Settings) -> None:
    # The client's send time matches the server's, yet one event is stamped two hours ahead.
    batch = {"sent_at_ms": NOW_MS, "events": [good(0, ts_ms=NOW_MS + 2 * HOUR_MS), good(1)]}
    producer = FakeProducer()
    answer = post(make_app(settings, producer), "/v1/events", json.dumps(batch).encode()).json()
    [clamp] = answer["clamped_events"]
    assert (clamp["index"], clamp["original"]) == (0, NOW_MS + 2 * HOUR_MS)
    assert clamp["reason"].startswith("corrected by the send time, ")
    assert [e["ts_ms"] for e in produced(producer)] == [NOW_MS, NOW_MS - 1000]


@pytest.mark.parametrize(
    ("sent_at", "unit"),
    [(NOW_MS // 1000, "seconds"), (NOW_MS * 1000, "microseconds"), (NOW_MS * 1_000_000, "nanoseconds")],
)
@pytest.mark.parametrize("where", ["envelope", "header"])
def test_a_send_time_in_another_unit_is_named_not_blamed_on_the_device_clock(
    settings: Settings, sent_at: int, unit: str, where: str
) -> None:
    events = [good(0)]  # its event time in ms, as the client's clock gives it
    body: object = {"sent_at_ms": sent_at, "events": events} if where == "envelope" else events
    headers = {} if where == "envelope" else {"X-Sent-At-Ms": str(sent_at)}
    producer = FakeProducer()
    answer = post(
        make_app(settings, producer), "/v1/events", json.dumps(body).encode(), headers=headers
    ).json()
    [clamp] = answer["clamped_events"]
    assert f"send time {sent_at}" in clamp["reason"]
    assert f"looks like {unit} since the epoch" in clamp["reason"]
    assert "device clock" not in clamp["reason"]
    assert [e["ts_ms"] for e in produced(producer)] == [NOW_MS]


def test_a_smaller_future_skew_setting_still_bounds_the_tolerance() -> None:
    settings = load_settings({"PROFILESTREAM_EVENT_MAX_FUTURE_SKEW_S": "10"}, events_topic="t.events")
    producer = FakeProducer()
    batch = [good(0, ts_ms=NOW_MS + 30_000)]
    answer = post(make_app(settings, producer), "/v1/events", json.dumps(batch).encode()).json()
    assert answer["clamped"] == 1
    assert [e["ts_ms"] for e in produced(producer)] == [NOW_MS]


@pytest.mark.parametrize("ahead_ms", [RECEIVE_TIME_TOLERANCE_MS + 1, 23 * HOUR_MS])
def test_standard_routes_clamp_a_time_ahead_and_list_it_by_the_senders_field(
    settings: Settings, ahead_ms: int
) -> None:
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp((NOW_MS + ahead_ms) / 1000, UTC).isoformat().replace("+00:00", "Z")
    message = {
        "type": "track",
        "messageId": "m1",
        "userId": "u1",
        "event": "Product Viewed",
        "properties": {"product_id": "p1"},
        "timestamp": stamp,
    }
    producer = FakeProducer()
    response = post(make_app(settings, producer), "/v1/track", json.dumps(message).encode())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["clamped"] == 1
    [clamp] = answer["clamped_events"]
    assert (clamp["index"], clamp["field"], clamp["original"]) == (0, "timestamp", NOW_MS + ahead_ms)
    assert "after the receive time" in clamp["reason"]
    assert [e["ts_ms"] for e in produced(producer)] == [NOW_MS]


def test_the_openapi_answer_lists_clamped_events(settings: Settings) -> None:
    async def fetch() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=make_app(settings, FakeProducer()))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
            document: dict[str, Any] = (await client.get("/openapi.json")).json()
            return document

    schemas = asyncio.run(fetch())["components"]["schemas"]
    assert "clamped_events" in schemas["Accepted"]["required"]
    assert set(schemas["ClampedItem"]["properties"]) == {"index", "field", "original", "reason"}


@pytest.mark.parametrize(("factor", "unit"), [(1_000, "microseconds"), (1_000_000, "nanoseconds")])
def test_a_time_in_another_unit_is_clamped_with_the_unit_named(factor: int, unit: str) -> None:
    received = 1_796_000_000_000
    reason = clamp_reason(received * factor, received, 946_684_800_000, "fix the clock")
    assert f"looks like {unit}" in reason
    assert f"divide by {factor:,}" in reason


def test_a_clock_hours_ahead_is_still_named_as_a_clock() -> None:
    received = 1_796_000_000_000
    assert "device clock is ahead" in clamp_reason(received + 3_600_000, received, 0, "fix the clock")
