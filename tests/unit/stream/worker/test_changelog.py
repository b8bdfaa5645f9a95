"""The changelog writer: store and record together, one batch per partition, order, acks, offsets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatch
from faust.streams import current_event

from stream.core.errors import ConfigError, ServiceUnavailable
from stream.kafka.bulk_sender import RecordBatch, default_partition
from stream.worker.changelog import ChangelogWriter
from tests.support.fakes import FakeBatchProducer

TOPIC = "group-windows-changelog"
PARTITIONS = 4


def records_of(batch: RecordBatch) -> list[tuple[bytes, bytes | None]]:
    built = bytes(batch._build())  # type: ignore[attr-defined]
    return [(record.key, record.value) for record in DefaultRecordBatch(built)]


class Store(dict[bytes, bytes]):
    """A Faust store's surface. Like the RocksDB store, a write goes to the database of the current
    event's partition (recorded here), and the recovery offset is overwritten, not maximised."""

    def __init__(self) -> None:
        super().__init__()
        self.persisted: dict[int, int] = {}
        self.written_in: dict[bytes, int] = {}

    def __setitem__(self, key: bytes, value: bytes) -> None:
        event = current_event()
        assert event is not None, "a store write outside an event goes to no partition's database"
        self.written_in[key] = event.message.partition
        super().__setitem__(key, value)

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp.partition] = offset


class Topic:
    def get_topic_name(self) -> str:
        return TOPIC


@dataclass
class Table:
    """The part of a Faust table the writer uses."""

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


def writer(producer: FakeBatchProducer, table: Table) -> ChangelogWriter:
    return ChangelogWriter(table, lambda: producer, PARTITIONS)


def partition_of(key: bytes) -> int:
    return default_partition(key, list(range(PARTITIONS)))


def event_for(key: bytes, partition: int | None = None) -> Any:
    return Event(Message(partition_of(key) if partition is None else partition))


def sent_records(producer: FakeBatchProducer) -> list[tuple[int, bytes, bytes | None]]:
    return [(p, k, v) for _, p, batch in producer.sent for k, v in records_of(batch)]


def test_the_store_changes_at_once_and_a_flush_sends_one_batch_per_partition_in_call_order() -> None:
    producer, table = FakeBatchProducer(), Table()
    changelog = writer(producer, table)
    keys = [f"user-{n}".encode() for n in range(40)]
    for n, key in enumerate(keys):
        changelog.set(key, b"w%d" % n, event_for(key))
    dict.__setitem__(table.data, b"expired", b"old")
    del changelog[b"expired"]
    changelog.set(b"expired", b"back", event_for(b"expired"))  # the same key again after its tombstone
    changelog.set(keys[0], b"again", event_for(keys[0]))

    # Reads see the new values before anything is sent.
    assert changelog.get(keys[0]) == b"again" and changelog.get(b"expired") == b"back"
    assert producer.sent == []

    asyncio.run(changelog.flush())

    assert all(topic == TOPIC for topic, _, _ in producer.sent)
    assert len({p for _, p, _ in producer.sent}) == len(producer.sent)  # one batch per partition
    sent = sent_records(producer)
    assert all(partition_of(key) == partition for partition, key, _ in sent)
    expected: list[tuple[bytes, bytes | None]] = [(k, b"w%d" % n) for n, k in enumerate(keys)]
    expected += [(b"expired", None), (b"expired", b"back"), (keys[0], b"again")]
    # Each key's records in call order, the tombstone included (a compacted topic keeps the last).
    for key in [*keys, b"expired"]:
        assert [v for _, k, v in sent if k == key] == [v for k, v in expected if k == key]
    assert changelog.records == len(expected)


def test_a_window_goes_into_the_database_of_its_users_own_event_partition() -> None:
    # The RocksDB store picks the database by the current event: the user's, not the batch's last.
    producer, table = FakeBatchProducer(), Table()
    changelog = writer(producer, table)
    changelog.set(b"user-a", b"w", event_for(b"user-a", partition=2))
    changelog.set(b"user-b", b"w", event_for(b"user-b", partition=3))
    assert table.data.written_in == {b"user-a": 2, b"user-b": 3}
    assert current_event() is None


def test_a_flush_returns_after_the_acknowledgements_and_records_each_partitions_last_offset() -> None:
    producer, table = FakeBatchProducer(), Table()
    changelog = writer(producer, table)
    key = b"user-1"

    async def two_flushes() -> None:
        for n in range(2):
            for m in range(3):
                changelog.set(key, b"%d-%d" % (n, m), event_for(key))
            await changelog.flush()
            # No sleep: the acknowledgement came before flush returned.
            assert table.data.persisted == {partition_of(key): 3 * n + 2}

    asyncio.run(two_flushes())


def test_a_batch_the_broker_refuses_raises_a_peer_failure() -> None:
    key = b"user-1"
    producer, table = FakeBatchProducer(failing_partition=partition_of(key)), Table()
    changelog = writer(producer, table)
    changelog.set(key, b"w", event_for(key))
    with pytest.raises(ServiceUnavailable, match=TOPIC):
        asyncio.run(changelog.flush())
    assert table.data.persisted == {}


def test_a_producer_that_cannot_take_the_batch_raises_a_peer_failure() -> None:
    class Closed(FakeBatchProducer):
        async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
            raise RuntimeError("producer closed")

    changelog = writer(Closed(), Table())
    changelog.set(b"user-1", b"w", event_for(b"user-1"))
    with pytest.raises(ServiceUnavailable, match="producer closed"):
        asyncio.run(changelog.flush())


def test_a_flush_with_nothing_queued_sends_nothing() -> None:
    producer = FakeBatchProducer()
    asyncio.run(writer(producer, Table()).flush())
    assert producer.sent == []


@pytest.mark.parametrize("value_bytes", [100, 20_000])
def test_records_larger_than_a_batch_still_go_out(value_bytes: int) -> None:
    # The fake producer's batches hold 4 KiB; a window up to the record limit must still be sent.
    producer, table = FakeBatchProducer(), Table()
    changelog = writer(producer, table)
    key = b"user-big"
    for _ in range(3):
        changelog.set(key, b"x" * value_bytes, event_for(key))
    asyncio.run(changelog.flush())
    assert len(sent_records(producer)) == 3


@pytest.mark.parametrize(("threaded", "in_transaction"), [(True, False), (False, True)])
def test_apps_that_send_table_records_through_other_producers_are_refused(
    threaded: bool, in_transaction: bool
) -> None:
    app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=threaded), in_transaction=in_transaction)
    with pytest.raises(ConfigError, match="threaded producer"):
        ChangelogWriter.for_app(app, Table(), PARTITIONS)
