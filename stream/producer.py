"""Producing v1 events to Kafka with kafka-python: keyed by user_id, acks=all, never silent."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import TracebackType

from kafka import KafkaProducer
from kafka.errors import KafkaError

from stream.errors import ServiceUnavailable
from stream.events import Event
from stream.settings import Settings
from stream.topics import kafka_unreachable

log = logging.getLogger(__name__)


class EventProducer:
    """Sends events to the events topic; `send_many` returns only once the broker has them all."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self._settings = settings
        self.topic = topic or settings.events_topic
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=settings.kafka_servers,
                acks="all",
                # One in-flight request per connection keeps each user's events in order on retries.
                max_in_flight_requests_per_connection=1,
                retries=5,
                linger_ms=5,
                client_id="profilestream-producer",
            )
        except KafkaError as exc:
            raise kafka_unreachable(settings, exc) from exc

    def send_many(self, events: Iterable[Event], timeout_s: float = 60.0) -> int:
        futures = [
            self._producer.send(self.topic, key=event.user_id.encode(), value=event.to_json())
            for event in events
        ]
        try:
            self._producer.flush(timeout=timeout_s)
            for future in futures:
                future.get(timeout=timeout_s)
        except KafkaError as exc:
            raise ServiceUnavailable(
                f"Kafka did not acknowledge events on topic {self.topic!r} "
                f"({exc.__class__.__name__}: {exc}); nothing was dropped silently, retry the send"
            ) from exc
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
