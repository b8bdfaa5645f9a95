"""Records in formats other producers write are dead-lettered with a reason naming the format."""

from __future__ import annotations

import struct

import pytest

from stream.core.deadletter import SourcePosition
from stream.core.decode import RawMessage, decode_batch, foreign_format
from stream.core.events import EventLimits

SOURCE = SourcePosition("events", 0, 7)


def _reason(value: bytes | None) -> str:
    batch = decode_batch([RawMessage(b"u1", value, SOURCE)], limits=EventLimits(), now_ms=1_700_000_000_000)
    assert not batch.events
    (letter,) = batch.dead_letters
    return letter.reason


@pytest.mark.parametrize("schema_id", [1, 42, 100_000])
@pytest.mark.parametrize("body", [b"\x02\x06abc", b"\x0a\x03abc\x10\x01", b""])
def test_a_confluent_framed_value_names_the_schema_registry_format(schema_id: int, body: bytes) -> None:
    reason = _reason(b"\x00" + struct.pack(">I", schema_id) + body)
    assert "Confluent schema-registry wire format" in reason
    assert f"schema id {schema_id}" in reason
    assert "send JSON (schema v1)" in reason


def test_a_null_value_is_named_a_tombstone() -> None:
    reason = _reason(None)
    assert "null value" in reason and "tombstone" in reason


@pytest.mark.parametrize(
    "value",
    [
        b'{"event_id": 1',  # broken JSON
        b"\x82\xa4type\xa4view",  # msgpack
        b"\x0a\x03abc",  # protobuf without framing
        "{}".encode("utf-16-be"),  # UTF-16 starts with a zero byte, but is no framing
        b"",
    ],
)
def test_other_values_keep_the_generic_reason(value: bytes) -> None:
    assert foreign_format(value) is None
    assert "Confluent" not in _reason(value)
