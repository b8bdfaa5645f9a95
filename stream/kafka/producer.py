"""The kafka-python producer under the Python SDK, the HTTP collector and replay.

The SDK for backend services is `ProfilestreamProducer` in `stream.ingest.sdk`:

    with ProfilestreamProducer(settings) as producer:
        producer.track("u42", "purchase", item_id="sku-9")
    # leaving the block flushes: every tracked event is acknowledged by the broker (acks=all)

`kafka_producer` builds the kafka-python producer they share: keyed by user_id, acks=all,
idempotent (so retries neither duplicate nor reorder a partition), sends asynchronous and batched
(`linger_ms`). `wait_acknowledged` waits for the broker and raises ServiceUnavailable if any event
was not acknowledged, so nothing is dropped silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError

from stream.core.errors import ServiceUnavailable
from stream.core.settings import Settings
from stream.kafka.security import kafka_python_security
from stream.kafka.topics import kafka_unreachable

log = logging.getLogger(__name__)


class SendFuture(Protocol):
    def get(self, timeout: float | None = None) -> Any: ...

    def add_errback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


class RecordSender(Protocol):
    """The part of kafka-python's KafkaProducer that profilestream uses (fakes implement it in tests)."""

    def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None
    ) -> SendFuture: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class ProducerTuning:
    """kafka-python producer knobs; the defaults suit interactive sends, replay raises the batching."""

    client_id: str = "profilestream-sdk"
    linger_ms: int = 5
    batch_size_bytes: int = 64 * 1024
    # How long a send may block for metadata or buffer space, and how long a record may wait for
    # its acknowledgement before it fails; both bound how long a caller waits on a dead broker.
    max_block_ms: int = 10_000
    delivery_timeout_ms: int = 30_000
    bootstrap_timeout_ms: int = 10_000


def kafka_producer(settings: Settings, tuning: ProducerTuning | None = None) -> RecordSender:
    """A connected kafka-python producer (acks=all, idempotent); ServiceUnavailable if Kafka is down."""
    tuning = tuning or ProducerTuning()
    request_timeout_ms = min(tuning.delivery_timeout_ms - tuning.linger_ms, 30_000)
    try:
        producer: RecordSender = KafkaProducer(
            bootstrap_servers=settings.kafka_servers,
            client_id=tuning.client_id,
            acks="all",
            # Idempotence keeps each partition in order with several requests in flight.
            enable_idempotence=True,
            linger_ms=tuning.linger_ms,
            batch_size=tuning.batch_size_bytes,
            max_block_ms=tuning.max_block_ms,
            delivery_timeout_ms=tuning.delivery_timeout_ms,
            request_timeout_ms=request_timeout_ms,
            bootstrap_timeout_ms=tuning.bootstrap_timeout_ms,
            # Topics are created by profilestream with their partition counts, never implicitly.
            allow_auto_create_topics=False,
            **kafka_python_security(settings),
        )
    except KafkaError as exc:
        raise kafka_unreachable(settings, exc) from exc
    return producer


def not_acknowledged(topic: str, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Kafka did not acknowledge events on topic {topic!r} ({exc.__class__.__name__}: {exc}); "
        "they may or may not have landed: send them again with the same event_id "
        "(consumers treat event_id as the identity) once the broker is up and the topic exists"
    )


def wait_acknowledged(topic: str, futures: list[SendFuture], timeout_s: float) -> None:
    """Block until the broker acknowledged every future, or raise ServiceUnavailable by the deadline."""
    deadline = time.monotonic() + timeout_s
    try:
        for future in futures:
            future.get(timeout=max(deadline - time.monotonic(), 0.001))
    except KafkaError as exc:
        raise not_acknowledged(topic, exc) from exc
