"""Collector endpoints at the paths standard trackers already post to (change only the host).

- Segment / RudderStack HTTP API: ``POST /v1/track``, ``/v1/identify``, ``/v1/alias``,
  ``/v1/page``, ``/v1/screen``, ``/v1/group``, ``/v1/batch`` (and analytics.js's short
  ``/v1/t``, ``/v1/i``, ``/v1/a``, ``/v1/p``, ``/v1/s``, ``/v1/g``, ``/v1/b``);
- GA4 Measurement Protocol: ``POST /mp/collect`` (``measurement_id``/``api_secret`` or
  ``firebase_app_id`` in the query string are accepted and not checked);
- Snowplow tracker protocol: ``POST /com.snowplowanalytics.snowplow/tp2``.

Each request goes through the collector's own guard (bearer token, rate limit), content type,
body size limit and Content-Encoding handling, is mapped by `stream.ingest.adapters`, validated
by the worker's validator and published through the collector's Kafka gateway (acks=all).

Answers: 200 ``{"accepted", "ignored": {name: count}, "identities", "rejected": [{"index",
"field", "reason"}], "clamped", "clamped_events": [{"index", "field", "original", "reason"}],
"truncated"}`` once Kafka acknowledged the accepted events
(the senders' own servers answer 2xx too, so their SDKs do not retry a request that landed);
400 unparsable JSON; 413 body too large; 415 content type or encoding; 422 ``{"errors": [...]}``
naming the field when the payload's shape is wrong or no message of it is valid; 401/429 from the
guard; 503 with ``Retry-After`` when Kafka does not acknowledge. A request is never refused whole
for the events it maps to: past ``CollectorConfig.max_mapped_events``, messages are rejected one
by one (`Adapted.cap`). ``identities`` counts the identify records produced. ``/mp/collect``
reads its body as JSON whatever the Content-Type (Google's endpoint does).

Credentials: when ``PROFILESTREAM_COLLECTOR_TOKEN`` is set, a sender may present it the way it
presents its own key: Segment's HTTP Basic auth (the write key as user name), GA4's
``api_secret`` query parameter, or a bearer token (Snowplow's ``customHeaders``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter

from stream.core.errors import InvalidEvent, ServiceUnavailable
from stream.core.events import EventLimits, EventType
from stream.ingest.adapters import Adapted, adapt_ga4, adapt_segment, adapt_snowplow, validate
from stream.ingest.body import (
    Rejection,
    body_error,
    latest_event_ms,
    parse_json,
)
from stream.ingest.gateway import (
    CollectorConfig,
    KafkaGateway,
    RequestGuard,
    error_response,
    read_body,
)

log = logging.getLogger(__name__)

SEGMENT_PATHS = {
    "track": ("/v1/track", "/v1/t"),
    "identify": ("/v1/identify", "/v1/i"),
    "alias": ("/v1/alias", "/v1/a"),
    "page": ("/v1/page", "/v1/p"),
    "screen": ("/v1/screen", "/v1/s"),
    "group": ("/v1/group", "/v1/g"),
    "batch": ("/v1/batch", "/v1/b"),
}
GA4_PATH = "/mp/collect"
SNOWPLOW_PATH = "/com.snowplowanalytics.snowplow/tp2"
Adapter = Callable[[object, int], Adapted]


class StandardMetrics:
    """Messages by source and outcome, in the collector's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "profilestream_collector_standard_events",
            "Standard tracking events by source (segment, ga4, snowplow) and outcome: accepted "
            "(v1 events produced), ignored (unknown event names), identity (logins: identify/alias, "
            "GA4 client_id with user_id, Snowplow duid/tnuid with uid; produced as identify "
            "records), rejected (invalid, listed in the answer).",
            ["source", "outcome"],
            registry=registry,
        )

    def count(self, source: str, outcome: str, amount: int) -> None:
        if amount:
            self.messages.labels(source, outcome).inc(amount)


def standard_events_router(
    *,
    guard: RequestGuard,
    gateway: KafkaGateway,
    config: CollectorConfig,
    limits: EventLimits,
    registry: CollectorRegistry,
    clock_ms: Callable[[], int],
) -> APIRouter:
    """The routes of the module docstring, sharing the collector's guard, limits and gateway."""
    # Left out of /openapi.json: the bodies follow the senders' own specs (the README has the
    # mapping tables), and the collector's schema-driven tests cover POST /v1/events only.
    router = APIRouter(include_in_schema=False)
    metrics = StandardMetrics(registry)
    retry_after = {"Retry-After": str(config.retry_after_s)}

    async def handle(request: Request, source: str, adapter: Adapter) -> JSONResponse:
        received_ms = clock_ms()
        decoded = await read_body(
            _with_sender_credential(request, source),
            guard,
            config.max_body_bytes,
            # Google's endpoint reads the body as JSON whatever its declared type.
            any_content_type=source == "ga4",
        )
        if isinstance(decoded, JSONResponse):
            return decoded
        payload = parse_json(decoded.data, decoded.charset)
        if isinstance(payload, Rejection):
            if source == "ga4" and _looks_like_form(decoded.data):
                return error_response(body_error(400, _FORM_BODY))
            return error_response(payload)
        try:
            adapted = adapter(payload, received_ms)
        except InvalidEvent as exc:
            metrics.count(source, "rejected", 1)
            return error_response(body_error(422, exc.reason, exc.field))
        # The body limit bounds the work; past this bound messages are rejected one by one, never
        # the request whole (a sender drops a batch answered 4xx, and cannot split by events).
        adapted.cap(config.max_mapped_events)
        # An event time past the receive time is impossible here, as on POST /v1/events.
        outcome = validate(
            adapted, limits=limits, now_ms=received_ms, latest_ms=latest_event_ms(received_ms, limits)
        )
        # Only what is produced counts: an identify record the validator refused is in `rejected`.
        identities = sum(1 for event in outcome.events if event.type is EventType.IDENTIFY)
        metrics.count(source, "rejected", len(outcome.errors))
        metrics.count(source, "ignored", sum(adapted.ignored.values()))
        metrics.count(source, "identity", identities)
        if not outcome.events and outcome.errors and not adapted.ignored:
            return error_response(Rejection(422, tuple(outcome.errors)))
        if outcome.events:
            try:
                # kafka-python blocks; the event loop keeps serving other requests meanwhile.
                await asyncio.to_thread(gateway.publish, outcome.events)
            except ServiceUnavailable as exc:
                log.warning("answering 503 for %d %s events: %s", len(outcome.events), source, exc)
                return error_response(body_error(503, str(exc)), headers=retry_after)
        # Identify records travel with the events but are counted apart, as `identities`.
        accepted = sum(1 for event in outcome.events if event.type is not EventType.IDENTIFY)
        metrics.count(source, "accepted", accepted)
        return JSONResponse(
            status_code=200,
            content={
                "accepted": accepted,
                "ignored": dict(adapted.ignored),
                "identities": identities,
                "rejected": [error.to_dict() for error in outcome.errors],
                "clamped": outcome.clamped,
                "clamped_events": [clamp.to_dict() for clamp in outcome.clamped_times],
                "truncated": outcome.truncated,
            },
        )

    def segment_endpoint(implied: str | None) -> Callable[[Request], Awaitable[JSONResponse]]:
        def adapter(payload: object, received_ms: int) -> Adapted:
            return adapt_segment(payload, receive_ms=received_ms, message_type=implied)

        async def post_segment(request: Request) -> JSONResponse:
            return await handle(request, "segment", adapter)

        return post_segment

    for kind, paths in SEGMENT_PATHS.items():
        endpoint = segment_endpoint(None if kind == "batch" else kind)
        for path in paths:
            router.add_api_route(
                path,
                endpoint,
                methods=["POST"],
                summary=f"Segment / RudderStack HTTP API: {kind}",
            )

    @router.post(GA4_PATH, summary="GA4 Measurement Protocol")
    async def post_ga4(request: Request) -> JSONResponse:
        return await handle(request, "ga4", lambda payload, ms: adapt_ga4(payload, receive_ms=ms))

    @router.post(SNOWPLOW_PATH, summary="Snowplow tracker protocol (POST)")
    async def post_snowplow(request: Request) -> JSONResponse:
        return await handle(request, "snowplow", lambda payload, ms: adapt_snowplow(payload, receive_ms=ms))

    return router


_FORM_BODY = (
    "the body is form fields (key=value&...), not JSON; a Measurement Protocol request is one JSON "
    "document sent as the raw request body (requests.post(url, data=json.dumps(payload)), curl -d "
    "'{...}')"
)


def _looks_like_form(body: bytes) -> bool:
    """Whether a body that is not JSON is form-encoded fields (``client_id=1&events=...``)."""
    head = body.lstrip()[:200]
    return bool(re.match(rb"[A-Za-z0-9_.%\-\[\]]+=", head))


def _with_sender_credential(request: Request, source: str) -> Request:
    """`request` with the sender's own way of presenting a key turned into the bearer token the
    collector's guard checks: HTTP Basic auth with the key as user name (Segment's write key) or,
    on the GA4 path only, the ``api_secret`` query parameter."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    token: str | None = None
    if scheme.lower() == "basic":
        try:
            token = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            token = None
    elif not scheme and source == "ga4":
        token = request.query_params.get("api_secret")
    if not token:
        return request
    headers = [(name, raw) for name, raw in request.scope["headers"] if name != b"authorization"]
    headers.append((b"authorization", f"Bearer {token}".encode("latin-1", "replace")))
    return Request({**request.scope, "headers": headers}, request.receive)
