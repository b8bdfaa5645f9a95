"""The HTTP collector: shop frontends POST v1 events, the collector produces them to Kafka.

``POST /v1/events`` takes one event object or a JSON array of at most `max_batch_events` events
(``Content-Type: application/json``, or ``text/plain`` for browser beacons), validated by the
worker's own validator (`stream.core.events.event_from_dict`). Answers:

- 202 ``{"accepted": n}`` only after the broker acknowledged every event of the request (acks=all);
- 400 unparsable JSON, 413 body or batch too large, 415 wrong content type,
  422 schema violations ``{"errors": [{"index": i, "field": "...", "reason": "..."}]}``; a batch
  with one bad event is rejected whole (nothing of it is produced);
- 503 with ``Retry-After`` when Kafka is unreachable or does not acknowledge in time. The events
  may or may not have landed: resend them with the same event_id (at least once).

``GET /healthz`` is liveness (the process answers), ``GET /readyz`` readiness (Kafka answers and the
events topic exists), ``GET /metrics`` Prometheus request counts and latencies. ``/static/``
serves the browser snippet ``profilestream.js`` and an example.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import click
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from kafka.errors import KafkaError
from pydantic import BaseModel

from stream.core.errors import ServiceUnavailable
from stream.core.events import MAX_CONTEXT_KEYS, MAX_ID_CHARS, MAX_QUERY_CHARS, Event, EventLimits, EventType
from stream.core.http_metrics import HttpMetrics
from stream.core.settings import Settings
from stream.ingest.body import (
    FieldError,
    Rejection,
    body_error,
    check_content_type,
    parse_batch,
    too_large,
)
from stream.ingest.rate_limit import RateLimiter, retry_after_header
from stream.kafka.producer import (
    ProducerTuning,
    RecordSender,
    kafka_producer,
    not_acknowledged,
    wait_acknowledged,
)
from stream.kafka.topics import kafka_unreachable

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Collector knobs; each maps to a future PROFILESTREAM_COLLECTOR_* setting."""

    host: str = "127.0.0.1"
    port: int = 8088
    max_batch_events: int = 500
    max_body_bytes: int = 1_048_576
    ack_timeout_s: float = 10.0
    retry_after_s: int = 5
    cors_origins: tuple[str, ...] = ()


class Accepted(BaseModel):
    accepted: int


class ErrorItem(BaseModel):
    index: int | None
    field: str
    reason: str


class ErrorBody(BaseModel):
    errors: list[ErrorItem]


class Health(BaseModel):
    status: str
    reason: str | None = None


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
            futures = [
                producer.send(self.topic, key=event.user_id.encode(), value=event.to_json())
                for event in events
            ]
        except KafkaError as exc:
            raise not_acknowledged(self.topic, exc) from exc
        wait_acknowledged(self.topic, futures, self._ack_timeout_s)

    def ready(self) -> str | None:
        """None when Kafka answers and the events topic exists, else the reason it is not ready."""
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


def event_json_schema(limits: EventLimits, now_ms: int) -> dict[str, Any]:
    """JSON schema of a v1 event, for the OpenAPI document (the Python validator stays the authority)."""
    # No surrounding whitespace (str.strip) and no control characters, as the validator demands.
    identifier = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ID_CHARS,
        "pattern": r"^[^\s\x00-\x1f](?:[^\x00-\x1f]*[^\s\x00-\x1f])?$",
    }
    item_types = [
        t.value for t in (EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE)
    ]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["event_id", "user_id", "type", "ts_ms"],
        "properties": {
            "v": {"type": "integer", "enum": [1]},
            "event_id": identifier,
            "user_id": identifier,
            "type": {"type": "string", "enum": [t.value for t in EventType]},
            "item_id": identifier,
            "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": r"\S"},
            # The upper bound moves with the clock; the app's start time is always accepted.
            "ts_ms": {"type": "integer", "minimum": limits.min_ts_ms, "maximum": now_ms},
            "session_id": identifier,
            "context": {"type": "object", "maxProperties": MAX_CONTEXT_KEYS},
        },
        "allOf": [
            {"if": {"properties": {"type": {"enum": item_types}}}, "then": {"required": ["item_id"]}},
            {"if": {"properties": {"type": {"const": "search"}}}, "then": {"required": ["query"]}},
            {
                "if": {"properties": {"type": {"const": "forget"}}},
                "then": {"not": {"anyOf": [{"required": ["item_id"]}, {"required": ["query"]}]}},
            },
        ],
    }


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
                return _error_response(
                    Rejection(401, (FieldError(None, "Authorization", "missing or wrong bearer token"),)),
                    headers={"WWW-Authenticate": "Bearer"},
                )
        if self._limiter is not None:
            client = request.client.host if request.client else "unknown"
            wait_s = self._limiter.acquire(client, self._clock_s())
            if wait_s > 0:
                reason = f"over {self._limiter.rate_per_s:g} requests/s for this client; retry later"
                return _error_response(
                    body_error(429, reason), headers={"Retry-After": retry_after_header(wait_s)}
                )
        return None


def _error_response(rejection: Rejection, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=rejection.status, content=rejection.to_dict(), headers=headers)


async def _read_limited(request: Request, max_body_bytes: int) -> bytes | None:
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


def create_collector_app(
    settings: Settings,
    producer_factory: Callable[[Settings], RecordSender] | None = None,
    config: CollectorConfig | None = None,
    clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
) -> FastAPI:
    """The collector's ASGI app; `producer_factory` defaults to a kafka-python producer."""
    config = config or CollectorConfig()
    limits = EventLimits.from_settings(settings)
    ack_timeout_ms = int(config.ack_timeout_s * 1000)
    factory = producer_factory or (
        lambda s: kafka_producer(
            s,
            ProducerTuning(
                client_id="profilestream-collector",
                max_block_ms=ack_timeout_ms,
                delivery_timeout_ms=max(ack_timeout_ms, 1000),
                bootstrap_timeout_ms=ack_timeout_ms,
            ),
        )
    )
    gateway = KafkaGateway(
        settings, factory, ack_timeout_s=config.ack_timeout_s, retry_after_s=config.retry_after_s
    )
    retry_after = {"Retry-After": str(config.retry_after_s)}
    guard = RequestGuard.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(gateway.close)

    app = FastAPI(
        title="profilestream collector",
        version="1",
        description=__doc__,
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    HttpMetrics("collector").install(app)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["POST"],
            allow_headers=["Content-Type", "Authorization"],
        )

    event_schema = event_json_schema(limits, clock_ms())
    body_schema = {
        "oneOf": [
            event_schema,
            {"type": "array", "items": event_schema, "minItems": 1, "maxItems": config.max_batch_events},
        ]
    }
    errors = {"model": ErrorBody}

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=Accepted,
        summary="Collect one v1 event or a batch of them",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}
        },
        responses={
            400: {**errors, "description": "The body is not valid JSON."},
            401: {**errors, "description": "Missing or wrong bearer token (PROFILESTREAM_COLLECTOR_TOKEN)."},
            413: {**errors, "description": "Body or batch over the limit."},
            415: {**errors, "description": "Content type is neither application/json nor text/plain."},
            422: {**errors, "description": "Schema v1 violations; the whole batch is rejected."},
            429: {
                **errors,
                "description": "Over PROFILESTREAM_COLLECTOR_RATE_LIMIT_PER_S for this client; retry later.",
                "headers": {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds."}},
            },
            503: {
                **errors,
                "description": "Kafka unreachable or no acknowledgement in time; resend later.",
                "headers": {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds."}},
            },
        },
    )
    async def post_events(request: Request) -> JSONResponse:
        refused = guard.check(request)
        if refused is not None:
            return refused
        unsupported = check_content_type(request.headers.get("content-type"))
        if unsupported is not None:
            return _error_response(unsupported)
        body = await _read_limited(request, config.max_body_bytes)
        if body is None:
            return _error_response(too_large(config.max_body_bytes + 1, config.max_body_bytes))
        outcome = parse_batch(body, limits=limits, max_events=config.max_batch_events, now_ms=clock_ms())
        if isinstance(outcome, Rejection):
            log.debug("rejected a request with %d: %d problems", outcome.status, len(outcome.errors))
            return _error_response(outcome)
        try:
            # kafka-python blocks; the event loop keeps serving other requests meanwhile.
            await asyncio.to_thread(gateway.publish, outcome)
        except ServiceUnavailable as exc:
            log.warning("answering 503 for %d events: %s", len(outcome), exc)
            return _error_response(body_error(503, str(exc)), headers=retry_after)
        log.debug("accepted %d events", len(outcome))
        return JSONResponse(status_code=202, content={"accepted": len(outcome)})

    @app.get("/healthz", response_model=Health, summary="Liveness: the collector answers")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        summary="Readiness: Kafka answers and the events topic exists",
        responses={503: {"model": Health, "description": "Kafka is not ready."}},
    )
    async def readyz() -> JSONResponse:
        reason = await asyncio.to_thread(gateway.ready)
        if reason is not None:
            return JSONResponse(
                status_code=503, content={"status": "unavailable", "reason": reason}, headers=retry_after
            )
        return JSONResponse(status_code=200, content={"status": "ok", "reason": None})

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def run_collector(settings: Settings, config: CollectorConfig) -> None:
    import uvicorn

    app = create_collector_app(settings, config=config)
    log.info(
        "collector listening on http://%s:%d, producing to %s",
        config.host,
        config.port,
        settings.events_topic,
    )
    uvicorn.run(
        app, host=config.host, port=config.port, log_level=settings.log_level.lower(), log_config=None
    )


_DEFAULT = CollectorConfig()


@click.command("collector")
@click.option("--host", default=_DEFAULT.host, show_default=True, help="Bind address.")
@click.option("--port", default=_DEFAULT.port, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--max-batch-events", default=_DEFAULT.max_batch_events, show_default=True, type=click.IntRange(1)
)
@click.option(
    "--max-body-bytes", default=_DEFAULT.max_body_bytes, show_default=True, type=click.IntRange(256)
)
@click.option(
    "--ack-timeout-s",
    default=_DEFAULT.ack_timeout_s,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Answer 503 when Kafka has not acknowledged a request's events by then.",
)
@click.option("--retry-after-s", default=_DEFAULT.retry_after_s, show_default=True, type=click.IntRange(1))
@click.option("--cors-origin", "cors_origins", multiple=True, help="Origin allowed to POST (repeatable).")
@click.pass_context
def collector_command(
    ctx: click.Context,
    *,
    host: str,
    port: int,
    max_batch_events: int,
    max_body_bytes: int,
    ack_timeout_s: float,
    retry_after_s: int,
    cors_origins: tuple[str, ...],
) -> None:
    """Run the HTTP collector (POST /v1/events -> Kafka) until Ctrl-C."""
    from stream.core.errors import ProfilestreamError

    settings = cast(Settings, ctx.obj)
    config = CollectorConfig(
        host=host,
        port=port,
        max_batch_events=max_batch_events,
        max_body_bytes=max_body_bytes,
        ack_timeout_s=ack_timeout_s,
        retry_after_s=retry_after_s,
        cors_origins=cors_origins,
    )
    try:
        run_collector(settings, config)
    except ProfilestreamError as exc:
        raise click.ClickException(str(exc)) from exc
