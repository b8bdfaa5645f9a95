"""Window records into the Faust table's store and its compacted changelog, a batch at a time.

Setting a Faust table key sends its changelog record through Faust's per-message path (a future,
the producer buffer, a task hop, aiokafka's per-record ``send``): py-spy put that at 16 % of the
worker's interpreter time at 2,000 events/s, about 0.26 ms per changed window (bench/README.md,
"What each guarantee costs"). Here a batch's windows go into the table's store directly and
their records into one record batch per changelog partition (aiokafka's C ``BatchBuilder``,
`stream.kafka.bulk_sender.PartitionBatcher`), submitted to the same producer Faust uses; one
future per partition and batch.

What stays as Faust's own table write gave it:

- **Placement.** A record goes to the partition Faust's ``use_partitioner`` would choose (the
  default partitioner's murmur2 of the key), and the RocksDB store writes it into the database of
  the user's own event partition (`acting_for`), as before.
- **Order.** Sets and deletes of window keys (the retention sweep's tombstones too) go through this
  one writer, in call order; `flush` hands them to the producer before the batch's positions are
  stored through Faust, so a changelog partition still holds a batch's windows before its
  position. aiokafka keeps one in-flight batch per partition, so that order reaches the broker.
- **Durability before commits.** Faust flushes its producer (aiokafka's ``flush`` waits for these
  batches too) before it commits offsets. A batch that the broker does not acknowledge calls
  `on_failure` from the future's callback, which runs before that flush returns; the worker exits
  there (stream/worker/app.py), so no offset is committed past a lost window record.
- **Recovery offsets.** A RocksDB store records each acknowledged batch's last offset
  (``set_persisted_offset``), as Faust's ``_on_changelog_sent`` does per record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from faust.types import EventT

from stream.kafka.bulk_sender import PartitionBatcher, RecordBatch, default_partition
from stream.worker.positions import acting_for

log = logging.getLogger(__name__)

OnFailure = Callable[[BaseException], None]


class ChangelogWriter:
    """A Faust table's window keys, written to its store and changelog a batch at a time.

    `table` is the Faust table (raw bytes keys and values); `producer` returns the started
    aiokafka producer Faust sends with. `set` and `__delitem__` change the store at once and queue
    the record; `flush` submits the queued records. Reads (`get`, `keys`) are the table's.
    """

    def __init__(
        self,
        table: Any,
        producer: Callable[[], Any],
        partitions: int,
        on_failure: OnFailure,
    ) -> None:
        self._table = table
        self._producer = producer
        self._partitions = list(range(partitions))
        self._on_failure = on_failure
        self._submitted: list[tuple[int, RecordBatch]] = []
        self._batcher = PartitionBatcher(self._new_batch, self._submit, too_large_hint=_TOO_LARGE_HINT)
        self.records = 0

    @classmethod
    def for_app(cls, app: Any, table: Any, partitions: int, on_failure: OnFailure) -> ChangelogWriter:
        """A writer for `table` of the Faust `app`, through the app's own aiokafka producer.

        Faust flushes that producer before it commits offsets, which is what makes a commit wait
        for these records; a producer of our own would not be flushed there.
        """

        def producer() -> Any:
            # The aiokafka driver's started producer; Faust's transport API has no public accessor.
            return app.producer._ensure_producer()

        return cls(table, producer, partitions, on_failure)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._table.get(key)
        return value

    def keys(self) -> Iterator[bytes]:
        return iter(self._table.keys())

    def set(self, key: bytes, value: bytes, event: EventT[bytes]) -> None:
        """Store `value` under `key` now (in the database of `event`'s partition) and queue its record."""
        with acting_for(event):
            self._table.data[key] = value
        self._batcher.add(default_partition(key, self._partitions), key, value)

    def __delitem__(self, key: bytes) -> None:
        """Remove `key` from the store now and queue its tombstone."""
        del self._table.data[key]
        self._batcher.add(default_partition(key, self._partitions), key, None)

    async def flush(self) -> None:
        """Hand every queued record to the producer (acknowledgements arrive later; see the module)."""
        self._batcher.flush()
        submitted, self._submitted = self._submitted, []
        if not submitted:
            return
        producer = self._producer()
        topic = self._table.changelog_topic.get_topic_name()
        for partition, batch in submitted:
            count = batch.record_count()
            delivered = await producer.send_batch(batch, topic, partition=partition)
            delivered.add_done_callback(self._on_delivered(count))
            self.records += count

    def _new_batch(self) -> RecordBatch:
        batch: RecordBatch = self._producer().create_batch()
        return batch

    def _submit(self, partition: int, batch: RecordBatch) -> None:
        self._submitted.append((partition, batch))

    def _on_delivered(self, count: int) -> Callable[[Any], None]:
        def done(delivered: Any) -> None:
            if delivered.cancelled():
                self._on_failure(RuntimeError("a changelog batch was cancelled before its acknowledgement"))
                return
            error = delivered.exception()
            if error is not None:
                self._on_failure(error)
                return
            metadata = delivered.result()
            if metadata is not None and metadata.offset is not None and metadata.offset >= 0:
                self._table.data.set_persisted_offset(metadata.topic_partition, metadata.offset + count - 1)

        return done


_TOO_LARGE_HINT = "lower PROFILESTREAM_WINDOW_MAX_BYTES"
