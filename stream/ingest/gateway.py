"""What every collector route shares: its knobs, the Kafka gateway (one producer, acks=all) and
the request guard (bearer token, rate limit, bounded body read).

The v1 route (`stream.ingest.collector`) and the standard tracking routes
(`stream.ingest.standard_routes`) both stand on these.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from fastapi import Request
from fastapi.responses import JSONResponse
from kafka.errors import KafkaError

from stream.core.errors import ServiceUnavailable
from stream.core.events import Event
from stream.core.settings import Settings
from stream.ingest.body import (
    ACCEPTED_CONTENT_TYPES,
    FieldError,
    Rejection,
    body_error,
    check_content_type,
    declared_charset,
    decode_charset,
    decode_content,
    media_type,
    too_large,
)
from stream.ingest.rate_limit import RateLimiter, retry_after_header
from stream.kafka.producer import (
    RecordSender,
    not_acknowledged,
    wait_acknowledged,
)
from stream.kafka.topics import kafka_unreachable


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Collector knobs; each maps to a future PROFILESTREAM_COLLECTOR_* setting."""

    host: str = "127.0.0.1"
    port: int = 8088
    max_batch_events: int = 500
    # The events one standard-route request may map to (a Segment order maps to one event per
    # product, a GA4 event to one per item): GA4 allows 25 events of 200 items, and a Segment
    # batch of 100 orders of 100 products is 10,000. Past it, messages are rejected one by one.
    max_mapped_events: int = 10_000
    max_body_bytes: int = 1_048_576
    ack_timeout_s: float = 10.0
    retry_after_s: int = 5
    cors_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestBody:
    """A request body as UTF-8 bytes, and the charset its Content-Type declared, as spelled there
    (None: none or UTF-8), for parse errors to name."""

    data: bytes
    charset: str | None


class KafkaGateway:
    """Owns the collector's one producer: created lazily, re-created after Kafka was unreachable.

    After a failed connection attempt, requests fail fast with 503 for `retry_after_s` instead of
    each waiting for its own bootstrap timeout.
    """

    def __init__(
        self,
        settings: Settings,
        factory: Callable[[Settings], RecordSender],
        *,
        ack_timeout_s: float,
        retry_after_s: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._factory = factory
        self._ack_timeout_s = ack_timeout_s
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._producer: RecordSender | None = None
        self._down_until = 0.0
        self._last_failure: ServiceUnavailable | None = None
        # The latest publish's failure and its clock time, while the latest publish failed.
        self._unacknowledged: tuple[ServiceUnavailable, float] | None = None
        self.topic = settings.events_topic

    def _connected(self) -> RecordSender:
        with self._lock:
            if self._producer is not None:
                return self._producer
            if self._last_failure is not None and self._clock() < self._down_until:
                raise self._last_failure
            try:
                self._producer = self._factory(self._settings)
            except ServiceUnavailable as exc:
                self._last_failure = exc
                self._down_until = self._clock() + self._retry_after_s
                raise
            return self._producer

    def publish(self, events: Sequence[Event]) -> None:
        """Produce `events` keyed by user_id and block until the broker acknowledged all of them."""
        producer = self._connected()
        try:
            try:
                futures = [
                    producer.send(self.topic, key=event.user_id.encode(), value=event.to_json())
                    for event in events
                ]
            except KafkaError as exc:
                raise not_acknowledged(self.topic, exc) from exc
            wait_acknowledged(self.topic, futures, self._ack_timeout_s)
        except ServiceUnavailable as exc:
            self._unacknowledged = (exc, self._clock())
            raise
        self._unacknowledged = None

    def ready(self) -> str | None:
        """None when Kafka answers and the events topic exists, else the reason it is not ready.

        Not ready either for `retry_after_s` after a publish went unacknowledged (the Retry-After
        its 503 gave): kafka-python answers `partitions_for` from its cached metadata, so a stopped
        broker still looked ready while every POST answered 503. Bounded in time, so that a
        collector that gets no traffic while it is not ready becomes ready again.
        """
        if (failed := self._unacknowledged) is not None and self._clock() - failed[1] < self._retry_after_s:
            return str(failed[0])
        try:
            producer = self._connected()
            partitions = cast(Any, producer).partitions_for(self.topic)
        except ServiceUnavailable as exc:
            return str(exc)
        except KafkaError as exc:
            return str(kafka_unreachable(self._settings, exc))
        if not partitions:
            return f"topic {self.topic!r} does not exist; create it with `profilestream topics`"
        return None

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=self._ack_timeout_s)
                self._producer = None


class RequestGuard:
    """The bearer token and per-client rate limit in front of ``POST /v1/events``."""

    def __init__(
        self, token: str | None, limiter: RateLimiter | None, clock_s: Callable[[], float] = time.monotonic
    ) -> None:
        self._token = token.encode() if token else None
        self._limiter = limiter
        self._clock_s = clock_s

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestGuard:
        token = settings.collector_token.get_secret_value() if settings.collector_token else None
        rate = settings.collector_rate_limit_per_s
        limiter = RateLimiter(rate, settings.collector_rate_burst) if rate > 0 else None
        return cls(token, limiter)

    def check(self, request: Request) -> JSONResponse | None:
        """None when the request may proceed, else the 401 or 429 answer."""
        if self._token is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            # Constant-time comparison: the answer's timing must not reveal the token.
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
                return error_response(
                    Rejection(401, (FieldError(None, "Authorization", "missing or wrong bearer token"),)),
                    headers={"WWW-Authenticate": "Bearer"},
                )
        if self._limiter is not None:
            client = request.client.host if request.client else "unknown"
            wait_s = self._limiter.acquire(client, self._clock_s())
            if wait_s > 0:
                reason = f"over {self._limiter.rate_per_s:g} requests/s for this client; retry later"
                return error_response(
                    body_error(429, reason), headers={"Retry-After": retry_after_header(wait_s)}
                )
        return None


def error_response(rejection: Rejection, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=rejection.status, content=rejection.to_dict(), headers=headers)


async def read_limited(request: Request, max_body_bytes: int) -> bytes | None:
    """The body, or None as soon as it exceeds the limit (without reading the rest)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(
    request: Request, guard: RequestGuard, max_body_bytes: int, *, any_content_type: bool = False
) -> RequestBody | JSONResponse:
    """The request's decompressed body, as UTF-8, once the guard let it through, or the answer
    refusing it: 401/429 from the guard, 415 for a content type, charset or encoding not taken, 413
    over `max_body_bytes` (compressed, decompressed or once in UTF-8), 400 for a body that is not
    what its labels say.

    `any_content_type`: the body is JSON whatever the Content-Type says (GA4's endpoint ignores
    it, so senders send none, or curl's form type): a type other than application/json or
    text/plain is not read, and the body is read by JSON's own rules (UTF-8, a BOM, UTF-16/32)."""
    refused = guard.check(request)
    if refused is not None:
        return refused
    content_type = request.headers.get("content-type")
    if any_content_type and media_type(content_type) not in ACCEPTED_CONTENT_TYPES:
        content_type = "application/json"
    unsupported = check_content_type(content_type)
    if unsupported is not None:
        return error_response(unsupported)
    body = await read_limited(request, max_body_bytes)
    if body is None:
        return error_response(too_large(max_body_bytes + 1, max_body_bytes))
    # Every Content-Encoding header counts: a proxy may add its coding as a header of its own.
    decoded = decode_content(body, request.headers.getlist("content-encoding"), max_body_bytes)
    if isinstance(decoded, Rejection):
        return error_response(decoded)
    text = decode_charset(decoded, content_type, max_body_bytes)
    if isinstance(text, Rejection):
        return error_response(text)
    return RequestBody(text, declared_charset(content_type))
