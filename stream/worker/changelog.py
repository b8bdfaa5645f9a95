"""Window records into the Faust table's store and its compacted changelog, a batch at a time.

Setting a Faust table key sends its changelog record through Faust's per-message path (a future,
the producer buffer, a task hop, aiokafka's per-record ``send``): py-spy put that at 16 % of the
worker's interpreter time at 2,000 events/s, about 0.26 ms per changed window (bench/README.md,
"What each guarantee costs"). Here a batch's windows go into the table's store directly and
their records into one record batch per changelog partition (aiokafka's C ``BatchBuilder``,
`stream.kafka.bulk_sender.PartitionBatcher`), submitted to the same producer Faust uses; one
future per partition and batch.

What stays as Faust's own table write gave it, and what is stricter:

- **Placement.** A record goes to the partition Faust's ``use_partitioner`` would choose (the
  default partitioner's murmur2 of the key), and the RocksDB store writes it into the database of
  the user's own event partition (`acting_for`), as before.
- **Order.** Sets and deletes of window keys (the retention sweep's tombstones too) go through this
  one writer, in call order; aiokafka keeps one in-flight batch per partition, so that order
  reaches the broker.
- **Acknowledged before the positions.** `flush` returns once the broker acknowledged every batch
  (one produce round trip per worker batch), and the worker stores the batch's positions only
  after it. A batch that is not acknowledged raises `ServiceUnavailable`, a peer's failure: the
  worker exits without storing positions and reads the batch again. (Faust's per-key path did not
  wait: a window record could fail after its batch's position was written.)
- **Recovery offsets.** A RocksDB store records each acknowledged batch's last offset
  (``set_persisted_offset``), as Faust's ``_on_changelog_sent`` does per record.

Faust's exactly-once mode (transactional producers) and its threaded producer send table records
through other producers; `for_app` refuses both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from faust.types import EventT

from stream.core.errors import ConfigError, ServiceUnavailable
from stream.kafka.bulk_sender import PartitionBatcher, RecordBatch, default_partition
from stream.worker.positions import acting_for


class ChangelogWriter:
    """A Faust table's window keys, written to its store and changelog a batch at a time.

    `table` is the Faust table (raw bytes keys and values); `producer` returns the started
    aiokafka producer Faust sends with. `set` and `__delitem__` queue the record and change the
    store at once; `flush` sends the queued records and waits for the broker. Reads (`get`,
    `keys`) are the table's.
    """

    def __init__(self, table: Any, producer: Callable[[], Any], partitions: int) -> None:
        self._table = table
        self._producer = producer
        self._partitions = list(range(partitions))
        self._submitted: list[tuple[int, RecordBatch]] = []
        self._batcher = PartitionBatcher(self._new_batch, self._submit)
        self.records = 0

    @classmethod
    def for_app(cls, app: Any, table: Any, partitions: int) -> ChangelogWriter:
        """A writer for `table` of the Faust `app`, through the app's own aiokafka producer (the
        one its other table records, the positions, go through; Faust flushes it before commits).

        Raises ConfigError when the app sends table records through other producers.
        """
        if app.conf.producer_threaded or app.in_transaction:
            raise ConfigError(
                "the worker's changelog writer needs Faust's plain producer: turn off the threaded "
                "producer and the exactly-once processing guarantee"
            )

        def producer() -> Any:
            # The aiokafka driver's started producer; Faust's transport API has no public accessor.
            return app.producer._ensure_producer()

        return cls(table, producer, partitions)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._table.get(key)
        return value

    def keys(self) -> Iterator[bytes]:
        return iter(self._table.keys())

    def set(self, key: bytes, value: bytes, event: EventT[bytes]) -> None:
        """Queue `key`'s record and store `value` now (in the database of `event`'s partition)."""
        # Queued first: a store ahead of the changelog would make a retry see nothing to write.
        self._batcher.add(default_partition(key, self._partitions), key, value)
        with acting_for(event):
            self._table.data[key] = value

    def __delitem__(self, key: bytes) -> None:
        """Queue `key`'s tombstone and remove it from the store now."""
        self._batcher.add(default_partition(key, self._partitions), key, None)
        del self._table.data[key]

    async def flush(self) -> None:
        """Send every queued record and return once the broker acknowledged all of them.

        Raises ServiceUnavailable (naming the topic) when a batch cannot be handed over or is not
        acknowledged; the records of that flush may or may not be in the changelog then.
        """
        self._batcher.flush()
        submitted, self._submitted = self._submitted, []
        if not submitted:
            return
        topic = self._table.changelog_topic.get_topic_name()
        counts = [batch.record_count() for _, batch in submitted]
        try:
            producer = self._producer()
            deliveries = [await producer.send_batch(batch, topic, partition=p) for p, batch in submitted]
            acknowledged = await asyncio.gather(*deliveries)
        except Exception as exc:
            raise ServiceUnavailable(
                f"the changelog topic {topic} did not take {sum(counts)} window records "
                f"({type(exc).__name__}: {exc}); check the brokers, and for a record too large "
                "raise the topic's max.message.bytes or lower PROFILESTREAM_WINDOW_MAX_BYTES"
            ) from exc
        for metadata, count in zip(acknowledged, counts, strict=True):
            if metadata is not None and metadata.offset is not None and metadata.offset >= 0:
                self._table.data.set_persisted_offset(metadata.topic_partition, metadata.offset + count - 1)
        self.records += sum(counts)

    def _new_batch(self) -> RecordBatch:
        batch: RecordBatch = self._producer().create_batch()
        return batch

    def _submit(self, partition: int, batch: RecordBatch) -> None:
        self._submitted.append((partition, batch))
