"""The batch sender's pure parts and its delivery bookkeeping, against a fake aiokafka producer."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner as AiokafkaPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from kafka.partitioner.default import DefaultPartitioner as KafkaPythonPartitioner
from kafka.partitioner.default import murmur2

from stream.core.errors import ServiceUnavailable
from stream.core.settings import Settings, load_settings
from stream.kafka.bulk_sender import (
    AiokafkaBatchSender,
    BatchTuning,
    PartitionBatcher,
    RecordBatch,
    default_partition,
)
from tests.support.fakes import FakeBatchProducer


def keys() -> list[bytes]:
    rng = random.Random(7)
    found = [f"u{n}".encode() for n in range(2_000)]
    found += ["ü-ß-用户-🙂".encode(), b"", b"a", b"ab", b"abc", b"abcd", b"abcde"]
    found += [rng.randbytes(rng.randrange(1, 64)) for _ in range(2_000)]
    return found


class Cluster:
    """The two calls kafka-python's DefaultPartitioner makes on its cluster metadata."""

    def __init__(self, partitions: list[int]) -> None:
        self._partitions = partitions

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self._partitions)

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(self._partitions)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 12, 50])
def test_default_partition_equals_kafka_python_and_aiokafka_default_partitioners(count: int) -> None:
    partitions = list(range(count))
    kafka_python, aiokafka = KafkaPythonPartitioner(), AiokafkaPartitioner()
    cluster = Cluster(partitions)
    for key in keys():
        ours = default_partition(key, partitions)
        assert ours == kafka_python.partition("t", key, key, None, None, cluster)
        assert ours == aiokafka(key, partitions, partitions)


def test_murmur2_matches_the_java_clients_test_vectors() -> None:
    # From the Java client's UtilsTest.testMurmur2 (signed 32-bit results).
    java = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, expected in java.items():
        assert murmur2(key) & 0xFFFFFFFF == expected & 0xFFFFFFFF


def records_of(batch: RecordBatch) -> list[tuple[bytes, bytes]]:
    # _build is the producer's own way to serialise a builder; reading it back checks the real bytes.
    built = bytes(batch._build())  # type: ignore[attr-defined]
    return [(record.key, record.value) for record in DefaultRecordBatch(built)]


def assert_each_key_in_its_default_partition_in_order(
    batches: list[tuple[int, RecordBatch]], rows: list[tuple[int, bytes, bytes]]
) -> None:
    """Every record of `batches` ((partition, batch) pairs) sits in its key's default partition, and
    each key's values arrive in the order of `rows`."""
    sent_by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for partition, batch in batches:
        for key, value in records_of(batch):
            assert default_partition(key, [0, 1, 2, 3]) == partition
            sent_by_key[key].append(value)
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for _, key, value in rows:
        expected[key].append(value)
    assert sent_by_key == expected


def events(count: int, users: int) -> list[tuple[int, bytes, bytes]]:
    partitions = [0, 1, 2, 3]
    rows = []
    for n in range(count):
        key = f"u{(n * 7919) % users}".encode()
        rows.append(
            (default_partition(key, partitions), key, f'{{"n":{n},"pad":"{"x" * (n % 50)}"}}'.encode())
        )
    return rows


def test_batches_hold_one_partition_each_and_keep_every_keys_order() -> None:
    submitted: list[tuple[int, RecordBatch]] = []
    batcher = PartitionBatcher(lambda: BatchBuilder(2_048, 0), lambda p, b: submitted.append((p, b)))
    rows = events(3_000, users=37)
    for partition, key, value in rows:
        batcher.add(partition, key, value)
    full = len(submitted)
    assert full > 4 * 10  # small batches: many fill up before the end
    batcher.flush()
    assert 0 < len(submitted) - full <= 4
    assert all(batch.closed() for _, batch in submitted)  # type: ignore[attr-defined]
    assert_each_key_in_its_default_partition_in_order(submitted, rows)


def test_a_record_larger_than_a_batch_goes_alone_into_the_next_one() -> None:
    submitted: list[tuple[int, RecordBatch]] = []
    batcher = PartitionBatcher(lambda: BatchBuilder(64, 0), lambda p, b: submitted.append((p, b)))
    batcher.add(0, b"k", b"small")
    batcher.add(0, b"k", b"x" * 1_000)
    batcher.flush()
    assert [records_of(batch) for _, batch in submitted] == [[(b"k", b"small")], [(b"k", b"x" * 1_000)]]


@pytest.fixture
def settings() -> Settings:
    return load_settings({})


def sender_with(settings: Settings, fake: FakeBatchProducer, **tuning: Any) -> AiokafkaBatchSender:
    return AiokafkaBatchSender(
        settings, "t", BatchTuning(**tuning), producer_factory=lambda settings, tuning: fake
    )


def test_finish_waits_for_every_acknowledgement_and_keeps_order(settings: Settings) -> None:
    fake = FakeBatchProducer()
    # Two batch slots: the replay thread has to wait for acknowledgements while it produces.
    sender = sender_with(settings, fake, max_unacknowledged_batches=2)
    assert sender.partitions == [0, 1, 2, 3]
    rows = events(5_000, users=53)
    for partition, key, value in rows:
        sender.add(partition, key, value)
    sender.finish()
    assert sender.acknowledged_events == 5_000
    assert fake.stopped
    assert {topic for topic, _, _ in fake.sent} == {"t"}
    assert_each_key_in_its_default_partition_in_order([(p, batch) for _, p, batch in fake.sent], rows)


def test_unacknowledged_batches_are_reported_never_dropped(settings: Settings) -> None:
    fake = FakeBatchProducer(failing_partition=2)
    sender = sender_with(settings, fake)
    rows = [(partition, key, value) for partition, key, value in events(300, users=11)]
    with pytest.raises(ServiceUnavailable, match=r"did not acknowledge \d+ events on topic 't'"):
        for partition, key, value in rows:
            sender.add(partition, key, value)
        sender.finish()
    assert fake.stopped
    on_two = sum(1 for partition, _, _ in rows if partition == 2)
    assert on_two > 0
    assert sender.acknowledged_events == len(rows) - on_two


def test_unreachable_broker_is_service_unavailable(settings: Settings) -> None:
    with pytest.raises(ServiceUnavailable, match="did not answer"):
        sender_with(settings, FakeBatchProducer(unreachable=True))
