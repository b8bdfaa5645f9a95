"""Pure batch decoding: raw Kafka messages in, valid events and dead letters out.

The worker applies the policy of every entry point (`stream.core.events.decode_event_noted`): an
over-long query is cut and counted, an event over the byte limit once normalised is a dead letter
naming its largest field.

Two kinds of record other producers write get a reason of their own, since the generic one
("not UTF-8 text", "not valid JSON") would not tell their producer what to change: a null value
(a tombstone) and a value in the Confluent schema-registry wire format (`foreign_format`).

A key is the user's when it names the event's user_id by the id rule (`key_user_id`: NFD and NFC
spellings, "4242.0" and 4242 are one id); a JSON-quoted key gets a reason naming the converter
that writes it. An event's `received_ms` (or, without one, its `ts_ms`, which the window then reads as its
receive time) later than its record's timestamp (or the worker's clock, when earlier) plus
RECEIVE_TIME_TOLERANCE_MS is replaced by that time and counted: a far-future receive time would
put the event out of every forget's reach.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from stream.core.deadletter import DeadLetter, RecordHeaders, SourcePosition, header_pairs
from stream.core.errors import InvalidEvent
from stream.core.events import (
    RECEIVE_TIME_TOLERANCE_MS,
    DecodedEvent,
    Event,
    EventLimits,
    decode_doc,
    decode_event_noted,
    parse_event_json,
    valid_id,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawMessage:
    key: bytes | None
    value: bytes | None
    source: SourcePosition
    # The Kafka record's timestamp (ms; CreateTime is its producer's clock, LogAppendTime the
    # broker's); None or negative when the record has none.
    timestamp_ms: int | None = None
    # The record's headers as its client gave them, which a dead letter of it keeps: converted only
    # for a dead letter, not per record (stream.core.deadletter).
    headers: RecordHeaders = None


# Confluent's wire format: magic byte 0, then the schema id as a big-endian 32-bit integer.
_CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER_BYTES = 5


def foreign_format(value: bytes | None) -> str | None:
    """Why `value` is no event at all when it is a null value or Confluent-framed; None otherwise.

    Confluent framing is recognised by its magic byte 0 followed by a schema id below 2**24 (a
    zero second byte): no JSON text, and no UTF-16 one either, starts that way.
    """
    if value is None:
        return (
            "the Kafka message has a null value (a tombstone, as a compacted topic's delete "
            "marker); send each event as a JSON object (schema v1) and forgets as type 'forget'"
        )
    if len(value) >= _CONFLUENT_HEADER_BYTES and value[0] == _CONFLUENT_MAGIC and value[1] == 0:
        schema_id = int.from_bytes(value[1:_CONFLUENT_HEADER_BYTES], "big")
        return (
            f"the value is in the Confluent schema-registry wire format (magic byte 0, schema id "
            f"{schema_id}): Avro/Protobuf with a schema registry; send JSON (schema v1) instead"
        )
    return None


@dataclass(slots=True)
class DecodedBatch:
    events: list[Event] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Events accepted with their over-long query cut to MAX_QUERY_CHARS.
    truncated_queries: int = 0
    # Events whose received_ms lay past their record's timestamp plus RECEIVE_TIME_TOLERANCE_MS,
    # replaced by that timestamp.
    clamped_received: int = 0


def key_user_id(key: bytes) -> str | None:
    """The user id Kafka key `key` names: its UTF-8 text read by the id rule every entry point
    reads ids by (`valid_id`: non-ASCII text in Unicode form NFC, "4242.0" as "4242"); None when
    it is not UTF-8 or no valid id."""
    try:
        return valid_id(key.decode("utf-8"), "user_id")
    except (UnicodeDecodeError, InvalidEvent):
        return None


@functools.lru_cache(maxsize=65_536)
def _normalised_key(key: bytes) -> bytes:
    user_id = key_user_id(key)
    return key if user_id is None else user_id.encode()


def normalised_key(key: bytes | None) -> bytes | None:
    """`key` spelt as the user id it names (`key_user_id`), UTF-8; `key` itself when it names none.

    Keys repeat (users do), so those that the id rule may change are looked up in a bounded cache;
    an ASCII key without a "." (nearly all) is the id's own spelling and is returned at once.
    """
    if key is None or (key.isascii() and b"." not in key):
        return key
    return _normalised_key(key)


@dataclass(frozen=True, slots=True)
class DecodedMessage:
    """One message decoded: its event (None: refused) or its dead letter, and what was noted."""

    source: SourcePosition
    event: Event | None = None
    dead_letter: DeadLetter | None = None
    query_truncated: bool = False
    # Its received_ms was replaced by the record's timestamp (see the module docstring).
    clamped_received: bool = False


def decode_message(message: RawMessage, *, limits: EventLimits, now_ms: int) -> DecodedMessage:
    """Decode one message; an invalid one becomes a dead letter (never raises `InvalidEvent`).

    A message whose key does not name its event's user_id (`key_user_id`), or that has no key, is
    refused too: the topic is partitioned by user, and a mis-keyed event would be processed out of
    order with the user's other events. A key in another spelling of the user_id is accepted here:
    the worker has sent such records on to the user's partition before (`stream.worker.reroute`).
    `now_ms` is the worker's clock (ms since the epoch), which bounds a receive time.
    """
    raw = message.value if message.value is not None else b""
    try:
        foreign = foreign_format(message.value)
        if foreign is not None:
            raise InvalidEvent("$", foreign)
        decoded = _decode(raw, limits, now_ms)
        event = decoded.event
        if message.key != event.user_id.encode():
            reason = key_mismatch(message.key, event.user_id)
            if reason is not None:
                raise InvalidEvent("user_id", reason)
    except InvalidEvent as exc:
        letter = DeadLetter(
            key=message.key,
            raw=raw,
            field=exc.field,
            reason=exc.reason,
            source=message.source,
            original_headers=header_pairs(message.headers),
        )
        return DecodedMessage(message.source, dead_letter=letter)
    reference_ms = _reference_ms(message.timestamp_ms, now_ms)
    # Without received_ms the window reads ts_ms as the receive time (`received_ms_of`): an
    # event stamped in the future (a clock or time zone ahead) would be as far out of reach.
    receive_ms = event.received_ms if event.received_ms is not None else event.ts_ms
    clamped = receive_ms > reference_ms + RECEIVE_TIME_TOLERANCE_MS
    if clamped:
        event = dataclasses.replace(event, received_ms=reference_ms)
    return DecodedMessage(message.source, event, None, decoded.query_truncated, clamped)


def gather_decoded(messages: Iterable[DecodedMessage]) -> DecodedBatch:
    """The batch of decoded `messages`, in their order; one warning for all clamped receive
    times."""
    batch = DecodedBatch()
    first_clamped: SourcePosition | None = None
    for message in messages:
        if message.event is None:
            if message.dead_letter is not None:
                batch.dead_letters.append(message.dead_letter)
            continue
        batch.events.append(message.event)
        batch.truncated_queries += message.query_truncated
        if message.clamped_received:
            batch.clamped_received += 1
            first_clamped = first_clamped or message.source
    if first_clamped is not None:
        log.warning(
            "%d events had a received_ms (or, without one, a ts_ms) over %d ms after their Kafka "
            "record's timestamp (a producer other than the collector, a replayed file, a clock or "
            "time zone ahead); received_ms set to the record's timestamp. First at %s; have the "
            "producer send the collector's received_ms, or none, and event times in UTC",
            batch.clamped_received,
            RECEIVE_TIME_TOLERANCE_MS,
            first_clamped,
        )
    return batch


def decode_batch(messages: Iterable[RawMessage], *, limits: EventLimits, now_ms: int) -> DecodedBatch:
    """Decode every message (`decode_message`); an invalid one becomes a dead letter and never
    stops the batch."""
    return gather_decoded(decode_message(m, limits=limits, now_ms=now_ms) for m in messages)


def _decode(raw: bytes, limits: EventLimits, now_ms: int) -> DecodedEvent:
    """`decode_event_noted`, reading the event inside a Kafka Connect JsonConverter envelope
    (``{"schema": ..., "payload": {event}}``, its default with ``schemas.enable=true``); a record
    in another producer's shape is refused with a reason naming that shape and the fix."""
    if len(raw) > limits.max_raw_bytes:
        return decode_event_noted(raw, limits=limits, now_ms=now_ms)  # refused unparsed, as everywhere
    doc = parse_event_json(raw)
    try:
        return decode_doc(doc, limits=limits, now_ms=now_ms, source_bytes=len(raw))
    except InvalidEvent as exc:
        if isinstance(doc, dict) and set(doc) == {"schema", "payload"} and isinstance(doc["payload"], dict):
            return decode_doc(doc["payload"], limits=limits, now_ms=now_ms, source_bytes=len(raw))
        shape = foreign_shape(doc)
        if shape is None:
            raise
        raise InvalidEvent(exc.field, f"{exc.reason}: {shape}") from exc


def foreign_shape(doc: object) -> str | None:
    """What a parsed record value that is no event is, with the fix, when it is in a shape other
    producers write (several events in one record, JSON encoded twice, a Debezium change event, a
    structured CloudEvent); None otherwise."""
    if isinstance(doc, list):
        return (
            f"the value is a JSON array of {len(doc)} items; send each event as its own Kafka "
            "record, keyed by its user_id"
        )
    if isinstance(doc, str) and doc.lstrip().startswith("{"):
        return (
            "the value is a JSON string holding a JSON object (serialised twice); send the object "
            "itself (one json.dumps, or a StringSerializer over JSON text)"
        )
    if isinstance(doc, dict) and "after" in doc and ("op" in doc or "before" in doc):
        return (
            "the value is a Debezium change event; send its 'after' state as the record value "
            "(Debezium's ExtractNewRecordState transform) in the v1 event schema"
        )
    if isinstance(doc, dict) and "specversion" in doc and "data" in doc:
        return (
            "the value is a structured-mode CloudEvent; send its data (the v1 event) as the value, "
            "or use CloudEvents' binary content mode"
        )
    return None


def _reference_ms(timestamp_ms: int | None, now_ms: int) -> int:
    """When a record was received at the latest: its timestamp, unless that lies after the
    worker's clock `now_ms` (a producer that sets CreateTime to the event time, as Flink and Kafka
    Connect sinks can), or the worker's clock for a record without one (Kafka's -1)."""
    if timestamp_ms is None or timestamp_ms < 0:
        return now_ms
    return min(timestamp_ms, now_ms)


# Kafka Connect's JsonConverter writes a string key as a JSON string: the id in double quotes.
_STRING_CONVERTER_FIX = (
    "set the connector's key.converter to org.apache.kafka.connect.storage.StringConverter, "
    "which writes the user_id's bare text"
)


def key_mismatch(key: bytes | None, user_id: str) -> str | None:
    """Why a record keyed `key` is not the record of an event of `user_id`; None when `key` names
    `user_id` by the id rule (`key_user_id`). For keys other than ``user_id.encode()``: the others
    are the user's at a glance."""
    if key is None:
        return "the Kafka message has no key; key each event by its user_id"
    if key_user_id(key) == user_id:
        return None
    if len(key) > 2 and key[:1] == key[-1:] == b'"':
        try:
            unquoted = json.loads(key)
        except ValueError:
            unquoted = None
        if isinstance(unquoted, str) and key_user_id(unquoted.encode()) == user_id:
            return (
                "the Kafka message's key is the user_id JSON-quoted (as Kafka Connect's "
                f"JsonConverter writes string keys); {_STRING_CONVERTER_FIX}"
            )
    if len(key) >= _CONFLUENT_HEADER_BYTES and key[0] == _CONFLUENT_MAGIC and key[1] == 0:
        return (
            "the Kafka message's key is in the Confluent schema-registry wire format (an Avro or "
            "Protobuf key); key each event by its user_id as plain UTF-8 text (a StringSerializer "
            "for keys)"
        )
    if key[:1] == b"{":
        return (
            "the Kafka message's key is a JSON object (a Kafka Connect or Debezium struct key); key "
            "each event by its user_id, the bare text (e.g. the ExtractField$Key transform with "
            f"field=user_id), and {_STRING_CONVERTER_FIX}"
        )
    try:
        valid_id(key.decode("utf-8"), "user_id")
    except UnicodeDecodeError:
        return "the Kafka message's key is not UTF-8 text; key each event by its user_id as UTF-8 text"
    except InvalidEvent as exc:
        return f"the Kafka message's key is no valid user id ({exc.reason}); key each event by its user_id"
    return "the Kafka message's key names another user than its user_id; key each event by its user_id"
