"""The worker's own position per events partition, kept in the windows table (`stream.kafka.offsets`).

A batch passes `PositionKeeper.admit` before it is processed and `PositionKeeper.store` after its
windows are stored. `PositionKeeper.check_idle` covers the case a batch cannot see: records
dropped at the end of a partition, with nothing after them to reveal the gap.

A hole is first read directly (`stream.kafka.probe.RecordProbe`): one that holds no record (a
transaction's marker, aborted or compacted records) is stepped over instead of rewound to, since
no re-read would ever fill it. A partition rewound to the same offset `STUCK_AFTER_REWINDS` times
in a row is reported stuck (`profilestream_stuck_partitions`, /readyz not ready) until it moves.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, cast

import faust
import faust.streams as faust_streams
from aiokafka.errors import IllegalStateError
from faust.types import TP, EventT

from stream.core.settings import Settings
from stream.kafka.offsets import (
    Admission,
    ProbedRange,
    admit,
    decode_position,
    encode_position,
    marker_key,
)
from stream.kafka.probe import RecordProbe
from stream.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

# Records queued from before a seek show the same gap again; one seek per gap unless its re-read
# has not arrived after this long.
REWIND_RETRY_S = 2.0
IDLE_CHECK_S = 2.0
# Rewinds of one partition to one offset, in a row, after which it counts as stuck.
STUCK_AFTER_REWINDS = 5

IdleCheck = Callable[[], Awaitable[None]]


class PositionKeeper:
    def __init__(self, app: faust.App, table: Any, settings: Settings, metrics: WorkerMetrics) -> None:
        self._app = app
        self._table = table
        self._topic = settings.events_topic
        self._partitions = settings.events_partitions
        self._metrics = metrics
        # A few batch waits without a batch: whatever was fetched would have come through by then.
        self._idle_s = max(IDLE_CHECK_S, 5 * settings.batch_max_wait_ms / 1000)
        self._rewound: dict[int, tuple[int, float]] = {}
        self._probe = RecordProbe(settings)
        # Per partition: the last range a probe read, used until the position moves past it.
        self._probed: dict[int, ProbedRange] = {}
        # Per partition: the offset of the last rewinds and how many in a row went there.
        self._rewinds_in_a_row: dict[int, tuple[int, int]] = {}
        self._gauged: set[int] = set()
        self._lagged: set[int] = set()
        self._busy = False
        self._last_batch_s = time.monotonic()

    @contextlib.contextmanager
    def processing(self) -> Iterator[None]:
        """Mark a batch in progress, so that `check_idle` leaves the consumer alone meanwhile."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False
            self._last_batch_s = time.monotonic()

    def watch_idle(self) -> None:
        """Run `check_idle` every `IDLE_CHECK_S` on this worker."""
        timer = cast(Callable[[IdleCheck], object], self._app.timer(interval=IDLE_CHECK_S))
        timer(self.check_idle)

    async def admit(self, batch: Sequence[EventT[bytes]]) -> Admission[EventT[bytes]]:
        tps = {e.message.partition: e.message.tp for e in batch}
        expected = await self._stored(list(tps.values()))
        admission = self._admit(batch, expected)
        if admission.rewinds:
            admission = await self._probe_holes(batch, expected, admission)
        if admission.rewinds:
            # A gap that starts below the log's start can never be filled: retention deleted
            # those records before this group read them. Carry on from the log's start instead.
            earliest = await self._earliest([tps[p] for p in admission.rewinds])
            deleted = {tp.partition: n for tp, n in earliest.items() if n > expected[tp.partition]}
            if deleted:
                log.warning(
                    "%s: records below offsets %s were deleted before they were processed",
                    self._topic,
                    deleted,
                )
                admission = self._admit(batch, expected | deleted)
        self._metrics.repeated_records.inc(admission.repeats)
        self._metrics.skipped_offsets.inc(admission.skipped)
        if admission.skipped:
            log.info(
                "batch: stepped over %d offsets that hold no record (transaction markers, aborted "
                "or compacted records)",
                admission.skipped,
            )
        if admission.repeats or admission.held_back:
            log.info(
                "batch: %d records below the stored position skipped (read again), %d held back behind a gap",
                admission.repeats,
                admission.held_back,
            )
        for partition, offset in admission.rewinds.items():
            await self._rewind(tps[partition], offset, "the consumer skipped records")
        return admission

    def store(self, admission: Admission[EventT[bytes]]) -> None:
        last_event = {e.message.partition: e for e in admission.admitted}
        for partition, next_offset in admission.next_offsets.items():
            # The partition's own event routes the write to its changelog partition and store.
            with acting_for(last_event[partition]):
                self._table[marker_key(partition, self._partitions)] = encode_position(next_offset)
            self._set_gauge(partition, next_offset)
            self._moved(partition, next_offset)

    def stuck(self) -> list[str]:
        """One line per partition rewound to one offset `STUCK_AFTER_REWINDS` times in a row."""
        return [
            f"{self._topic}/{partition} rewound to offset {offset} {count} times in a row"
            for partition, (offset, count) in sorted(self._rewinds_in_a_row.items())
            if count >= STUCK_AFTER_REWINDS
        ]

    async def close(self) -> None:
        await self._probe.close()

    async def _probe_holes(
        self, batch: Sequence[EventT[bytes]], expected: dict[int, int], admission: Admission[EventT[bytes]]
    ) -> Admission[EventT[bytes]]:
        """Read each hole of `admission` directly and admit again with what the reads found."""
        last: dict[int, int] = {}
        for e in batch:
            last[e.message.partition] = max(last.get(e.message.partition, -1), e.message.offset)
        probed = dict(self._probed)
        for partition, hole in admission.rewinds.items():
            known = probed.get(partition)
            if known is None or not known.start <= hole or known.end <= last[partition]:
                probed[partition] = await self._probe.records_in(
                    self._topic, partition, hole, last[partition] + 1
                )
        self._probed.update(probed)
        return self._admit(batch, expected, probed)

    def _moved(self, partition: int, next_offset: int) -> None:
        """Forget a partition's rewinds and probe once its position has moved to `next_offset`."""
        in_a_row = self._rewinds_in_a_row.pop(partition, None)
        if in_a_row is not None and in_a_row[1] >= STUCK_AFTER_REWINDS:
            log.warning("%s/%d: moved on past offset %d", self._topic, partition, in_a_row[0])
        self._metrics.stuck_partitions.set(len(self.stuck()))
        probed = self._probed.get(partition)
        if probed is not None and next_offset >= probed.end:
            del self._probed[partition]

    def _after_holes(self, partition: int, stored: int) -> int:
        """The offset of the first record at or after `stored`, as far as a probe showed that the
        offsets between hold none (`stored` itself otherwise)."""
        probed = self._probed.get(partition)
        if probed is None or not probed.start <= stored < probed.end:
            return stored
        return min((o for o in probed.offsets if o >= stored), default=probed.end)

    async def check_idle(self) -> None:
        """Seek back any partition whose fetch position ran ahead of the stored position while no
        batch came: records dropped at a partition's end, with none after them to show the gap."""
        app = self._app
        if self._busy or time.monotonic() - self._last_batch_s < self._idle_s:
            return
        if app.rebalancing or app.in_recovery or not app.flow_control.is_active():
            return
        await self.update_lag()
        tps = [tp for tp in app.consumer.assignment() if tp.topic == self._topic]
        self._forget_gauges_except({tp.partition for tp in tps})
        if not tps:
            return
        stored = await self._stored(tps)
        earliest = await self._earliest(tps)
        for tp in tps:
            try:
                position = await app.consumer.position(tp)
            except IllegalStateError:
                # Revoked by a rebalance while this check awaited the broker (seen with four
                # workers joining one group; uncaught, Faust crashed the worker). Its new owner
                # starts from the stored position.
                continue
            expected = max(stored[tp.partition], earliest.get(tp, 0))
            # The gauge (what drain checks and the online evaluation wait for) counts offsets a
            # probe showed to hold no record as passed: a partition that ends on a transaction
            # marker is caught up. The stored marker stays; a restart reads the empty range again.
            self._set_gauge(tp.partition, self._after_holes(tp.partition, expected))
            if position is None or position <= self._after_holes(tp.partition, expected) or self._busy:
                continue
            probed = await self._probe.records_in(self._topic, tp.partition, expected, position)
            if probed.empty(expected, position):
                # Markers or aborted records at the partition's end: nothing to read again.
                self._probed[tp.partition] = probed
                self._set_gauge(tp.partition, self._after_holes(tp.partition, expected))
                continue
            if not self._busy:
                await self._rewind(tp, expected, f"the consumer is at {position} with nothing processed")

    async def update_lag(self) -> None:
        """Set the lag gauges of every partition assigned to this worker: the log's end less the
        stored position. A partition whose lag cannot be read shows NaN and counts an error (a 0
        there would read as "caught up")."""
        app = self._app
        try:
            tps = [tp for tp in app.consumer.assignment() if tp.topic == self._topic]
            stored = await self._stored(tps) if tps else {}
        except Exception as exc:  # a metric must never stop the worker
            log.warning("consumer lag unavailable: %s", exc)
            self._metrics.lag_errors.inc()
            self._metrics.consumer_lag.set(math.nan)
            return
        for partition in self._lagged - {tp.partition for tp in tps}:
            self._metrics.partition_lag.remove(str(partition))
        self._lagged = {tp.partition for tp in tps}
        total = 0.0
        for tp in tps:
            lag = math.nan
            try:
                highwater = app.consumer.highwater(tp)
                if highwater is not None and highwater >= 0:
                    lag = float(max(0, highwater - self._after_holes(tp.partition, stored[tp.partition])))
            except Exception as exc:
                log.warning("lag of %s/%d unavailable: %s", tp.topic, tp.partition, exc)
                self._metrics.lag_errors.inc()
            self._metrics.partition_lag.labels(partition=str(tp.partition)).set(lag)
            total += lag
        self._metrics.consumer_lag.set(total)

    def _set_gauge(self, partition: int, next_offset: int) -> None:
        self._metrics.positions.labels(partition=str(partition)).set(next_offset)
        self._gauged.add(partition)

    def _forget_gauges_except(self, assigned: set[int]) -> None:
        # A partition that moved to another worker is that worker's to report.
        for partition in self._gauged - assigned:
            self._metrics.positions.remove(str(partition))
        self._gauged &= assigned
        for kept in (self._rewinds_in_a_row, self._probed):
            for partition in set(kept) - assigned:
                del kept[partition]
        self._metrics.stuck_partitions.set(len(self.stuck()))

    def _admit(
        self,
        batch: Sequence[EventT[bytes]],
        expected: dict[int, int],
        probed: dict[int, ProbedRange] | None = None,
    ) -> Admission[EventT[bytes]]:
        return admit(
            batch,
            expected,
            partition_of=lambda e: e.message.partition,
            offset_of=lambda e: e.message.offset,
            probed=self._probed if probed is None else probed,
        )

    async def _stored(self, tps: Sequence[TP]) -> dict[int, int]:
        """The stored position of each partition, or the start of its log where this consumer
        group never stored one."""
        positions: dict[int, int] = {}
        unknown = []
        for tp in tps:
            raw = self._table.get(marker_key(tp.partition, self._partitions))
            if raw is not None:
                positions[tp.partition] = decode_position(raw)
            else:
                unknown.append(tp)
        if unknown:
            earliest = await self._earliest(unknown)
            positions.update({tp.partition: earliest.get(tp, 0) for tp in unknown})
        return positions

    async def _earliest(self, tps: Sequence[TP]) -> dict[TP, int]:
        return dict(await self._app.consumer.earliest_offsets(*tps))

    async def _rewind(self, tp: TP, offset: int, why: str) -> None:
        now_s = time.monotonic()
        last = self._rewound.get(tp.partition)
        if last is not None and last[0] == offset and now_s - last[1] < REWIND_RETRY_S:
            return
        if tp not in self._app.consumer.assignment():
            return  # revoked while this check awaited the broker; see below
        self._rewound[tp.partition] = (offset, now_s)
        previous = self._rewinds_in_a_row.get(tp.partition)
        in_a_row = previous[1] + 1 if previous is not None and previous[0] == offset else 1
        self._rewinds_in_a_row[tp.partition] = (offset, in_a_row)
        if in_a_row == STUCK_AFTER_REWINDS:
            log.error(
                "%s/%d: rewound to offset %d %d times in a row without getting past it; the "
                "partition counts as stuck (/readyz not ready) until it moves",
                tp.topic,
                tp.partition,
                offset,
                in_a_row,
            )
        self._metrics.stuck_partitions.set(len(self.stuck()))
        log.warning(
            "%s/%d: %s from offset %d on; seeking back to read them", tp.topic, tp.partition, why, offset
        )
        self._metrics.rewinds.inc()
        try:
            await self._app.consumer.seek_wait({tp: offset})
        except IllegalStateError:
            # A rebalance took the partition away between the check and the seek (seen with four
            # workers joining one group: aiokafka raised and Faust crashed the whole worker). Its
            # new owner starts from the stored position, so there is nothing left to rewind here.
            log.info("%s/%d: no longer assigned; not rewinding it", tp.topic, tp.partition)


@contextlib.contextmanager
def acting_for(event: EventT[bytes]) -> Iterator[None]:
    """Make `event` Faust's current event while a table key is set.

    Faust routes a table write (the RocksDB store's partition, the changelog record) by the event
    being processed; in a micro-batch that would be the batch's last event, whatever the user. The
    user's own event (all of a user's events share a partition) puts the write where it belongs.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)
