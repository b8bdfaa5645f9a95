"""Which records of a batch continue each events partition exactly where the stored state ends.

Faust's own offset bookkeeping is not enough for at-least-once processing. Around restarts and
rebalances its fetcher can drop records below a read offset that a batch fetched before a seek
has moved on (faust-streaming issues #216, #221; robinhood/faust #115), and its commit then moves
past them: those events would never reach a window. The worker therefore keeps its own position
per events partition, the offset of the next record it must process, stored in the windows table
itself (`marker_key`) after the batch's windows. Records of one changelog partition are written
in order, so a durable position implies durable windows up to it.

`admit` lets a batch through only as a run from that position: records below it were processed
already (a re-read after a crash or a rewind), and a hole means the consumer may have skipped
records, so the worker seeks back to the position and holds the records after the hole back
until the re-read brings them again.

Kafka's offsets are not contiguous, though: a transaction's commit or abort marker takes an
offset no consumer is given, a read_committed consumer is not given aborted records, and
compaction removes records. So a hole is a loss only if the broker holds records in it: the worker
reads the hole directly (`stream.kafka.probe`) and hands what it found to `admit` as a
`ProbedRange`; a hole that range shows empty is stepped over (`Admission.skipped`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Generic, TypeVar

from stream.core.errors import ConfigError
from stream.kafka.bulk_sender import default_partition

R = TypeVar("R")

# User ids never hold control characters (the event decoder rejects them), so no user's window
# can collide with a position record.
_MARKER_PREFIX = b"\x00next-offset\x00"
_MAX_MARKER_SEARCH = 100_000


@dataclass(frozen=True, slots=True)
class ProbedRange:
    """What a direct read of offsets [`start`, `end`) of one partition found: the offsets of the
    records a read_committed consumer is given there. Every other offset in the range is a
    transaction marker, an aborted record or a compacted one: no record will ever come from it."""

    start: int
    end: int
    offsets: frozenset[int] = frozenset()

    def empty(self, low: int, high: int) -> bool:
        """Whether [`low`, `high`) lies inside the probed range and holds no record."""
        return self.start <= low and high <= self.end and not any(low <= o < high for o in self.offsets)


@dataclass(frozen=True)
class Admission(Generic[R]):
    """A batch split by each record's place relative to its partition's next offset."""

    admitted: list[R]
    repeats: int
    held_back: int
    next_offsets: dict[int, int] = field(default_factory=dict)
    rewinds: dict[int, int] = field(default_factory=dict)
    # Offsets stepped over because a probe showed they hold no record (markers, aborted records).
    skipped: int = 0


def admit(
    records: Sequence[R],
    expected: Mapping[int, int],
    partition_of: Callable[[R], int],
    offset_of: Callable[[R], int],
    probed: Mapping[int, ProbedRange] | None = None,
) -> Admission[R]:
    """Admit, per partition, the records that run on from `expected[partition]` without a hole
    that could hold a record.

    A hole that `probed[partition]` shows empty is stepped over (counted in `skipped`). Admitted
    records come in (partition, offset) order, each offset once. `next_offsets` holds each
    partition's offset after its admitted run (only partitions that advanced); `rewinds` the
    offset to seek back to for each partition with records beyond a hole not known to be empty.
    """
    probed = probed or {}
    by_partition: dict[int, dict[int, R]] = {}
    for record in records:
        # The first copy of an offset wins; a re-delivered copy is the same record.
        by_partition.setdefault(partition_of(record), {}).setdefault(offset_of(record), record)
    admitted: list[R] = []
    repeats = len(records) - sum(len(offsets) for offsets in by_partition.values())
    held_back = skipped = 0
    next_offsets: dict[int, int] = {}
    rewinds: dict[int, int] = {}
    for partition in sorted(by_partition):
        start = next_offset = expected[partition]
        probe = probed.get(partition)
        # Sorted, so once an offset lies beyond the run every later one does too.
        for offset in sorted(by_partition[partition]):
            if offset < next_offset:
                repeats += 1
                continue
            if (
                offset > next_offset
                and partition not in rewinds
                and probe
                and probe.empty(next_offset, offset)
            ):
                skipped += offset - next_offset
                next_offset = offset
            if offset == next_offset:
                admitted.append(by_partition[partition][offset])
                next_offset += 1
            else:
                held_back += 1
                rewinds.setdefault(partition, next_offset)
        if next_offset != start:
            next_offsets[partition] = next_offset
    return Admission(admitted, repeats, held_back, next_offsets, rewinds, skipped)


@lru_cache(maxsize=4096)
def marker_key(partition: int, partitions: int) -> bytes:
    """The windows-table key of `partition`'s position: one that the producer's partitioner
    sends to that same changelog partition, so it is restored with the partition's windows."""
    if not 0 <= partition < partitions:
        raise ConfigError(
            f"partition {partition} is outside the {partitions} partitions of the events topic; "
            "PROFILESTREAM_EVENTS_PARTITIONS must equal the topic's partition count"
        )
    all_partitions = list(range(partitions))
    for attempt in range(_MAX_MARKER_SEARCH):
        key = b"%s%d\x00%d" % (_MARKER_PREFIX, partition, attempt)
        if default_partition(key, all_partitions) == partition:
            return key
    raise ConfigError(  # pragma: no cover - murmur2 spreads keys evenly; ~partitions tries suffice
        f"found no position key for partition {partition} of {partitions}"
    )


def encode_position(next_offset: int) -> bytes:
    return json.dumps({"next_offset": next_offset}, separators=(",", ":")).encode()


def decode_position(raw: bytes) -> int:
    doc = json.loads(raw)
    value = doc.get("next_offset") if isinstance(doc, dict) else None
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"not a stored position: {raw[:80]!r}")
    return value
