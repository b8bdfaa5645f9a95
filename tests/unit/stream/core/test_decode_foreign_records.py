"""Records other producers write: keys in another spelling of the user id, JSON-quoted keys, and
receive times past the record's own timestamp."""

from __future__ import annotations

import json
import unicodedata

import pytest

from stream.core.deadletter import SourcePosition
from stream.core.decode import RawMessage, decode_batch, normalised_key
from stream.core.events import RECEIVE_TIME_TOLERANCE_MS, EventLimits

NOW_MS = 1_764_000_000_000
NFC_JOSE = "Jos\u00e9"
NFD_JOSE = unicodedata.normalize("NFD", NFC_JOSE)


def record(
    key: bytes | None, user_id: object, *, received_ms: int | None = None, timestamp_ms: int | None = None
) -> RawMessage:
    doc: dict[str, object] = {
        "event_id": "e1",
        "user_id": user_id,
        "type": "view",
        "item_id": "i1",
        "ts_ms": NOW_MS,
    }
    if received_ms is not None:
        doc["received_ms"] = received_ms
    value = json.dumps(doc, ensure_ascii=False).encode()
    return RawMessage(key, value, SourcePosition("events", 0, 7), timestamp_ms=timestamp_ms)


@pytest.mark.parametrize(
    ("key", "user_id", "expected"),
    [
        (NFD_JOSE.encode(), NFD_JOSE, NFC_JOSE),  # macOS spells it NFD, key and value alike
        (NFD_JOSE.encode(), NFC_JOSE, NFC_JOSE),
        (NFC_JOSE.encode(), NFD_JOSE, NFC_JOSE),
        (b"4242.0", 4242.0, "4242"),  # pandas writes an integer column with NaNs as floats
        (b"4242.0", "4242", "4242"),
        (b"4242", 4242.0, "4242"),
    ],
)
def test_a_key_in_another_spelling_of_the_user_id_is_the_users(
    key: bytes, user_id: object, expected: str
) -> None:
    batch = decode_batch([record(key, user_id)], limits=EventLimits(), now_ms=NOW_MS)
    assert batch.dead_letters == []
    assert [e.user_id for e in batch.events] == [expected]
    assert normalised_key(key) == expected.encode()


def test_a_json_quoted_key_is_dead_lettered_naming_the_converter() -> None:
    batch = decode_batch([record(b'"fr-jsonkey"', "fr-jsonkey")], limits=EventLimits(), now_ms=NOW_MS)
    assert batch.events == []
    [letter] = batch.dead_letters
    assert letter.field == "user_id"
    assert "JSON-quoted" in letter.reason
    assert "StringConverter" in letter.reason
    assert letter.key == b'"fr-jsonkey"'


@pytest.mark.parametrize(
    ("key", "user_id", "says"),
    [
        (None, "u1", "no key"),
        (b"u2", "u1", "another user"),
        (b"fr-nl\n", "fr-nl", "no valid user id (must not have surrounding whitespace"),
        (b"\xff\xfe", "u1", "not UTF-8"),
        (b'"u2"', "u1", "another user"),  # quoted, but not this user's id either
        (b"4242.5", 4242, "another user"),
        (b"\x00\x00\x00\x00\x07\x02u1", "u1", "Confluent schema-registry wire format"),  # an Avro key
        (b'{"user_id": "u1"}', "u1", "JSON object (a Kafka Connect or Debezium struct key)"),
    ],
)
def test_a_key_naming_no_spelling_of_the_user_id_is_dead_lettered_saying_why(
    key: bytes | None, user_id: object, says: str
) -> None:
    batch = decode_batch([record(key, user_id)], limits=EventLimits(), now_ms=NOW_MS)
    assert batch.events == []
    [letter] = batch.dead_letters
    assert letter.field == "user_id"
    assert says in letter.reason
    assert "key each event by its user_id" in letter.reason


def test_ascii_keys_without_a_dot_are_their_own_spelling() -> None:
    for key in (b"u1", b"user-42", b"1e5", b" padded ", None):
        assert normalised_key(key) is key
    assert normalised_key(b"\xff") == b"\xff"  # names no id: left as it is, for the decoder to refuse


@pytest.mark.parametrize(
    ("received_ms", "timestamp_ms", "expected_ms", "clamped"),
    [
        (NOW_MS + 10**11, NOW_MS, NOW_MS, 1),  # years ahead: no forget would ever reach it
        (NOW_MS + RECEIVE_TIME_TOLERANCE_MS + 1, NOW_MS, NOW_MS, 1),
        (NOW_MS + RECEIVE_TIME_TOLERANCE_MS, NOW_MS, NOW_MS + RECEIVE_TIME_TOLERANCE_MS, 0),
        (NOW_MS - 5_000, NOW_MS, NOW_MS - 5_000, 0),  # the collector's: before its record
        (NOW_MS + 10**11, None, NOW_MS, 1),  # no timestamp: the worker's clock bounds it
        (NOW_MS + 10**11, -1, NOW_MS, 1),  # Kafka's "no timestamp"
        (NOW_MS + 10**11, NOW_MS + 10**11, NOW_MS, 1),  # CreateTime set to the event time
        (None, NOW_MS, None, 0),
    ],
)
def test_a_received_ms_past_the_records_timestamp_is_bounded_by_it(
    received_ms: int | None, timestamp_ms: int | None, expected_ms: int | None, clamped: int
) -> None:
    batch = decode_batch(
        [record(b"u1", "u1", received_ms=received_ms, timestamp_ms=timestamp_ms)],
        limits=EventLimits(),
        now_ms=NOW_MS,
    )
    assert batch.dead_letters == []
    assert [e.received_ms for e in batch.events] == [expected_ms]
    assert batch.clamped_received == clamped


@pytest.mark.parametrize(
    ("ts_ms", "timestamp_ms", "expected_ms", "clamped"),
    [
        # Stamped 2 h ahead (a naive local time read as UTC, a clock ahead): without a receive
        # time the window would read ts_ms as one, out of a forget's reach for 2 h.
        (NOW_MS + 2 * 3_600_000, NOW_MS, NOW_MS, 1),
        (NOW_MS + RECEIVE_TIME_TOLERANCE_MS, NOW_MS, None, 0),
        (NOW_MS - 3_600_000, NOW_MS, None, 0),  # a past event time stays the receive time
        (NOW_MS + 2 * 3_600_000, None, NOW_MS, 1),
        (NOW_MS + 50 * 60_000, NOW_MS + 50 * 60_000, NOW_MS, 1),  # CreateTime = event time
    ],
)
def test_an_event_time_past_the_records_timestamp_gives_a_receive_time(
    ts_ms: int, timestamp_ms: int | None, expected_ms: int | None, clamped: int
) -> None:
    doc = {"event_id": "e1", "user_id": "u1", "type": "view", "item_id": "i1", "ts_ms": ts_ms}
    message = RawMessage(
        b"u1", json.dumps(doc).encode(), SourcePosition("events", 0, 7), timestamp_ms=timestamp_ms
    )
    batch = decode_batch([message], limits=EventLimits(), now_ms=NOW_MS)
    assert batch.dead_letters == []
    assert [(e.ts_ms, e.received_ms) for e in batch.events] == [(ts_ms, expected_ms)]
    assert batch.clamped_received == clamped


EVENT = {"event_id": "e1", "user_id": "u1", "type": "view", "item_id": "i1", "ts_ms": NOW_MS}


def decoded(value: object) -> tuple[list[str], list[tuple[str, str]]]:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    batch = decode_batch(
        [RawMessage(b"u1", raw, SourcePosition("events", 0, 7))], limits=EventLimits(), now_ms=NOW_MS
    )
    return [e.event_id for e in batch.events], [(d.field, d.reason) for d in batch.dead_letters]


def test_an_event_in_a_kafka_connect_json_envelope_is_read() -> None:
    # JsonConverter with schemas.enable=true (its default) wraps each value so.
    envelope = {"schema": {"type": "struct", "fields": [], "optional": False}, "payload": EVENT}
    assert decoded(envelope) == (["e1"], [])
    # The envelope's event is validated as any other: a bad one is still a dead letter.
    assert decoded({"schema": None, "payload": {**EVENT, "type": "hover"}})[1][0][0] == "type"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ([EVENT, EVENT], "send each event as its own Kafka record"),
        (json.dumps(EVENT), "serialised twice"),
        ({"before": None, "after": EVENT, "op": "c", "source": {}}, "Debezium"),
        ({"specversion": "1.0", "type": "x", "source": "s", "id": "1", "data": EVENT}, "CloudEvent"),
    ],
)
def test_records_in_other_producers_shapes_are_dead_lettered_naming_the_shape_and_fix(
    value: object, named: str
) -> None:
    events, letters = decoded(value)
    assert events == []
    assert named in letters[0][1]
