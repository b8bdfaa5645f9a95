"""Reading a range of one partition directly, to tell a hole in the offsets from lost records.

The worker's own consumer (Faust's) can drop fetched records around seeks and rebalances, so a
hole in what it delivers may be a loss (`stream.kafka.offsets`). It may also be nothing at all:
transaction markers, aborted records (under read_committed) and compacted records take offsets
that no consumer is ever given. `RecordProbe` asks the broker with a plain consumer of its own (no
group, read_committed like the worker's) which offsets of the range hold records.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.core.settings import Settings
from stream.kafka.offsets import ProbedRange
from stream.kafka.security import aiokafka_security

log = logging.getLogger(__name__)

# A hole is checked against at most this many offsets past its start; a longer one is probed again
# from where the previous probe ended, by the next batch.
MAX_PROBE_OFFSETS = 100_000
PROBE_TIMEOUT_S = 10.0
_POLL_MS = 500
_MAX_IDLE_POLLS = 4


class RecordProbe:
    """Finds which offsets of a range hold records a read_committed consumer is given.

    Opened on first use inside the caller's event loop and kept open; `close` releases it.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: Any = None
        self._lock = asyncio.Lock()

    async def records_in(self, topic: str, partition: int, start: int, end: int) -> ProbedRange:
        """The records' offsets in [`start`, `end`) of `topic`/`partition` (at most
        `MAX_PROBE_OFFSETS` past `start`).

        The returned range ends where the read got to: short of `end` when the broker did not
        answer within `PROBE_TIMEOUT_S` (nothing beyond is claimed empty then). Raises nothing a
        broker or network error could cause: such a probe comes back as the empty range
        [`start`, `start`), which leaves every hole to be read again.
        """
        end = min(end, start + MAX_PROBE_OFFSETS)
        if end <= start:
            return ProbedRange(start, start)
        async with self._lock:
            try:
                return await asyncio.wait_for(self._read(topic, partition, start, end), PROBE_TIMEOUT_S)
            except Exception as exc:
                log.warning("%s/%d: could not read offsets %d-%d: %s", topic, partition, start, end - 1, exc)
                await self.close()
                return ProbedRange(start, start)

    async def _read(self, topic: str, partition: int, start: int, end: int) -> ProbedRange:
        consumer = await self._open()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        found: set[int] = set()
        reached = start
        idle_polls = 0
        while reached < end and idle_polls < _MAX_IDLE_POLLS:
            batches = await consumer.getmany(tp, timeout_ms=_POLL_MS, max_records=10_000)
            for record in batches.get(tp, ()):
                if start <= record.offset < end:
                    found.add(record.offset)
            # The position moves past markers and aborted batches too: everything below it is read.
            position = await consumer.position(tp)
            # A few polls that move nothing: the rest is not readable now (the range's end lies
            # beyond an open transaction); only what was read is claimed.
            idle_polls = idle_polls + 1 if position <= reached and not batches else 0
            reached = max(reached, position)
        return ProbedRange(start, min(reached, end), frozenset(found))

    async def _open(self) -> Any:
        if self._consumer is None:
            settings = self._settings
            consumer = AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_servers,
                group_id=None,
                enable_auto_commit=False,
                client_id="profilestream-gap-probe",
                isolation_level="read_committed",
                request_timeout_ms=settings.kafka_request_timeout_ms,
                **aiokafka_security(settings),
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception as exc:
                log.debug("closing the gap probe: %s", exc)
