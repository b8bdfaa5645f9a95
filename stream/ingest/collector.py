"""The HTTP collector: shop frontends POST v1 events, the collector produces them to Kafka.

``POST /v1/events`` takes one event object, a JSON array of at most `max_batch_events` events, or
an envelope ``{"sent_at_ms": ..., "events": [...]}`` (``Content-Type: application/json``, or
``text/plain`` for browser beacons, in UTF-8 or a declared charset Python knows;
``Content-Encoding: gzip`` or ``deflate``, up to two layers, allowed, the body limit applying to
the decompressed size). Each event is validated alone by the worker's own
validator (`stream.core.events.event_from_dict`), stamped with the collector's receive time
(``received_ms``) and its time corrected for client clock skew (see `stream.ingest.body`). Answers:

- 202 ``{"accepted": n, "rejected": [{"index": i, "field": "...", "reason": "..."}],
  "truncated": t, "clamped": c, "clamped_events": [{"index": i, "field": "ts_ms", "original": ms,
  "reason": "..."}]}`` once the broker acknowledged every valid event of the request
  (acks=all). The valid events of a batch land; each invalid one is listed in ``rejected`` and
  not produced: resend only those, fixed. ``truncated`` counts queries cut to MAX_QUERY_CHARS
  (512) characters, ``clamped`` events whose time was impossible (before the minimum, or more than
  60 s after the receive time) and was replaced by the receive time, each listed in ``clamped_events``
  with its time as sent and why;
- 400 unparsable JSON, an empty body, or a body that is not what its Content-Encoding or charset
  says, 413 body (compressed, decompressed or once in UTF-8) or batch too large, 415 wrong content
  type, charset or encoding (or more than two content codings), 414 a URL over 16 KiB, 431
  headers over 32 KiB (``stream.web.limits``; HEAD is answered as GET without the body);
- 422 ``{"errors": [{"index": i, "field": "...", "reason": "..."}]}`` when no event of the
  request is valid (or the envelope itself is malformed); an event is invalid too when its
  context holds a key only the worker writes, or it identifies a user with itself
  (`stream.core.reserved`);
- 503 with ``Retry-After`` when Kafka is unreachable or does not acknowledge in time. The events
  may or may not have landed: resend them with the same event_id (at least once).

``GET /healthz`` is liveness (the process answers), ``GET /readyz`` readiness (Kafka answers, the
events topic exists, and no publish went unacknowledged within the Retry-After), ``GET /metrics``
Prometheus request counts and latencies, and events by outcome (accepted, rejected, clamped,
truncated). ``/static/`` serves the browser snippet ``profilestream.js`` and an example.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import Counter
from pydantic import BaseModel

from stream.core.errors import ServiceUnavailable
from stream.core.events import MAX_CONTEXT_KEYS, MAX_ID_CHARS, MAX_QUERY_CHARS, EventLimits, EventType
from stream.core.settings import Settings
from stream.ingest.body import (
    MAX_CONTENT_CODINGS,
    SENT_AT_HEADER,
    SUPPORTED_ENCODINGS,
    Batch,
    Rejection,
    body_error,
    latest_event_ms,
    parse_batch,
)
from stream.ingest.gateway import (
    CollectorConfig,
    KafkaGateway,
    RequestGuard,
    error_response,
    read_body,
)
from stream.ingest.standard_routes import standard_events_router
from stream.kafka.producer import (
    ProducerTuning,
    RecordSender,
    kafka_producer,
)
from stream.web.limits import HttpEdges, OverLimit, uvicorn_options
from stream.web.metrics import HttpMetrics

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# What `stream.core.normalise.time_ms` reads, said once for every time of the schema and the
# X-Sent-At-Ms header. The schema's type stays the canonical integer (what clients should send and
# what schema-driven tests generate); the Python validator stays the authority on the rest.
TIME_FORMS = (
    "Canonical form: an integer of ms since the epoch (1763000000034). Also accepted, by the rule "
    "every entry point shares: a whole number written as a float (1763000000034.0) or as text "
    '("1763000000034", "1.763000000034e12"); ISO-8601 text ("2025-11-13T02:13:20.034Z", '
    '"2025-11-13T04:13:20.034+02:00", "2025-11-13") or "2025-11-13 02:13:20.034 UTC"; a date-time '
    "without a zone is UTC. Refused, naming the field: a fraction of a ms, a number past a signed "
    "64-bit count of ms, other text, booleans, arrays and objects."
)


# Request headers a cross-origin page may send: the snippet's, a bearer token, and the standard
# trackers' own (Snowplow's SP-Anonymous asks for server-side anonymisation: this collector reads
# no cookie and keeps no IP address, so it changes nothing, but its preflight must pass).
CORS_ALLOWED_HEADERS = ("Content-Type", "Content-Encoding", "Authorization", SENT_AT_HEADER, "SP-Anonymous")


class ErrorItem(BaseModel):
    index: int | None
    field: str
    reason: str


class ClampedItem(BaseModel):
    """An event kept with its time replaced by the receive time."""

    index: int
    field: str
    original: int  # the event time as sent, ms since epoch on the client's clock
    reason: str


class Accepted(BaseModel):
    """What became of a request whose valid events were produced."""

    accepted: int
    rejected: list[ErrorItem]
    truncated: int
    clamped: int
    # One per clamped event (at most the batch), like `rejected`.
    clamped_events: list[ClampedItem]


class ErrorBody(BaseModel):
    errors: list[ErrorItem]


class Health(BaseModel):
    status: str
    reason: str | None = None


def event_json_schema(limits: EventLimits) -> dict[str, Any]:
    """JSON schema of a v1 event, for the OpenAPI document (the Python validator stays the authority)."""
    # No surrounding whitespace (str.strip) and no control characters, as the validator demands.
    identifier: dict[str, Any] = {
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
            "query": {
                "type": "string",
                "minLength": 1,
                "pattern": r"\S",
                "description": (
                    f"What the user searched for. MAX_QUERY_CHARS = {MAX_QUERY_CHARS}: a longer query is "
                    f"trimmed and cut to its first {MAX_QUERY_CHARS} characters (code points), and the "
                    "event accepted (counted in `truncated`)."
                ),
            },
            "ts_ms": {
                "type": "integer",
                "description": (
                    "When the event happened, ms since epoch, client clock. Corrected by the batch's "
                    f"sent_at_ms (or {SENT_AT_HEADER}); a time before {limits.min_ts_ms} or more than "
                    f"{latest_event_ms(0, limits)} ms after the receive time becomes the receive time "
                    f"(counted in `clamped`). {TIME_FORMS}"
                ),
            },
            "received_ms": {
                "type": "integer",
                "minimum": 0,
                "description": (
                    "Set by the collector to its receive time (an integer of ms since the epoch; 1 ms "
                    "later per forget before the event in the request: request order is receive "
                    "order); a value sent is replaced, whatever its form. Files replayed or loaded may "
                    f"carry it in any form ts_ms takes. {TIME_FORMS}"
                ),
            },
            "session_id": identifier,
            "context": {"type": "object", "maxProperties": MAX_CONTEXT_KEYS},
            "known_user_id": {
                **identifier,
                "description": (
                    "Only for type identify (a login): the known user the anonymous user_id is; the "
                    "worker joins the anonymous profile into this user's."
                ),
            },
        },
        "allOf": [
            {"if": {"properties": {"type": {"enum": item_types}}}, "then": {"required": ["item_id"]}},
            {"if": {"properties": {"type": {"const": "search"}}}, "then": {"required": ["query"]}},
            {
                "if": {"properties": {"type": {"const": "forget"}}},
                "then": {"not": {"anyOf": [{"required": ["item_id"]}, {"required": ["query"]}]}},
            },
            {
                "if": {"properties": {"type": {"const": "identify"}}},
                "then": {
                    "required": ["known_user_id"],
                    "not": {"anyOf": [{"required": ["item_id"]}, {"required": ["query"]}]},
                },
                "else": {"not": {"required": ["known_user_id"]}},
            },
        ],
    }


def request_body_schema(limits: EventLimits, max_batch_events: int) -> dict[str, Any]:
    """The three accepted shapes: one event, a batch, an envelope with the client's send time."""
    event_schema = event_json_schema(limits)
    batch_schema = {
        "type": "array",
        "items": event_schema,
        "minItems": 1,
        "maxItems": max_batch_events,
    }
    envelope_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["events"],
        "properties": {
            "sent_at_ms": {
                "type": "integer",
                "minimum": 0,
                "description": (
                    "The client's clock when it sent the batch (ms since epoch, not before it); every "
                    "event's ts_ms is corrected by received - sent_at_ms. Wins over the "
                    f"{SENT_AT_HEADER} header. An invalid value rejects the request (422). {TIME_FORMS}"
                ),
            },
            "events": batch_schema,
        },
    }
    return {"oneOf": [event_schema, batch_schema, envelope_schema]}


def sent_at_header_parameter() -> dict[str, Any]:
    """The OpenAPI description of the X-Sent-At-Ms header (the envelope's sent_at_ms for bodies
    that are a bare event or array, e.g. a browser beacon)."""
    return {
        "name": SENT_AT_HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "integer", "minimum": 0},
        "description": (
            "The client's clock when it sent the request (ms since epoch, not before it); every "
            "event's ts_ms is corrected by received - sent. An envelope's sent_at_ms wins over it. "
            f"An invalid value rejects the request (422, field {SENT_AT_HEADER}). {TIME_FORMS}"
        ),
    }


def _events_counter(registry: Any) -> Counter:
    return Counter(
        "profilestream_collector_events",
        "Events by outcome: accepted (produced), rejected (invalid, listed in the answer), clamped "
        "(impossible time replaced by the receive time), truncated (over-long query cut).",
        ["outcome"],
        registry=registry,
    )


def _count_accepted(events_total: Counter, outcome: Batch) -> None:
    events_total.labels("accepted").inc(len(outcome.events))
    events_total.labels("clamped").inc(outcome.clamped)
    events_total.labels("truncated").inc(outcome.truncated)
    if outcome.clamped:
        log.info(
            "set the time of %d events to their receive time (outside the accepted range), e.g. event %s: %s",
            outcome.clamped,
            outcome.clamped_times[0].event_id[:64],
            outcome.clamped_times[0].reason,
        )
    log.debug("accepted %d events, rejected %d", len(outcome.events), len(outcome.rejected))


def _over_limit_body(over: OverLimit) -> dict[str, Any]:
    return body_error(over.status, over.reason, over.part).to_dict()


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
    metrics = HttpMetrics("collector")
    metrics.install(app)
    events_total = _events_counter(metrics.registry)
    # Added before CORS, so inside it: a cross-origin page can read a 414 or 431 too.
    app.add_middleware(HttpEdges, render=_over_limit_body)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["POST"],
            allow_headers=list(CORS_ALLOWED_HEADERS),
            # Snowplow's browser tracker sends its requests with credentials (withCredentials, on by
            # default), which a browser lets through only with this header and the page's own
            # origin, never with "*": so only for origins listed one by one.
            allow_credentials="*" not in config.cors_origins,
            # The snippet's back-off reads Retry-After; a cross-origin page sees only exposed headers.
            expose_headers=["Retry-After"],
        )

    body_schema = request_body_schema(limits, config.max_batch_events)
    errors = {"model": ErrorBody}

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=Accepted,
        summary="Collect one v1 event or a batch of them",
        openapi_extra={
            "parameters": [sent_at_header_parameter()],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}},
        },
        responses={
            202: {"description": "The valid events were produced; invalid ones are listed in `rejected`."},
            400: {
                **errors,
                "description": "The body is empty, not valid JSON, or not what its Content-Encoding "
                "or charset says.",
            },
            401: {**errors, "description": "Missing or wrong bearer token (PROFILESTREAM_COLLECTOR_TOKEN)."},
            413: {**errors, "description": "Body (compressed or decompressed) or batch over the limit."},
            415: {
                **errors,
                "description": "Content type is neither application/json nor text/plain, its charset "
                "is not one Python knows, or the Content-Encoding is not one of "
                f"{', '.join(SUPPORTED_ENCODINGS)} (at most {MAX_CONTENT_CODINGS} layers).",
            },
            422: {
                **errors,
                "description": "No event of the request is valid (each is listed), or a bad envelope.",
            },
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
        received_ms = clock_ms()
        decoded = await read_body(request, guard, config.max_body_bytes)
        if isinstance(decoded, JSONResponse):
            return decoded
        outcome = parse_batch(
            decoded.data,
            limits=limits,
            max_events=config.max_batch_events,
            received_ms=received_ms,
            sent_at_header=request.headers.get(SENT_AT_HEADER),
            charset=decoded.charset,
        )
        if isinstance(outcome, Rejection):
            log.debug("rejected a request with %d: %d problems", outcome.status, len(outcome.errors))
            if outcome.status == 422:
                events_total.labels("rejected").inc(len(outcome.errors))
            return error_response(outcome)
        events_total.labels("rejected").inc(len(outcome.rejected))
        try:
            # kafka-python blocks; the event loop keeps serving other requests meanwhile.
            await asyncio.to_thread(gateway.publish, outcome.events)
        except ServiceUnavailable as exc:
            log.warning("answering 503 for %d events: %s", len(outcome.events), exc)
            return error_response(body_error(503, str(exc)), headers=retry_after)
        _count_accepted(events_total, outcome)
        return JSONResponse(status_code=202, content=outcome.to_dict())

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

    # Segment, GA4 and Snowplow paths (stream/ingest/standard_routes.py), behind the same guard,
    # limits and gateway.
    app.include_router(
        standard_events_router(
            guard=guard,
            gateway=gateway,
            config=config,
            limits=limits,
            registry=metrics.registry,
            clock_ms=clock_ms,
        )
    )
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
        app,
        host=config.host,
        port=config.port,
        log_level=settings.log_level.lower(),
        log_config=None,
        **uvicorn_options(),
    )
