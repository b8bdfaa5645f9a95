from __future__ import annotations

import gzip
import json

import pytest

from stream.core.deadletter import HEADER_FIELD, HEADER_REASON, HEADER_SOURCE, SourcePosition
from stream.core.decode import RawMessage, decode_batch
from stream.core.events import EventLimits, truncate_query

NOW_MS = 1_764_000_000_000


def message(offset: int, value: bytes | None, key: bytes | None = b"u1") -> RawMessage:
    return RawMessage(key=key, value=value, source=SourcePosition("events", 2, offset))


def event_bytes(event_id: str, user_id: str = "u1") -> bytes:
    doc = {"event_id": event_id, "user_id": user_id, "type": "view", "item_id": "i1", "ts_ms": NOW_MS}
    return json.dumps(doc).encode()


def test_good_events_pass_and_bad_ones_become_dead_letters_in_order() -> None:
    batch = decode_batch(
        [
            message(10, event_bytes("a")),
            message(11, b"{not json"),
            message(12, event_bytes("b")),
            message(13, None),
        ],
        limits=EventLimits(),
        now_ms=NOW_MS,
    )
    assert [e.event_id for e in batch.events] == ["a", "b"]
    assert [d.source.offset for d in batch.dead_letters] == [11, 13]
    first = batch.dead_letters[0]
    assert first.raw == b"{not json"
    assert first.key == b"u1"
    headers = dict(first.headers())
    assert headers[HEADER_FIELD] == b"$"
    assert b"not valid JSON" in (headers[HEADER_REASON] or b"")
    assert headers[HEADER_SOURCE] == b"events/2@11"


def test_event_keyed_by_another_user_is_dead_lettered() -> None:
    batch = decode_batch(
        [message(1, event_bytes("a", user_id="u2"), key=b"u1"), message(2, event_bytes("b"), key=None)],
        limits=EventLimits(),
        now_ms=NOW_MS,
    )
    assert batch.events == []
    assert [d.field for d in batch.dead_letters] == ["user_id", "user_id"]
    assert "key" in batch.dead_letters[0].reason


def test_a_number_too_large_to_parse_is_a_dead_letter_naming_the_field_not_a_batch_failure() -> None:
    # A 5001-digit literal made json raise ValueError out of decode_batch: the worker halved the
    # batch down to this record and quarantined it as a processing failure.
    digits = "1" + "0" * 5000
    huge_ts = event_bytes("w-bigint").replace(str(NOW_MS).encode(), digits.encode())
    huge_price = event_bytes("w-price").replace(b"}", b', "context": {"price": ' + digits.encode() + b"}}")
    batch = decode_batch(
        [
            message(1, event_bytes("a")),
            message(2, huge_ts),
            message(3, huge_price),
            message(4, event_bytes("b")),
        ],
        limits=EventLimits(),
        now_ms=NOW_MS,
    )
    assert [e.event_id for e in batch.events] == ["a", "b"]
    assert [(d.source.offset, d.field) for d in batch.dead_letters] == [(2, "ts_ms"), (3, "context")]
    assert batch.dead_letters[0].reason.startswith("number too large (5001 digits); send ms since the epoch")
    assert batch.dead_letters[1].reason.startswith("context.price: number too large (5001 digits)")
    assert batch.dead_letters[0].raw == huge_ts


def search_bytes(event_id: str, query: str) -> bytes:
    doc = {"event_id": event_id, "user_id": "u1", "type": "search", "query": query, "ts_ms": NOW_MS}
    return json.dumps(doc, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("query", "cut"),
    [
        ("gel pens", False),
        ("q" * 512, False),
        ("q" * 600, True),
        ("  " + "w " * 800, True),
        ("x" * 40_000, True),  # over the 16 KB event limit as written, not once cut
        ("\U0001f600" * 6_000, True),  # 24 KB of emoji
    ],
)
def test_the_worker_cuts_an_over_long_query_as_the_collector_does_and_counts_it(
    query: str, cut: bool
) -> None:
    limits = EventLimits()
    batch = decode_batch(
        [message(1, event_bytes("a")), message(2, search_bytes("s", query)), message(3, event_bytes("b"))],
        limits=limits,
        now_ms=NOW_MS,
    )
    assert [e.event_id for e in batch.events] == ["a", "s", "b"]
    assert batch.dead_letters == []
    assert batch.events[1].query == truncate_query(query)
    assert batch.truncated_queries == int(cut)


@pytest.mark.parametrize(
    ("extra", "field_name"),
    [
        ({"context": {"blob": "x" * 20_000}}, "context"),
        ({"context": {"list": list(range(5_000))}}, "context"),
        ({"session_id": "s", "context": {"page": "p" * 17_000}}, "context"),
    ],
)
def test_an_oversized_record_is_a_dead_letter_naming_its_largest_field(
    extra: dict[str, object], field_name: str
) -> None:
    doc = {"event_id": "big", "user_id": "u1", "type": "view", "item_id": "i1", "ts_ms": NOW_MS, **extra}
    raw = json.dumps(doc).encode()
    batch = decode_batch(
        [message(1, event_bytes("a")), message(2, raw), message(3, event_bytes("b"))],
        limits=EventLimits(),
        now_ms=NOW_MS,
    )
    assert [e.event_id for e in batch.events] == ["a", "b"]
    [letter] = batch.dead_letters
    assert letter.field == field_name
    assert "PROFILESTREAM_EVENT_MAX_BYTES" in letter.reason
    assert dict(letter.headers())[HEADER_FIELD] == field_name.encode()


def test_a_record_too_large_to_parse_is_a_dead_letter_naming_its_largest_field() -> None:
    # f20: a ~1 MB record; and one past the parse bound (a topic with a larger max.message.bytes).
    for size in (1_000_000, 3_000_000):
        doc = {"event_id": "big", "user_id": "u1", "type": "view", "item_id": "i1", "ts_ms": NOW_MS}
        raw = json.dumps({**doc, "context": {"blob": "x" * size}}).encode()
        batch = decode_batch(
            [message(1, raw), message(2, event_bytes("b"))], limits=EventLimits(), now_ms=NOW_MS
        )
        assert [e.event_id for e in batch.events] == ["b"]
        assert [d.field for d in batch.dead_letters] == ["context"]


def test_a_dead_letter_carries_the_records_own_headers() -> None:
    trace = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    bad = RawMessage(b"u1", b"{not json", SourcePosition("events", 2, 5), headers=(trace,))
    letter = decode_batch([bad], limits=EventLimits(), now_ms=NOW_MS).dead_letters[0]
    assert letter.headers()[0] == trace


@pytest.mark.parametrize(
    ("value", "field"),
    [
        # A Latin-1 (or cp1252) producer: one byte per accented letter, the rest UTF-8 JSON.
        ('{"event_id":"a","user_id":"u1","type":"search","query":"café","ts_ms":%d}', "query"),
        (
            '{"event_id":"a","user_id":"u1","type":"view","item_id":"i1","context":{"page":"Übersicht"},'
            '"ts_ms":%d}',
            "context.page",
        ),
        (
            '{"event_id":"a","user_id":"u1","type":"view","item_id":"i1","context":{"réf":"x"},"ts_ms":%d}',
            "context.r\\xe9f",
        ),
    ],
)
def test_a_record_with_a_latin1_string_is_dead_lettered_naming_the_field_and_the_fix(
    value: str, field: str
) -> None:
    raw = (value % NOW_MS).encode("latin-1")
    letter = decode_batch([message(3, raw)], limits=EventLimits(), now_ms=NOW_MS).dead_letters[0]
    assert letter.field == field
    assert "not UTF-8" in letter.reason and "encode the record's value as UTF-8" in letter.reason
    assert letter.raw == raw  # the bytes as sent, for a replay once fixed


def test_a_gzipped_record_value_is_named_with_the_fix() -> None:
    raw = gzip.compress(event_bytes("a"))
    letter = decode_batch([message(3, raw)], limits=EventLimits(), now_ms=NOW_MS).dead_letters[0]
    assert "gzip-compressed" in letter.reason and "compression.type" in letter.reason


def test_a_record_that_is_not_json_even_read_leniently_still_names_the_byte() -> None:
    letter = decode_batch([message(3, b'{"query":"caf\xe9"')], limits=EventLimits(), now_ms=NOW_MS)
    assert letter.dead_letters[0].field == "$"
    assert "not UTF-8 text" in letter.dead_letters[0].reason
