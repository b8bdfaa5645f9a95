"""Each record decoded when it reaches the batch buffer, not when its batch is taken (issue 19,
part 11).

Decoding (JSON, the schema's checks, the key rule: `stream.core.decode.decode_message`) is per
record and needs nothing from the batches before it. The batch buffer's processor runs while the
previous batch is in the compute process and the event loop would otherwise wait for it
(`stream.worker.batching`), so the worker decodes there: a batch of 500 then starts with its
events decoded instead of spending about 10 ms on them before its windows can move.

A record the buffer did not decode is decoded with its batch, as before: one whose decoding
raised something other than a refusal (a bug an input found; the batch then meets the error again
where `stream.worker.quarantine` isolates and quarantines it), or one pushed out by the bound.
Results are kept by the record's topic, partition and offset until its batch is done
(`release`); at most `max_held` are kept (oldest dropped first), so records the buffer held when
their partition was taken away cannot pile up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from faust.types import EventT

from stream.core.deadletter import SourcePosition
from stream.core.decode import DecodedBatch, DecodedMessage, RawMessage, decode_message, gather_decoded
from stream.core.events import EventLimits

log = logging.getLogger(__name__)


def record_timestamp_ms(event: EventT[bytes]) -> int | None:
    """The Kafka record's timestamp in ms (Faust's is in seconds); None when it has none."""
    timestamp_s = event.message.timestamp
    return None if timestamp_s is None else round(timestamp_s * 1000)


def raw_message(event: EventT[bytes]) -> RawMessage:
    """The Faust event's record as `stream.core.decode` reads it."""
    message = event.message
    return RawMessage(
        key=message.key,
        value=message.value,
        source=SourcePosition(message.topic, message.partition, message.offset),
        timestamp_ms=record_timestamp_ms(event),
        headers=message.headers,
    )


def _position(event: EventT[bytes]) -> tuple[str, int, int]:
    message = event.message
    return (message.topic, message.partition, message.offset)


class DecodeAhead:
    """Decoded records by position, from the batch buffer (`prepare`) to their batch (`batch`)."""

    def __init__(self, limits: EventLimits, max_held: int) -> None:
        if max_held < 1:
            raise ValueError(f"max_held must be >= 1, got {max_held}")
        self._limits = limits
        self._max_held = max_held
        self._held: dict[tuple[str, int, int], DecodedMessage] = {}

    def __len__(self) -> int:
        return len(self._held)

    def prepare(self, event: EventT[bytes]) -> None:
        """Decode `event`'s record and keep the result; never raises (see the module docstring)."""
        try:
            decoded = self._decode(event)
        except Exception:  # decoded again with its batch, where the error is handled
            return
        held = self._held
        held[_position(event)] = decoded
        if len(held) > self._max_held:
            del held[next(iter(held))]

    def batch(self, events: Sequence[EventT[bytes]]) -> DecodedBatch:
        """The decoded batch of `events`, in their order: kept results, the rest decoded now.

        Raises what `decode_message` raises other than a refusal (a refusal is a dead letter).
        """
        held = self._held
        return gather_decoded(
            [
                decoded if (decoded := held.get(_position(event))) is not None else self._decode(event)
                for event in events
            ]
        )

    def release(self, events: Sequence[EventT[bytes]]) -> None:
        """Drop the results kept for `events` (their batch is done, or ended the worker)."""
        for event in events:
            self._held.pop(_position(event), None)

    def _decode(self, event: EventT[bytes]) -> DecodedMessage:
        return decode_message(raw_message(event), limits=self._limits, now_ms=int(time.time() * 1000))
