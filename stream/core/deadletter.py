"""Dead letters: the original bytes of a rejected event plus why and where it was rejected.

The record's value is the event's original bytes, untouched, so a fixed consumer can replay the
dead-letter topic as it is; the reason travels in Kafka headers.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER_FIELD = "profilestream-error-field"
HEADER_REASON = "profilestream-error-reason"
HEADER_SOURCE = "profilestream-source"


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

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (HEADER_FIELD, self.field.encode()),
            (HEADER_REASON, self.reason.encode()),
            (HEADER_SOURCE, str(self.source).encode()),
        ]
