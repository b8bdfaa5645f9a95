"""Quarantine: a record that makes its batch fail on its own is dead-lettered, not retried forever.

The rule (see stream/worker/README.md): when a batch fails with an unexpected error, it is split in
halves and each half processed again, down to single records. A record that fails alone
`poison_max_attempts` times in a row is quarantined: it goes to the dead-letter topic with the
error as its reason, and the worker goes on with the records after it. Transient failures of a
peer (Kafka, Redis, the network: `is_transient`) are not the record's fault: they still end the
process without committing (`exit_for_redelivery`), and the batch is read again after the restart.

Re-running part of a batch is safe for the same reason a replay after a crash is: the halves run
in order against the windows stored by the halves before them, and the Redis write is newer-only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import aiokafka.errors
import redis.exceptions

from stream.core.errors import ServiceUnavailable

log = logging.getLogger(__name__)

R = TypeVar("R")

# Errors that say a peer is unavailable, never that a record is bad.
_TRANSIENT: tuple[type[BaseException], ...] = (
    ServiceUnavailable,
    OSError,  # ConnectionError and the socket errors
    TimeoutError,
    asyncio.TimeoutError,
    MemoryError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    # Redis Cluster in a failover: no master for a slot yet, a slot moving, redirections exhausted.
    redis.exceptions.ClusterError,  # ClusterDownError, MasterDownError
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,  # MovedError
    redis.exceptions.SlotNotCoveredError,
    # A full Redis (maxmemory reached, no eviction) refuses every write, whatever the records:
    # quarantining would move every record of every batch to the dead-letter topic.
    redis.exceptions.OutOfMemoryError,
)
# A Kafka error is a peer's, except the ones a record's own size or content causes.
_RECORD_KAFKA_ERRORS: tuple[type[BaseException], ...] = (
    aiokafka.errors.MessageSizeTooLargeError,
    aiokafka.errors.RecordTooLargeError,
    aiokafka.errors.RecordListTooLargeError,
    aiokafka.errors.CorruptRecordException,
)


def is_transient(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) is a peer's failure, not the records'."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _TRANSIENT):
            return True
        if isinstance(current, aiokafka.errors.KafkaError) and not isinstance(current, _RECORD_KAFKA_ERRORS):
            return True
        current = current.__cause__ or current.__context__
    return False


async def process_isolating(
    records: Sequence[R],
    process: Callable[[Sequence[R]], Awaitable[None]],
    *,
    max_attempts: int,
    transient: Callable[[BaseException], bool] = is_transient,
) -> list[tuple[R, Exception]]:
    """Run `process` over `records`, isolating the records that make it fail.

    Returns the quarantined records, each with the last error it raised alone; every other record
    was processed. A transient error is raised at once, whatever part of the batch it came from.
    """
    poisoned: list[tuple[R, Exception]] = []

    async def run(part: Sequence[R]) -> None:
        try:
            await process(part)
            return
        except Exception as exc:
            if transient(exc):
                raise
            error = exc
        if len(part) > 1:
            log.warning(
                "a batch of %d records failed (%s: %s); processing its halves apart",
                len(part),
                type(error).__name__,
                error,
            )
            middle = len(part) // 2
            await run(part[:middle])
            await run(part[middle:])
            return
        for _ in range(max_attempts - 1):
            try:
                await process(part)
                return
            except Exception as exc:
                if transient(exc):
                    raise
                error = exc
        poisoned.append((part[0], error))

    await run(records)
    return poisoned
