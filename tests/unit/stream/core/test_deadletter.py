"""Dead letters are bounded copies: never larger than a Kafka record, whatever was rejected."""

from __future__ import annotations

import hashlib

from stream.core.deadletter import (
    HEADER_ORIGINAL_BYTES,
    HEADER_ORIGINAL_SHA256,
    HEADER_REASON,
    HEADER_SOURCE,
    HEADER_TRUNCATED,
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
    dict(record.headers)[HEADER_REASON].decode()  # cut on a character boundary
