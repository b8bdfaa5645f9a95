"""Producing v1 events to Kafka with kafka-python: keyed by user_id, acks=all, never silent."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import TracebackType

from kafka.errors import KafkaError

from stream.core.events import Event
from stream.core.settings import Settings
from stream.kafka.producer import kafka_producer, not_acknowledged, wait_acknowledged

log = logging.getLogger(__name__)


class EventProducer:
    """Sends events to the events topic; `send_many` returns only once the broker has them all.

    It uses the SDK's producer (keyed, acks=all, idempotent) and its acknowledgement check, so the
    CLI, the demo and the tests produce exactly as the collector and replay do.
    """

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self.topic = topic or settings.events_topic
        self._producer = kafka_producer(settings)

    def send_many(self, events: Iterable[Event], timeout_s: float = 60.0) -> int:
        futures = [
            self._producer.send(self.topic, key=event.user_id.encode(), value=event.to_json())
            for event in events
        ]
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise not_acknowledged(self.topic, exc) from exc
        wait_acknowledged(self.topic, futures, timeout_s)
        log.info("produced %d events to %s", len(futures), self.topic)
        return len(futures)

    def close(self) -> None:
        self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
