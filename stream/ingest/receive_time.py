"""Receive times (``received_ms``) read from a file, bounded by the reader's own clock.

A `forget` removes what was received at or before it (`stream.core.window`), so an event whose
receive time lies years ahead could never be forgotten. No receiver can have received an event
after its own clock's now: `replay` and `load` set a file's ``received_ms`` later than their clock
plus RECEIVE_TIME_TOLERANCE_MS (the collector's allowance between two clocks) to their clock's now,
and report how many they set, with the first, as the collector reports the times it clamps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from stream.core.events import RECEIVE_TIME_TOLERANCE_MS, Event

log = logging.getLogger(__name__)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class ClampedReceive:
    """One event whose ``received_ms`` was later than the reader's clock and was set to it."""

    position: str
    event_id: str
    original_ms: int
    clamped_ms: int

    @property
    def reason(self) -> str:
        return (
            f"{self.original_ms} is {self.original_ms - self.clamped_ms} ms after this reader's clock "
            f"({self.clamped_ms}), more than RECEIVE_TIME_TOLERANCE_MS ({RECEIVE_TIME_TOLERANCE_MS} "
            "ms): set to the clock's now, so a later forget removes the event; check the clock of "
            "the host that received it, or leave received_ms out"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "position": self.position,
            "event_id": self.event_id,
            "field": "received_ms",
            "original": self.original_ms,
            "clamped_to": self.clamped_ms,
            "reason": self.reason,
        }


@dataclass
class ReceiveClamps:
    """Bounds the receive times of one reader's events and counts those it set (picklable)."""

    count: int = 0
    first: ClampedReceive | None = None

    def bound(self, event: Event, position: object, clock_ms: Callable[[], int] = wall_clock_ms) -> Event:
        """`event`, its ``received_ms`` set to `clock_ms()` when later than that plus the tolerance."""
        received_ms = event.received_ms
        if received_ms is None:
            return event
        now_ms = clock_ms()
        if received_ms <= now_ms + RECEIVE_TIME_TOLERANCE_MS:
            return event
        self.count += 1
        if self.first is None:
            self.first = ClampedReceive(str(position), event.event_id, received_ms, now_ms)
        return replace(event, received_ms=now_ms)

    def log_summary(self, reader: str) -> None:
        """One warning with the count and the first, when any was set (`reader`: "replay", "loader")."""
        if self.first is not None:
            log.warning(
                "%d events had a received_ms past the %s's clock, set to it; first: %s %s",
                self.count,
                reader,
                self.first.position,
                self.first.reason,
            )

    def merge(self, other: ReceiveClamps) -> None:
        self.count += other.count
        if self.first is None:
            self.first = other.first
