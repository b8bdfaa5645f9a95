"""Prometheus metrics for the HTTP services (collector, lookups), served at ``GET /metrics``.

Requests are counted by route *template* (``/v1/users/{user_id}/recommendations``), never by the
raw path: a path holds user ids, which would leak into the metrics and explode their cardinality.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SECONDS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"


class HttpMetrics:
    """Request counts and latencies of one service, in a registry of its own."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"profilestream_{service}_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency_s = Histogram(
            f"profilestream_{service}_request_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency_s.labels(route).observe(seconds)

    def install(self, app: FastAPI) -> None:
        """Time every request and serve the registry at ``/metrics``."""

        @app.middleware("http")
        async def _timed(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            started = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            # path_format drops convertors: "{user_id:path}" is counted as "{user_id}".
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED_ROUTE
            self.observe(template, request.method, response.status_code, time.perf_counter() - started)
            return response

        @app.get("/metrics", include_in_schema=False)
        async def _metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=PROMETHEUS_CONTENT_TYPE)
