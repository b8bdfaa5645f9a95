"""The Python SDK: a backend service tracks schema-v1 events straight into Kafka.

Over-long queries follow the one policy of the schema, the collector and the browser snippet: a
query longer than MAX_QUERY_CHARS (512) characters is trimmed and cut to its first 512 characters
(`stream.core.events.truncate_query`), and the event is sent. An event whose record is still over
`PROFILESTREAM_EVENT_MAX_BYTES` is refused there and then with the collector's InvalidEvent, which
names its largest field (`stream.core.events.check_event_size`), and is not sent: the worker would
only dead-letter it.

Sends are asynchronous, and the SDK keeps each one's future until `flush` sees it acknowledged. At
most `sdk_max_pending_sends` are kept: a send that would exceed them first waits for the broker to
acknowledge those (up to the flush timeout), so a broker that is slow or down holds the caller back
instead of letting memory grow; if the broker does not acknowledge them in time, the send raises
`Overloaded` (a `ServiceUnavailable`) naming the setting, and the event is not sent.

Values follow the one set of value rules of every entry point (`stream.core.normalise`): an id
may be text or a whole number, a time ms since the epoch, ISO-8601 text or a datetime; numbers of
any integer or real type count (numpy's ``int64`` and ``float64`` straight from a DataFrame), in
``context`` too, where they are written as JSON numbers.

Receive time: the SDK runs in the backend, so its clock is the receive clock. Each event gets
``received_ms`` at `track` (or `send`), never earlier than the one before it from this producer,
and an event after a ``forget`` is stamped at least 1 ms after it, as the collector stamps a
request. A forget therefore removes everything received before it even when its ``ts_ms`` is when
the user asked, minutes earlier (a queued erasure request), and an event tracked after it is kept.
An event time over 60 s past the receive time is set to it, as the collector sets it
(`clamped_events` counts them; the first is logged).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any, SupportsIndex

from kafka.errors import KafkaError

from stream.core.errors import InvalidEvent, Overloaded, ServiceUnavailable
from stream.core.events import (
    MAX_QUERY_CHARS,
    RECEIVE_TIME_TOLERANCE_MS,
    Event,
    EventLimits,
    EventType,
    check_event_size,
    event_from_dict,
    query_truncated,
)
from stream.core.reserved import check_client_event
from stream.core.settings import Settings
from stream.kafka.producer import (
    RecordSender,
    SendFuture,
    kafka_producer,
    not_acknowledged,
    wait_acknowledged,
)

log = logging.getLogger(__name__)


class ProfilestreamProducer:
    """Tracks v1 events for a backend service; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str | None = None,
        producer_factory: Callable[[Settings], RecordSender] = kafka_producer,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        flush_timeout_s: float = 30.0,
    ) -> None:
        self.topic = topic or settings.events_topic
        self._limits = EventLimits.from_settings(settings)
        self._clock_ms = clock_ms
        self._flush_timeout_s = flush_timeout_s
        self._pending: list[SendFuture] = []
        self._max_pending = settings.sdk_max_pending_sends
        self._producer = producer_factory(settings)
        # The earliest receive time the next event may get: receive times never go back, and one
        # after a forget is later than the forget's (the window cuts at or before the forget).
        self._next_received_ms = 0
        # Events whose ts_ms lay over RECEIVE_TIME_TOLERANCE_MS past their receive time (`_bounded`).
        self.clamped_events = 0
        self._stamp_lock = threading.Lock()

    def _stamp(self, type: EventType, now_ms: int, given_ms: int | None = None) -> int:
        with self._stamp_lock:
            received_ms = max(now_ms, self._next_received_ms) if given_ms is None else given_ms
            floor_ms = received_ms + 1 if type is EventType.FORGET else received_ms
            self._next_received_ms = max(self._next_received_ms, floor_ms)
            return received_ms

    def track(
        self,
        user_id: str | SupportsIndex,
        type: str,
        *,
        item_id: str | SupportsIndex | None = None,
        query: str | None = None,
        ts_ms: SupportsIndex | float | str | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        event_id: str | None = None,
    ) -> Event:
        """Validate and send one event (asynchronously); InvalidEvent names the bad field.

        `ts_ms` is ms since the epoch (any integer type, numpy's too) or ISO-8601 text; the clock's
        now when left out. Ids may be text or whole numbers of any integer type.

        A `query` over MAX_QUERY_CHARS characters is cut to them; an event over
        PROFILESTREAM_EVENT_MAX_BYTES (bytes of its JSON record) raises InvalidEvent naming its
        largest field (see the module docstring); so does a `context` holding a key only the
        worker writes (``forget_of``, ``merged_from``: `stream.core.reserved`).

        The event is stamped with this producer's receive time (``received_ms``, see the module
        docstring)."""
        now_ms = self._clock_ms()
        doc: dict[str, Any] = {
            "event_id": event_id if event_id is not None else uuid.uuid4().hex,
            "user_id": user_id,
            "type": type,
            "ts_ms": ts_ms if ts_ms is not None else now_ms,
            "item_id": item_id,
            "query": query,
            "session_id": session_id,
            "context": dict(context) if context is not None else None,
        }
        unstamped = event_from_dict(doc, limits=self._limits, now_ms=now_ms)
        check_client_event(unstamped)
        # Stamped once valid, so a refused event moves no receive time; its size counts the stamp,
        # as the collector's does.
        event = self._bounded(replace(unstamped, received_ms=self._stamp(unstamped.type, now_ms)))
        check_event_size(event, self._limits)
        if query_truncated(query):
            log.debug("cut a %d-character query to %d characters", len(query or ""), MAX_QUERY_CHARS)
        self._send(event)
        return event

    def send(self, event: Event) -> None:
        """Send an already validated event (asynchronously); see the module docstring for when
        it waits first and when it raises `Overloaded`. InvalidEvent, naming the largest field,
        for an event over PROFILESTREAM_EVENT_MAX_BYTES: one built by hand skipped `track`'s check;
        and for a context key only the worker writes (`stream.core.reserved`), or an identify
        of a user with itself.

        An event without ``received_ms`` is stamped as `track` stamps it; one that carries it
        (forwarded from another receiver) keeps it, unless it lies more than
        RECEIVE_TIME_TOLERANCE_MS past this producer's clock: InvalidEvent, since such an event
        could outlast any later forget."""
        check_client_event(event)
        now_ms = self._clock_ms()
        given_ms = event.received_ms
        if given_ms is not None and given_ms > now_ms + RECEIVE_TIME_TOLERANCE_MS:
            raise InvalidEvent(
                "received_ms",
                f"{given_ms} is {given_ms - now_ms} ms after this producer's clock ({now_ms}), more "
                f"than the {RECEIVE_TIME_TOLERANCE_MS} ms allowed; leave received_ms out and the SDK "
                "stamps it, or check the clock of the host that set it",
            )
        stamped = self._bounded(replace(event, received_ms=self._stamp(event.type, now_ms, given_ms)))
        check_event_size(stamped, self._limits)
        self._send(stamped)

    def _bounded(self, event: Event) -> Event:
        """`event` with a `ts_ms` over RECEIVE_TIME_TOLERANCE_MS past its receive time set to that
        time, as the collector sets it: an event cannot happen after it was received, and one
        stamped hours ahead (a clock or time zone off) would be the user's newest for hours.
        Counted in `clamped_events`; the first is logged."""
        assert event.received_ms is not None
        if event.ts_ms <= event.received_ms + RECEIVE_TIME_TOLERANCE_MS:
            return event
        self.clamped_events += 1
        if self.clamped_events == 1:
            log.warning(
                "event %s: ts_ms %d is %d ms after its receive time %d (a clock or time zone "
                "ahead): set to the receive time, as the collector does; later ones are counted "
                "in clamped_events. Send ts_ms in UTC ms since the epoch, or leave it out",
                event.event_id,
                event.ts_ms,
                event.ts_ms - event.received_ms,
                event.received_ms,
            )
        return replace(event, ts_ms=event.received_ms)

    def _send(self, event: Event) -> None:
        if len(self._pending) >= self._max_pending:
            self._wait_for_room()
        try:
            future = self._producer.send(self.topic, key=event.user_id.encode(), value=event.to_json())
        except KafkaError as exc:
            raise not_acknowledged(self.topic, exc) from exc
        self._pending.append(future)

    def flush(self, timeout_s: float | None = None) -> int:
        """Wait until the broker acknowledged every event sent so far; returns how many that was."""
        pending, self._pending = self._pending, []
        timeout = self._flush_timeout_s if timeout_s is None else timeout_s
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise not_acknowledged(self.topic, exc) from exc
        wait_acknowledged(self.topic, pending, timeout)
        if pending:
            log.debug("flushed %d events to %s", len(pending), self.topic)
        return len(pending)

    def _wait_for_room(self) -> None:
        held = len(self._pending)
        try:
            self.flush()
        except ServiceUnavailable as exc:
            raise Overloaded(
                f"the SDK holds {held} unacknowledged events, its limit "
                f"(PROFILESTREAM_SDK_MAX_PENDING_SENDS={self._max_pending}), and the broker did not "
                f"acknowledge them within {self._flush_timeout_s:g} s, so this event was not sent: "
                f"{exc}"
            ) from exc

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close(timeout=self._flush_timeout_s)

    def __enter__(self) -> ProfilestreamProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
