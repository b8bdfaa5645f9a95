"""Records other producers write: transactions, compressed batches, another partitioner.

Real Kafka, Redis and worker processes. Each test fails without its fix:

- transactions (Kafka Streams, Flink): commit/abort markers take offsets no consumer is given;
  the worker rewound to them for ever, and applied an aborted transaction's records;
- snappy, lz4 and zstd batches (Java and librdkafka producers): the worker crashed on each one;
- librdkafka's default partitioner (CRC32): a user's events split between two partitions, and so
  between two workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import zlib
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaProducer

from stream.core.events import Event
from stream.core.sample import SampleSpec, sample_events
from stream.core.settings import Settings
from stream.kafka.topics import ensure_topics
from tests.integration.convergence import converge, offline, redis_state
from tests.integration.worker import start_worker, stop_worker
from tests.support.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def events_for(users: int, seed: int) -> list[Event]:
    return sample_events(SampleSpec(users=users, events=users * 8, items=500, seed=seed, zipf_s=0.3))


def records(events: list[Event]) -> list[tuple[bytes, bytes]]:
    return [(e.user_id.encode(), e.to_json()) for e in events]


async def _produce_all(settings: Settings, committed: list[Event], aborted: list[Event]) -> None:
    # The aborted transaction ends the first attempt; the rest is sent in a second transaction.
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_servers, transactional_id=f"{settings.consumer_group}-txn"
    )
    await producer.start()
    try:
        half = len(committed) // 2
        async with producer.transaction():
            for key, value in records(committed[:half]):
                await producer.send(settings.events_topic, key=key, value=value)
        await producer.begin_transaction()
        for key, value in records(aborted):
            await producer.send(settings.events_topic, key=key, value=value)
        await producer.flush()
        await producer.abort_transaction()
        for key, value in records(committed[half:]):
            async with producer.transaction():
                await producer.send(settings.events_topic, key=key, value=value)
    finally:
        await producer.stop()


def test_another_producers_transactions_neither_stall_a_partition_nor_apply_aborted_records(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated.model_copy(update={"batch_max_events": 200, "batch_max_wait_ms": 200})
    ensure_topics(settings)
    events = events_for(12, seed=71)
    ghosts = [dataclasses.replace(e, user_id=f"aborted-{e.user_id}") for e in events_for(4, seed=72)]
    asyncio.run(_produce_all(settings, events, ghosts))
    log = tmp_path / "worker.log"
    for _ in range(2):  # and again after a restart, from the stored positions
        worker = start_worker(settings, log)
        try:
            converge(settings, offline(settings, events), worker, log)
        finally:
            assert stop_worker(worker) == 0
    state = redis_state(settings, sorted({e.user_id for e in ghosts}))
    assert all(not stored for stored in state.values()), "an aborted transaction's events were applied"
    assert "rewound to offset" not in log.read_text(), "a partition got stuck on a transaction marker"


@pytest.mark.parametrize("codec", ["snappy", "lz4", "zstd"])
def test_compressed_batches_are_read(isolated: Settings, tmp_path: Path, codec: str) -> None:
    settings = isolated.model_copy(update={"batch_max_events": 200, "batch_max_wait_ms": 200})
    ensure_topics(settings)
    events = events_for(10, seed=80 + len(codec))

    async def produce() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_servers, compression_type=codec, linger_ms=50, acks="all"
        )
        await producer.start()
        try:
            for key, value in records(events):
                await producer.send(settings.events_topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        converge(settings, offline(settings, events), worker, log)
    finally:
        assert stop_worker(worker) == 0


def test_records_placed_by_crc32_reach_their_users_worker(isolated: Settings, tmp_path: Path) -> None:
    # librdkafka's default partitioner (consistent_random) places a key by CRC32; the rest of the
    # user's events come from a murmur2 producer. Two workers share the partitions.
    settings = isolated.model_copy(update={"batch_max_events": 200, "batch_max_wait_ms": 200})
    ensure_topics(settings)
    events = events_for(16, seed=90)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all")
    for n, (key, value) in enumerate(records(events)):
        if n % 2:
            producer.send(settings.events_topic, key=key, value=value)
        else:
            partition = zlib.crc32(key) % settings.events_partitions
            producer.send(settings.events_topic, key=key, value=value, partition=partition)
    producer.flush()
    producer.close()
    log = tmp_path / "worker.log"
    second = settings.model_copy(update={"worker_web_port": free_port(), "data_dir": tmp_path / "second"})
    workers = [start_worker(settings, log), start_worker(second, tmp_path / "second.log")]
    try:
        converge(
            settings,
            offline(settings, events),
            workers[0],
            log,
            web_ports=[settings.worker_web_port, second.worker_web_port],
        )
    finally:
        for worker in workers:
            assert stop_worker(worker) == 0
