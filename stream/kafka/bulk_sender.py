"""Bulk producing for replay: whole record batches per partition, built by aiokafka's C builder.

kafka-python's ``send()`` costs several microseconds per event (a future, a lock, a partitioner
call, a record appended in Python); at replay rates that is more than half of the time. Here the
replay loop appends each event's key and value to the open batch of its partition (aiokafka's
``BatchBuilder``, a C extension, under a microsecond per record) and hands whole batches to an
aiokafka producer (acks=all, idempotent) that runs on its own event loop in a background thread.
There is one future per batch, not per event.

Guarantees kept from the kafka-python path:

- The partition is the one the default partitioner (murmur2 of the key, as kafka-python, aiokafka,
  Faust and the Java client compute it) gives the key, so a user's events land in the same
  partition whichever producer wrote them (`default_partition`).
- Per-key order: one pump task submits the batches in the order they filled, the accumulator holds
  one open batch per partition, and the idempotent producer keeps a partition's batches in order
  across retries.
- Durability: `finish` returns only after the broker acknowledged every batch; a batch that fails
  raises ServiceUnavailable (at the next submission or at `finish`), never a silent drop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from stream.core.errors import ServiceUnavailable, SourceError
from stream.core.settings import Settings
from stream.kafka.security import aiokafka_security
from stream.kafka.topics import kafka_unreachable

log = logging.getLogger(__name__)

T = TypeVar("T")


def default_partition(key: bytes, partitions: list[int]) -> int:
    """The default partitioner's choice for `key` among the sorted `partitions` (positive murmur2).

    The same formula as kafka-python's and aiokafka's DefaultPartitioner and the Java client's.
    """
    from kafka.partitioner.default import murmur2

    return partitions[(int(murmur2(key)) & 0x7FFFFFFF) % len(partitions)]


class RecordBatch(Protocol):
    """The part of aiokafka's BatchBuilder the batcher uses."""

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes | None) -> object: ...

    def close(self) -> None: ...

    def record_count(self) -> int: ...


class PartitionBatcher:
    """Groups records into one open batch per partition and submits each batch when it is full.

    Pure (no I/O): `new_batch` makes an empty batch and `submit(partition, batch)` takes a full one.
    Batches of one partition are submitted in the order they were filled, so a key's records keep
    the order of `add` calls.
    """

    def __init__(
        self,
        new_batch: Callable[[], RecordBatch],
        submit: Callable[[int, RecordBatch], None],
    ) -> None:
        self._new_batch = new_batch
        self._submit = submit
        self._open: dict[int, RecordBatch] = {}

    def add(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Append a record (a `value` of None is a tombstone) to `partition`'s open batch."""
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = self._new_batch()
        # The record time is the send time, as kafka-python's send() without timestamp_ms sets it.
        if batch.append(timestamp=None, key=key, value=value) is not None:
            return
        # Full: the builder closed itself and refused the record; it goes first into a new batch.
        self._submit(partition, batch)
        batch = self._open[partition] = self._new_batch()
        if batch.append(timestamp=None, key=key, value=value) is None:
            raise SourceError(
                f"a record of {len(value or b'')} bytes does not fit in an empty producer batch; raise "
                "the batch size or lower the bound on its size (PROFILESTREAM_EVENT_MAX_BYTES for "
                "events, PROFILESTREAM_WINDOW_MAX_BYTES for windows)"
            )

    def flush(self) -> None:
        """Submit every non-empty open batch, closed so that the producer sends it without lingering."""
        open_batches, self._open = self._open, {}
        for partition, batch in open_batches.items():
            if batch.record_count():
                batch.close()
                self._submit(partition, batch)


@dataclass(frozen=True, slots=True)
class BatchTuning:
    client_id: str = "profilestream-replay"
    # Under the broker's default message.max.bytes (1 MiB) with room for the batch header.
    batch_size_bytes: int = 512 * 1024
    # Batches built and not yet acknowledged; bounds memory (times the batch size) and lets the
    # next batches fill while the broker writes the previous ones.
    max_unacknowledged_batches: int = 16
    request_timeout_ms: int = 30_000
    # How long the replay may wait for the broker to acknowledge (or for a free batch slot).
    ack_timeout_s: float = 120.0
    connect_timeout_s: float = 30.0


# Called on the sender's event loop; returns an unstarted AIOKafkaProducer (or a fake in tests).
ProducerFactory = Callable[[Settings, BatchTuning], Any]


def aiokafka_producer(settings: Settings, tuning: BatchTuning) -> Any:
    """An unstarted aiokafka producer: acks=all, idempotent, no linger; call it on a running loop."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_servers,
        client_id=tuning.client_id,
        acks="all",
        # Idempotence keeps each partition in order across retries.
        enable_idempotence=True,
        max_batch_size=tuning.batch_size_bytes,
        # Batches arrive full (or closed at the end): nothing to wait for.
        linger_ms=0,
        request_timeout_ms=tuning.request_timeout_ms,
        **aiokafka_security(settings),
    )


class AiokafkaBatchSender:
    """Sends whole batches per partition to `topic` with aiokafka (see the module docstring).

    `add` and `finish` are called from one thread (the replay loop); the producer lives on an
    event loop in a background thread. Use `finish` on success, `close` to abandon.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        tuning: BatchTuning | None = None,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        self.topic = topic
        self._producer_factory = producer_factory or aiokafka_producer
        self._settings = settings
        self._tuning = tuning or BatchTuning()
        self._slots = threading.BoundedSemaphore(self._tuning.max_unacknowledged_batches)
        self._failures: list[BaseException] = []
        self._unacknowledged_events = 0
        self._acknowledged_events = 0
        self._pending: set[asyncio.Future[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="replay-sender", daemon=True)
        self._thread.start()
        self._producer: Any = None
        self._queue: asyncio.Queue[tuple[int, RecordBatch] | None] | None = None
        self._pump: asyncio.Task[None] | None = None
        try:
            self.partitions = self._call(self._start(), self._tuning.connect_timeout_s)
        except BaseException:
            self._stop_loop()
            raise
        self._batcher = PartitionBatcher(self._new_batch, self._submit)
        self.add = self._batcher.add

    @property
    def acknowledged_events(self) -> int:
        return self._acknowledged_events

    def finish(self) -> None:
        """Send what is left, wait for every acknowledgement, close.

        Raises ServiceUnavailable if any batch was not acknowledged.
        """
        try:
            self._batcher.flush()
            self._call(self._drain(), self._tuning.ack_timeout_s)
        finally:
            self.close()
        self._raise_on_failure()

    def close(self) -> None:
        """Stop the producer and its thread; batches not yet acknowledged may or may not land."""
        if not self._thread.is_alive():
            return
        try:
            self._call(self._stop_producer(), 10.0)
        except (ServiceUnavailable, TimeoutError) as exc:
            log.warning("replay producer for %s did not stop cleanly: %s", self.topic, exc)
        finally:
            self._stop_loop()

    # --- replay thread ---------------------------------------------------------------------

    def _new_batch(self) -> RecordBatch:
        batch: RecordBatch = self._producer.create_batch()
        return batch

    def _submit(self, partition: int, batch: RecordBatch) -> None:
        self._raise_on_failure()
        if not self._slots.acquire(timeout=self._tuning.ack_timeout_s):
            raise ServiceUnavailable(
                f"Kafka at {self._settings.kafka_bootstrap_servers} acknowledged no batch on topic "
                f"{self.topic!r} for {self._tuning.ack_timeout_s:.0f} s; check the broker, then replay "
                "again (consumers treat event_id as the identity)"
            )
        queue = self._queue
        assert queue is not None
        self._loop.call_soon_threadsafe(queue.put_nowait, (partition, batch))

    def _raise_on_failure(self) -> None:
        if self._failures:
            raise ServiceUnavailable(
                f"Kafka did not acknowledge {self._unacknowledged_events} events on topic {self.topic!r} "
                f"(first error: {self._failures[0]!r}); they may or may not have landed: replay again "
                "once the broker is up (consumers treat event_id as the identity)"
            ) from self._failures[0]

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout_s)
        except TimeoutError as exc:
            future.cancel()
            raise ServiceUnavailable(
                f"Kafka at {self._settings.kafka_bootstrap_servers} did not answer within {timeout_s:.0f} s "
                f"while producing to {self.topic!r}; check the broker, then replay again"
            ) from exc

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    # --- event loop thread -----------------------------------------------------------------

    async def _start(self) -> list[int]:
        from aiokafka.errors import KafkaError as AioKafkaError

        producer = self._producer_factory(self._settings, self._tuning)
        try:
            await producer.start()
        except AioKafkaError as exc:
            await producer.stop()
            raise kafka_unreachable(self._settings, exc) from exc
        try:
            partitions = await producer.partitions_for(self.topic)
        except AioKafkaError as exc:
            await producer.stop()
            raise SourceError(
                f"topic {self.topic!r} is not available ({exc!r}); create it with `profilestream topics`"
            ) from exc
        if not partitions:
            await producer.stop()
            raise SourceError(f"topic {self.topic!r} does not exist; create it with `profilestream topics`")
        self._producer = producer
        self._queue = asyncio.Queue()
        self._pump = asyncio.get_running_loop().create_task(self._run_pump())
        return sorted(partitions)

    async def _run_pump(self) -> None:
        """Hands batches to the producer one at a time, in the order they were submitted."""
        queue = self._queue
        assert queue is not None
        while (item := await queue.get()) is not None:
            partition, batch = item
            count = batch.record_count()
            try:
                delivery = await self._producer.send_batch(batch, self.topic, partition=partition)
            except Exception as exc:  # aiokafka raises several types; each one is reported, none dropped
                self._on_delivered(count, None, exc)
                continue
            self._pending.add(delivery)
            delivery.add_done_callback(functools.partial(self._on_delivered_future, count))

    def _on_delivered_future(self, count: int, delivery: asyncio.Future[Any]) -> None:
        self._pending.discard(delivery)
        if delivery.cancelled():
            self._on_delivered(count, delivery, asyncio.CancelledError("batch delivery cancelled"))
        else:
            self._on_delivered(count, delivery, delivery.exception())

    def _on_delivered(self, count: int, delivery: object, error: BaseException | None) -> None:
        if error is None:
            self._acknowledged_events += count
        else:
            self._unacknowledged_events += count
            self._failures.append(error)
            log.error("a batch of %d events to %s was not acknowledged: %r", count, self.topic, error)
        self._slots.release()

    async def _drain(self) -> None:
        queue, pump = self._queue, self._pump
        assert queue is not None and pump is not None
        queue.put_nowait(None)
        await pump
        if self._pending:
            await asyncio.wait(set(self._pending))

    async def _stop_producer(self) -> None:
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
