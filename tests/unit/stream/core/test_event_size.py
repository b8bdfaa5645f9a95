"""One size and query policy for every entry point: the byte limit applies to the normalised event
(an over-long query cut first), and an event still over it names its largest field and the fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from stream.core.errors import InvalidEvent
from stream.core.events import (
    MAX_QUERY_CHARS,
    Event,
    EventLimits,
    EventType,
    check_event_size,
    decode_event,
    decode_event_noted,
    event_from_dict,
    largest_field,
    largest_raw_field,
    truncate_query,
)

NOW_MS = 1_764_000_000_000
LIMITS = EventLimits(max_bytes=2_048, window_max_bytes=262_144)


def doc(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "e-1",
        "user_id": "u1",
        "type": "view",
        "item_id": "sku-1",
        "ts_ms": NOW_MS,
    }
    event.update(changes)
    return {name: value for name, value in event.items() if value is not None}


def search(query: str) -> dict[str, Any]:
    return doc(type="search", item_id=None, query=query)


OVERSIZED = [
    pytest.param(doc(context={"blob": "x" * 4_000}), "context", id="ascii-context"),
    pytest.param(doc(context={"a": 1, "nested": {"list": ["y" * 50] * 60}}), "context", id="nested-context"),
    pytest.param(doc(context={"prices": [1e15] * 200}), "context", id="numbers-grow-when-written"),
    # 512 emoji of 4 bytes each: within MAX_QUERY_CHARS, over 2 KB.
    pytest.param(search("\U0001f600" * MAX_QUERY_CHARS), "query", id="emoji-query"),
    # Control characters, each written as a 6-byte \u escape (a query refuses them: GET /v1/search's rule).
    pytest.param(doc(context={"note": "a" + "\x01" * 400 + "a"}), "context", id="escaped-context"),
    # Ids within MAX_ID_CHARS (128) characters, of 4-byte emoji: over 2 KB together.
    pytest.param(
        doc(
            **{name: "\U0001f4e6" * 127 for name in ("event_id", "user_id", "session_id")},
            item_id="\U0001f4e6" * 128,
        ),
        "item_id",
        id="emoji-ids",
    ),
]


@pytest.mark.parametrize(("document", "field_name"), OVERSIZED)
def test_an_event_over_the_limit_names_its_largest_field_and_the_fix_at_every_entry(
    document: dict[str, Any], field_name: str
) -> None:
    raw = json.dumps(document).encode()
    decoders: list[Callable[[], object]] = [
        lambda: event_from_dict(document, limits=LIMITS, now_ms=NOW_MS),
        lambda: event_from_dict(document, limits=LIMITS, now_ms=NOW_MS, source_bytes=len(raw)),
        lambda: decode_event(raw, limits=LIMITS, now_ms=NOW_MS),
    ]
    raised = []
    for decode in decoders:
        with pytest.raises(InvalidEvent) as info:
            decode()
        raised.append(info.value)
    assert {(error.field, error.reason) for error in raised} == {(raised[0].field, raised[0].reason)}
    error = raised[0]
    assert error.field == field_name
    assert "over the limit of 2048 bytes" in error.reason
    assert f"its largest field, {field_name}, takes" in error.reason
    assert "shorten it, or raise PROFILESTREAM_EVENT_MAX_BYTES (now 2048" in error.reason
    assert "PROFILESTREAM_WINDOW_MAX_BYTES, 262144" in error.reason


@pytest.mark.parametrize(
    "query",
    [
        "x" * 20_000,  # over the byte limit as sent, 512 characters once cut
        "  gel pens " + "y" * 600 + "  ",
        "\U0001f600" * 5_000,  # 20 KB of emoji (4 bytes each): 2 KB once cut
        "word " * 2_000,
    ],
)
def test_an_over_long_query_is_cut_before_the_size_limit_applies(query: str) -> None:
    big = EventLimits(max_bytes=4_096)
    raw = json.dumps(search(query), ensure_ascii=False).encode()
    decoded = decode_event_noted(raw, limits=big, now_ms=NOW_MS)
    assert decoded.event.query == truncate_query(query)
    assert decoded.query_truncated
    assert len(decoded.event.to_json()) <= big.max_bytes
    assert decode_event(raw, limits=big, now_ms=NOW_MS) == decoded.event
    assert event_from_dict(search(query), limits=big, now_ms=NOW_MS) == decoded.event


@pytest.mark.parametrize("query", ["short", "q" * MAX_QUERY_CHARS, " padded " + "p" * (MAX_QUERY_CHARS - 8)])
def test_a_query_within_the_limit_is_not_counted_as_cut(query: str) -> None:
    decoded = decode_event_noted(json.dumps(search(query)).encode(), limits=LIMITS, now_ms=NOW_MS)
    assert not decoded.query_truncated


@pytest.mark.parametrize(
    ("document", "field_name"),
    [
        (doc(context={"blob": "x" * 3_000_000}), "context"),
        (search("q" * 3_000_000), "query"),
        (doc(item_id="i" * 3_000_000), "item_id"),
    ],
)
def test_a_record_too_large_to_parse_still_names_its_largest_field(
    document: dict[str, Any], field_name: str
) -> None:
    raw = json.dumps(document).encode()
    assert len(raw) > LIMITS.max_raw_bytes
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw, limits=LIMITS, now_ms=NOW_MS)
    assert info.value.field == field_name
    assert "shorten it" in info.value.reason
    assert largest_raw_field(raw) == field_name


@pytest.mark.parametrize(
    ("raw", "field_name"),
    [
        (b"x" * 100, "$"),
        (b'{"query": "a\\"type\\": b", "user_id": "u"}', "query"),
        (b'{"context" : {"k": "' + b"v" * 50 + b'"}, "event_id": "e"}', "context"),
    ],
)
def test_the_raw_scan_finds_schema_fields_only(raw: bytes, field_name: str) -> None:
    assert largest_raw_field(raw) == field_name


def test_largest_field_measures_encoded_bytes_not_characters() -> None:
    assert largest_field({"a": "x" * 10, "b": "\U0001f600" * 3}) == "b"  # 12 bytes against 10
    assert largest_field({}) == "$"


@pytest.mark.parametrize("size", [2_040, 2_047, 2_048, 2_049, 2_100])
def test_the_limit_is_exact_on_the_record_as_written(size: int) -> None:
    base = Event(event_id="e", user_id="u", type=EventType.VIEW, ts_ms=NOW_MS, item_id="i", context={"b": ""})
    filler = size - len(base.to_json())
    event = Event(
        event_id="e", user_id="u", type=EventType.VIEW, ts_ms=NOW_MS, item_id="i", context={"b": "x" * filler}
    )
    assert len(event.to_json()) == size
    if size <= LIMITS.max_bytes:
        check_event_size(event, LIMITS)
        check_event_size(event, LIMITS, source_bytes=size)
    else:
        with pytest.raises(InvalidEvent, match="over the limit of 2048 bytes"):
            check_event_size(event, LIMITS, source_bytes=size)


def test_at_the_ceiling_the_fix_says_shorten_only() -> None:
    ceiling = EventLimits(max_bytes=2_048, window_max_bytes=2_048)
    with pytest.raises(InvalidEvent) as info:
        event_from_dict(doc(context={"blob": "x" * 4_000}), limits=ceiling, now_ms=NOW_MS)
    assert "raise" not in info.value.reason
    assert "at its ceiling" in info.value.reason
