"""The changelog writer: store first, one record batch per partition, order, failures, offsets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatch

from stream.kafka.bulk_sender import RecordBatch, default_partition
from stream.worker.changelog import ChangelogWriter
from tests.support.fakes import FakeBatchProducer

TOPIC = "group-windows-changelog"
PARTITIONS = 4


def records_of(batch: RecordBatch) -> list[tuple[bytes, bytes | None]]:
    built = bytes(batch._build())  # type: ignore[attr-defined]
    return [(record.key, record.value) for record in DefaultRecordBatch(built)]


class Store(dict[bytes, bytes]):
    """A Faust store's surface: a mapping plus the recovery offsets a RocksDB store keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.persisted: dict[int, int] = {}

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp.partition] = max(offset, self.persisted.get(tp.partition, -1))


class Topic:
    def get_topic_name(self) -> str:
        return TOPIC


@dataclass
class Table:
    """The part of a Faust table the writer uses; setting a key here would bypass the writer."""

    data: Store = field(default_factory=Store)
    changelog_topic: Topic = field(default_factory=Topic)

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def keys(self) -> list[bytes]:
        return list(self.data)


@dataclass
class Message:
    partition: int


@dataclass
class Event:
    message: Message


def writer(producer: FakeBatchProducer, table: Table, failures: list[BaseException]) -> ChangelogWriter:
    return ChangelogWriter(table, lambda: producer, PARTITIONS, failures.append)


def partition_of(key: bytes) -> int:
    return default_partition(key, list(range(PARTITIONS)))


def test_the_store_changes_at_once_and_a_flush_sends_one_batch_per_partition_in_call_order() -> None:
    producer, table = FakeBatchProducer(), Table()
    failures: list[BaseException] = []
    changelog = writer(producer, table, failures)
    keys = [f"user-{n}".encode() for n in range(40)]
    for n, key in enumerate(keys):
        changelog.set(key, b"w%d" % n, Event(Message(partition_of(key))))  # type: ignore[arg-type]
    table.data[b"expired"] = b"old"
    del changelog[b"expired"]
    changelog.set(keys[0], b"again", Event(Message(partition_of(keys[0]))))  # type: ignore[arg-type]

    # Reads see the new values before anything is sent.
    assert changelog.get(keys[0]) == b"again" and changelog.get(b"expired") is None
    assert producer.sent == []

    asyncio.run(changelog.flush())

    assert sorted(p for _, p, _ in producer.sent) == sorted({partition_of(k) for k in [*keys, b"expired"]})
    sent: list[tuple[bytes, bytes | None]] = []
    for topic, partition, batch in producer.sent:
        assert topic == TOPIC
        records = records_of(batch)
        assert all(partition_of(key) == partition for key, _ in records)
        sent += records
    expected: list[tuple[bytes, bytes | None]] = [(k, b"w%d" % n) for n, k in enumerate(keys)]
    expected += [(b"expired", None), (keys[0], b"again")]
    # Each key's records in call order, the tombstone included (a compacted topic keeps the last).
    for key in [*keys, b"expired"]:
        assert [v for k, v in sent if k == key] == [v for k, v in expected if k == key]
    assert changelog.records == len(expected)
    assert failures == []


def test_acknowledged_batches_record_their_last_offset_for_recovery() -> None:
    producer, table = FakeBatchProducer(), Table()
    failures: list[BaseException] = []
    changelog = writer(producer, table, failures)
    key = b"user-1"

    async def two_flushes() -> None:
        for n in range(2):
            for m in range(3):
                changelog.set(key, b"%d-%d" % (n, m), Event(Message(partition_of(key))))  # type: ignore[arg-type]
            await changelog.flush()
        await asyncio.sleep(0.05)

    asyncio.run(two_flushes())

    assert table.data.persisted == {partition_of(key): 5}
    assert failures == []


def test_a_refused_batch_is_reported_to_on_failure() -> None:
    key = b"user-1"
    producer, table = FakeBatchProducer(failing_partition=partition_of(key)), Table()
    failures: list[BaseException] = []
    changelog = writer(producer, table, failures)

    async def flush_and_wait() -> None:
        changelog.set(key, b"w", Event(Message(partition_of(key))))  # type: ignore[arg-type]
        await changelog.flush()
        await asyncio.sleep(0.05)

    asyncio.run(flush_and_wait())

    assert len(failures) == 1 and table.data.persisted == {}


def test_a_flush_with_nothing_queued_sends_nothing() -> None:
    producer = FakeBatchProducer()
    asyncio.run(writer(producer, Table(), []).flush())
    assert producer.sent == []


@pytest.mark.parametrize("value_bytes", [100, 20_000])
def test_records_larger_than_a_batch_still_go_out(value_bytes: int) -> None:
    # The fake producer's batches hold 4 KiB; a window up to the record limit must still be sent.
    producer, table = FakeBatchProducer(), Table()
    changelog = writer(producer, table, [])
    key = b"user-big"
    for _ in range(3):
        changelog.set(key, b"x" * value_bytes, Event(Message(partition_of(key))))  # type: ignore[arg-type]
    asyncio.run(changelog.flush())
    assert sum(len(records_of(batch)) for _, _, batch in producer.sent) == 3
