"""Records a producer put on another partition than their user's, sent on to the right one.

Every profilestream producer (the collector, the SDK, replay, Faust) and the Java and
kafka-python clients place a keyed record on murmur2(key) modulo the partition count. librdkafka's
default partitioner (``consistent_random``: CRC32 of the key; confluent-kafka, Go, node-rdkafka,
kcat) places most keys elsewhere, so one user's events would be split between two partitions,
and so between two workers' windows (with positions and changelog records in the wrong place
too). A worker that finds such a record sends it again, unchanged, to the partition murmur2 gives
its key, waits for the broker's ack, and skips it here: its user's own partition processes it, in
that partition's order (the same way a login moves a window, `stream.worker.identity`). A record
without a key is left to the decoder, which dead-letters it naming the key.

A key is read as the user id it names (`stream.core.decode.normalised_key`): a producer that keys
by the id as its source spells it (NFD "José" from macOS, "4242.0" from a pandas float column)
placed the record on murmur2 of that spelling. Such a record belongs on murmur2 of the id's own
spelling, and is sent there with that spelling as its key, so every record of a user has one key;
one that is on that partition already is processed here (the decoder accepts the spelling).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from faust.types import EventT

from stream.core.decode import normalised_key
from stream.kafka.bulk_sender import default_partition
from stream.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

R = TypeVar("R")


@functools.lru_cache(maxsize=65_536)
def _partition_of(key: bytes, partitions: int) -> int:
    # murmur2 in pure Python is about 5-10 us a key, on the worker's hot path for every record;
    # users repeat (a few active ones make most events), so a bounded cache makes it a lookup.
    return default_partition(key, list(range(partitions)))


def split_misrouted(
    records: Sequence[R],
    partitions: int,
    key_of: Callable[[R], bytes | None],
    partition_of: Callable[[R], int],
) -> tuple[list[R], list[tuple[R, int]]]:
    """The records on their key's murmur2 partition (and those without a key), and the others
    with the partition each belongs on, both in the order given."""
    kept: list[R] = []
    moved: list[tuple[R, int]] = []
    for record in records:
        key = key_of(record)
        if key is None:
            kept.append(record)
            continue
        target = _partition_of(key, partitions)
        if target == partition_of(record):
            kept.append(record)
        else:
            moved.append((record, target))
    return kept, moved


async def keep_own(
    events_topic: Any, batch: Sequence[EventT[bytes]], partitions: int, metrics: WorkerMetrics
) -> list[EventT[bytes]]:
    """The records of `batch` that belong to their partition of the `partitions` (murmur2 of the
    user id their key names, `normalised_key`); the others are sent to theirs, keyed by that id,
    through the Faust `events_topic` and acknowledged by the broker before
    this returns (a crash after the send and before the batch's position is stored sends them
    again: the window drops the repeated event id).

    Raises what the producer raises when a record is not acknowledged (a peer's failure).
    """
    kept, moved = split_misrouted(
        batch,
        partitions,
        key_of=lambda e: normalised_key(e.message.key),
        partition_of=lambda e: e.message.partition,
    )
    if not moved:
        return kept
    pending = [
        await events_topic.send(
            key=normalised_key(e.message.key),
            value=e.message.value,
            partition=target,
            headers=e.message.headers or None,
        )
        for e, target in moved
    ]
    await asyncio.gather(*pending)
    rekeyed: list[tuple[EventT[bytes], int]] = []
    placed: list[tuple[EventT[bytes], int]] = []
    for e, target in moved:
        (placed if normalised_key(e.message.key) == e.message.key else rekeyed).append((e, target))
    if rekeyed:
        metrics.rekeyed_records.inc(len(rekeyed))
        _log_moved(
            rekeyed,
            "were keyed by another spelling of their user id (Unicode NFD, a float's '.0'); sent "
            "on to their users' partitions keyed by the id rule's spelling",
            "key records by the user_id as the collector writes it (NFC text, integers without '.0')",
        )
    if placed:
        metrics.misrouted_records.inc(len(placed))
        _log_moved(
            placed,
            "were on another partition than murmur2(key) gives (a producer with another "
            "partitioner, e.g. librdkafka's default consistent_random); sent on to their users' "
            "partitions",
            "configure producers with the murmur2 partitioner (librdkafka: partitioner=murmur2_random)",
        )
    return kept


def _log_moved(moved: Sequence[tuple[EventT[bytes], int]], what: str, fix: str) -> None:
    first, target = moved[0]
    log.warning(
        "%d records %s. First: %s/%d@%d, belongs on partition %d; %s",
        len(moved),
        what,
        first.message.topic,
        first.message.partition,
        first.message.offset,
        target,
        fix,
    )
