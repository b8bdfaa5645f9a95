"""Stand-ins shared by the unit tests: the encoder, the item catalogue and Kafka producers.

The one home for test fakes: a test that needs a fake producer imports it from here rather than
defining its own, so every fake follows the real client's surface the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata, TopicPartition

DIM = 32


class BagOfWordsEncoder:
    """Each word hashes to a fixed random direction; a text is the normalised sum of its words."""

    dim = DIM
    model_version = "bow-test"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def _word(self, word: str) -> npt.NDArray[np.float32]:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace("|", " ").split():
                out[i] += self._word(word)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        normalised: npt.NDArray[np.float32] = (out / np.where(norms == 0, 1, norms)).astype(np.float32)
        return normalised


@dataclass
class FakeCatalogue:
    titles: dict[str, str]
    out_of_stock: set[str] = field(default_factory=set)
    counts: dict[str, float] = field(default_factory=dict)  # popularity; 0 for items not named
    encoder: BagOfWordsEncoder = field(default_factory=BagOfWordsEncoder)

    def __post_init__(self) -> None:
        self._ids = list(self.titles)
        self._vectors = self.encoder.encode([self.titles[i] for i in self._ids])
        self._rows = {item: row for row, item in enumerate(self._ids)}

    @property
    def ids(self) -> Sequence[str]:
        return self._ids

    @property
    def vectors(self) -> npt.NDArray[np.float32]:
        return self._vectors

    @property
    def in_stock(self) -> npt.NDArray[np.bool_]:
        return np.asarray([i not in self.out_of_stock for i in self._ids], dtype=bool)

    @property
    def popularity(self) -> npt.NDArray[np.float32]:
        return np.asarray([self.counts.get(i, 0.0) for i in self._ids], dtype=np.float32)

    def row(self, item_id: str) -> int | None:
        return self._rows.get(item_id)

    def title(self, item_id: str) -> str | None:
        return self.titles.get(item_id)


class DoneFuture:
    """kafka-python's send future, already settled: acknowledged, or failed with `error`."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error

    def add_errback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self.error is not None:
            f(self.error, *args, **kwargs)


@dataclass
class FakeProducer:
    """kafka-python's `KafkaProducer` surface that the collector, SDK and replay use.

    Every send is recorded in `sent` as ``(topic, key, value)`` and its explicit partition (None
    when the producer was left to pick one) in `sent_partitions`. The topic has `partitions`
    partitions. With `error` set, the broker acknowledges nothing: each send's future fails with it
    and `partitions_for` raises it (the broker is unreachable).
    """

    error: Exception | None = None
    partitions: int = 1
    sent: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    sent_partitions: list[int | None] = field(default_factory=list)
    flushed: int = 0
    closed: bool = False

    def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None
    ) -> DoneFuture:
        self.sent.append((topic, key, value))
        self.sent_partitions.append(partition)
        return DoneFuture(self.error)

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1

    def close(self, timeout: float | None = None) -> None:
        self.closed = True

    def partitions_for(self, topic: str) -> set[int]:
        if self.error is not None:
            raise self.error
        return set(range(self.partitions))


class FakeBatchProducer:
    """aiokafka's producer surface the bulk sender uses; acknowledges (or fails) batches a moment later.

    `failing_partition`: batches sent to it fail with a timeout; `unreachable`: `start` fails.
    """

    def __init__(self, failing_partition: int | None = None, unreachable: bool = False) -> None:
        self.failing_partition = failing_partition
        self.unreachable = unreachable
        self.sent: list[tuple[str, int, BatchBuilder]] = []
        self.started = self.stopped = False
        self._next_offset: dict[int, int] = {}

    async def start(self) -> None:
        if self.unreachable:
            raise KafkaConnectionError("connection refused")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(4_096, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent.append((topic, partition, batch))
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if partition == self.failing_partition:
            asyncio.get_running_loop().call_later(0.001, delivery.set_exception, KafkaTimeoutError())
        else:
            # As aiokafka resolves a batch: its partition and the base offset the broker gave it.
            base = self._next_offset.get(partition, 0)
            self._next_offset[partition] = base + batch.record_count()
            tp = TopicPartition(topic, partition)
            metadata = RecordMetadata(topic, partition, tp, base, -1, 0, 0)
            asyncio.get_running_loop().call_later(0.001, delivery.set_result, metadata)
        return delivery
