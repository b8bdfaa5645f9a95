"""Dead letters: a bounded copy of a rejected record plus why and where it was rejected.

A dead letter is one Kafka record:

- value: the original value's first `dead_letter_max_payload_bytes` bytes (all of it when it fits,
  so a fixed consumer can replay the dead-letter topic as it is);
- key: the original key, cut to `MAX_KEY_BYTES`;
- headers (UTF-8): `profilestream-error-field`, `profilestream-error-reason` (cut to
  `MAX_REASON_BYTES`), `profilestream-source` (``topic/partition@offset``),
  `profilestream-original-bytes` (the value's full size), `profilestream-original-sha256` (hex, of
  the full value) and `profilestream-truncated` (``true`` when the value was cut);
- before those, the original record's own headers (a trace id, a content type, a producer's
  schema marker), as they were, in their order, while they fit in `MAX_ORIGINAL_HEADERS_BYTES`
  (names and values together) and number at most `MAX_ORIGINAL_HEADERS`;
  `profilestream-original-headers-dropped` counts those that did not, and an original header
  whose name starts with ``profilestream-`` (a dead letter replayed and rejected again) is left
  out, so each name above appears once.

So a dead letter is never larger than the payload setting plus a few KiB, whatever was rejected:
a record near the broker's own limit cannot make its dead letter fail in turn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

HEADER_FIELD = "profilestream-error-field"
HEADER_REASON = "profilestream-error-reason"
HEADER_SOURCE = "profilestream-source"
HEADER_ORIGINAL_BYTES = "profilestream-original-bytes"
HEADER_ORIGINAL_SHA256 = "profilestream-original-sha256"
HEADER_TRUNCATED = "profilestream-truncated"
HEADER_ORIGINAL_HEADERS_DROPPED = "profilestream-original-headers-dropped"
_OWN_HEADER_PREFIX = "profilestream-"

MAX_KEY_BYTES = 1_024
MAX_REASON_BYTES = 1_024
MAX_FIELD_BYTES = 256
# With the key, field and reason bounds above, a dead letter's key and headers stay under 8 KiB.
MAX_ORIGINAL_HEADERS_BYTES = 4_096
# Empty headers cost no bytes: their number is bounded too.
MAX_ORIGINAL_HEADERS = 64

# A Kafka record header: a name and a value, which may be null.
Header = tuple[str, bytes | None]
# A record's headers as the Kafka clients give them: (name, value) pairs, or a mapping (Faust's,
# when a producer in the same process set them as one); None for none.
RecordHeaders = Sequence[Header] | Mapping[str, bytes | None] | None


def header_pairs(headers: RecordHeaders) -> tuple[Header, ...]:
    """`headers` as (name, value) pairs, in their order; () for none."""
    if not headers:
        return ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name), value) for name, value in pairs)


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a message was read: topic, partition and offset."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    raw: bytes
    field: str
    reason: str
    source: SourcePosition
    # The rejected record's own headers, kept on its dead letter (bounded: module docstring).
    original_headers: tuple[Header, ...] = ()

    def bounded(self, max_payload_bytes: int) -> BoundedDeadLetter:
        """The record to produce: value cut to `max_payload_bytes`, with the original's size and hash."""
        key = self.key[:MAX_KEY_BYTES] if self.key is not None else None
        value = self.raw[:max_payload_bytes]
        headers = _kept_headers(self.original_headers)
        headers += [
            (HEADER_FIELD, _cut(self.field, MAX_FIELD_BYTES)),
            (HEADER_REASON, _cut(self.reason, MAX_REASON_BYTES)),
            (HEADER_SOURCE, str(self.source).encode()),
            (HEADER_ORIGINAL_BYTES, str(len(self.raw)).encode()),
            (HEADER_ORIGINAL_SHA256, hashlib.sha256(self.raw).hexdigest().encode()),
            (HEADER_TRUNCATED, b"true" if len(value) < len(self.raw) else b"false"),
        ]
        return BoundedDeadLetter(key=key, value=value, headers=headers)

    def headers(self) -> list[Header]:
        return self.bounded(len(self.raw)).headers


@dataclass(frozen=True, slots=True)
class BoundedDeadLetter:
    """A dead letter as produced: never more than the payload limit plus `MAX_KEY_BYTES` and headers."""

    key: bytes | None
    value: bytes
    headers: list[Header]

    @property
    def size_bytes(self) -> int:
        return len(self.key or b"") + len(self.value) + sum(_header_bytes(h) for h in self.headers)


def _header_bytes(header: Header) -> int:
    return len(header[0].encode("utf-8", "replace")) + len(header[1] or b"")


def _kept_headers(original: tuple[Header, ...]) -> list[Header]:
    """The original headers a dead letter keeps: in order, while they fit the bound, none of ours."""
    kept: list[Header] = []
    budget = MAX_ORIGINAL_HEADERS_BYTES
    dropped = 0
    for name, value in original:
        if name.startswith(_OWN_HEADER_PREFIX):
            continue
        size = _header_bytes((name, value))
        if size > budget or len(kept) == MAX_ORIGINAL_HEADERS:
            dropped += 1
            continue
        kept.append((name, value))
        budget -= size
    if dropped:
        kept.append((HEADER_ORIGINAL_HEADERS_DROPPED, str(dropped).encode()))
    return kept


def _cut(text: str, max_bytes: int) -> bytes:
    """`text` as UTF-8, cut to `max_bytes` on a character boundary (a header must stay readable)."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return raw
    return raw[: max_bytes - 3].decode("utf-8", "ignore").encode() + b"..."
