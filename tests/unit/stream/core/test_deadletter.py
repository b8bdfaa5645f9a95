"""Dead letters are bounded copies: never larger than a Kafka record, whatever was rejected."""

from __future__ import annotations

import hashlib

from stream.core.deadletter import (
    HEADER_ORIGINAL_BYTES,
    HEADER_ORIGINAL_HEADERS_DROPPED,
    HEADER_ORIGINAL_SHA256,
    HEADER_REASON,
    HEADER_SOURCE,
    HEADER_TRUNCATED,
    MAX_ORIGINAL_HEADERS,
    MAX_ORIGINAL_HEADERS_BYTES,
    DeadLetter,
    SourcePosition,
)
from stream.core.settings import RECORD_OVERHEAD_BYTES, load_settings

SOURCE = SourcePosition("events", 3, 42)


def test_f20_a_1mb_record_becomes_a_dead_letter_that_fits_one_kafka_record() -> None:
    raw = b'{"context":{"k":"' + b"x" * 1_024_400 + b'"}}'
    settings = load_settings({})
    letter = DeadLetter(b"fake-user-bigctx", raw, "$", "event is too big", SOURCE)
    record = letter.bounded(settings.dead_letter_max_payload_bytes)
    headers = dict(record.headers)
    assert record.value == raw[: settings.dead_letter_max_payload_bytes]
    assert headers[HEADER_ORIGINAL_BYTES] == str(len(raw)).encode()
    assert headers[HEADER_ORIGINAL_SHA256] == hashlib.sha256(raw).hexdigest().encode()
    assert headers[HEADER_TRUNCATED] == b"true"
    assert headers[HEADER_SOURCE] == b"events/3@42"
    assert record.size_bytes <= settings.dead_letter_max_payload_bytes + RECORD_OVERHEAD_BYTES
    assert record.size_bytes < settings.kafka_record_max_bytes


def test_a_small_rejected_record_is_copied_whole_for_replay() -> None:
    record = DeadLetter(b"u", b'{"bad":1}', "bad", "unknown field", SOURCE).bounded(65_536)
    assert record.value == b'{"bad":1}'
    assert dict(record.headers)[HEADER_TRUNCATED] == b"false"


def test_huge_keys_and_reasons_are_cut_too() -> None:
    letter = DeadLetter(b"k" * 500_000, b"v", "$", "\u00e9" * 300_000, SOURCE)
    record = letter.bounded(0)
    assert record.value == b""
    assert record.size_bytes < RECORD_OVERHEAD_BYTES
    (dict(record.headers)[HEADER_REASON] or b"").decode()  # cut on a character boundary


def test_a_dead_letter_keeps_the_rejected_records_own_headers_before_its_own() -> None:
    original = (("traceparent", b"00-4bf92f3577b34da6-00f067aa0ba902b7-01"), ("schema", None))
    record = DeadLetter(b"u", b"{}", "$", "why", SOURCE, original_headers=original).bounded(65_536)
    assert tuple(record.headers[:2]) == original  # as they were, null value included
    assert dict(record.headers)[HEADER_SOURCE] == b"events/3@42"
    assert HEADER_ORIGINAL_HEADERS_DROPPED not in dict(record.headers)


def test_original_headers_are_bounded_in_bytes_and_number_and_the_rest_counted() -> None:
    big = tuple((f"h{n}", b"v" * 1_000) for n in range(10))  # 10 KB, over MAX_ORIGINAL_HEADERS_BYTES
    empty = tuple(("", b"") for _ in range(100_000))  # no bytes, but their number is bounded
    for original in (big, empty):
        record = DeadLetter(b"u", b"{}", "$", "why", SOURCE, original_headers=original).bounded(0)
        kept = [h for h in record.headers if not h[0].startswith("profilestream-")]
        assert sum(len(n) + len(v or b"") for n, v in kept) <= MAX_ORIGINAL_HEADERS_BYTES
        assert len(kept) <= MAX_ORIGINAL_HEADERS
        dropped = dict(record.headers)[HEADER_ORIGINAL_HEADERS_DROPPED]
        assert dropped == str(len(original) - len(kept)).encode()
        assert record.size_bytes < RECORD_OVERHEAD_BYTES


def test_a_replayed_dead_letter_rejected_again_carries_each_profilestream_header_once() -> None:
    first = DeadLetter(b"u", b"{}", "type", "first reason", SOURCE).bounded(65_536)
    again = DeadLetter(b"u", b"{}", "ts_ms", "second reason", SOURCE, tuple(first.headers))
    names = [name for name, _ in again.bounded(65_536).headers]
    assert len(names) == len(set(names))
    assert dict(again.bounded(65_536).headers)[HEADER_REASON] == b"second reason"
