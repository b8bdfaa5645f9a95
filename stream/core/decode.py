"""Pure batch decoding: raw Kafka messages in, valid events and dead letters out.

The worker applies the policy of every entry point (`stream.core.events.decode_event_noted`): an
over-long query is cut and counted, an event over the byte limit once normalised is a dead letter
naming its largest field.

Two kinds of record other producers write get a reason of their own, since the generic one
("not UTF-8 text", "not valid JSON") would not tell their producer what to change: a null value
(a tombstone) and a value in the Confluent schema-registry wire format (`foreign_format`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stream.core.deadletter import DeadLetter, SourcePosition
from stream.core.errors import InvalidEvent
from stream.core.events import Event, EventLimits, decode_event_noted


@dataclass(frozen=True, slots=True)
class RawMessage:
    key: bytes | None
    value: bytes | None
    source: SourcePosition


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


def decode_batch(messages: Iterable[RawMessage], *, limits: EventLimits, now_ms: int) -> DecodedBatch:
    """Decode every message; an invalid one becomes a dead letter and never stops the batch.

    A message whose key is not its event's user_id (or that has no key) is rejected too: the topic
    is partitioned by user, and a mis-keyed event would be processed out of order with the user's
    other events.
    """
    batch = DecodedBatch()
    for message in messages:
        raw = message.value if message.value is not None else b""
        try:
            foreign = foreign_format(message.value)
            if foreign is not None:
                raise InvalidEvent("$", foreign)
            decoded = decode_event_noted(raw, limits=limits, now_ms=now_ms)
            event = decoded.event
            if message.key != event.user_id.encode():
                found = "no key" if message.key is None else "a key that differs"
                reason = f"the Kafka message has {found}; key each event by its user_id"
                raise InvalidEvent("user_id", reason)
        except InvalidEvent as exc:
            batch.dead_letters.append(
                DeadLetter(
                    key=message.key, raw=raw, field=exc.field, reason=exc.reason, source=message.source
                )
            )
            continue
        batch.events.append(event)
        batch.truncated_queries += decoded.query_truncated
    return batch
