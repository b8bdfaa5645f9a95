"""Readiness and Prometheus metrics of the HTTP services (no Redis: its port is closed)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from stream.core.settings import load_settings
from stream.serving.api import create_lookup_app


def test_lookups_are_live_but_not_ready_without_redis_and_count_requests_by_route(tmp_path: Path) -> None:
    settings = load_settings(
        {}, redis_url="redis://127.0.0.1:1/0", model_dir=tmp_path / "model", index_dir=tmp_path / "index"
    )
    with TestClient(create_lookup_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "redis unreachable" in ready.json()["reason"]
        # Invalid k: answered before any Redis call, and counted like any request.
        assert client.get("/v1/users/alice-4242/recommendations", params={"k": 0}).status_code == 422
        metrics = client.get("/metrics").text
    assert 'route="/readyz",status="503"' in metrics
    assert 'route="/v1/users/{user_id}/recommendations",status="422"' in metrics
    # Paths carry user ids; the metrics only ever name the route template.
    assert "alice-4242" not in metrics
