"""Request order is receive order, on real Kafka and Redis with a real worker: an event after a
`forget` in the same request to ``POST /v1/events`` survives the forget, the events before it do
not, and Redis ends equal to the offline recomputation of the records the collector produced."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from stream.core.events import EventLimits, event_from_dict
from stream.core.settings import Settings
from stream.ingest.collector import create_collector_app
from stream.kafka.topics import ensure_topics
from tests.integration.convergence import converge, offline
from tests.integration.test_collector import consume_all
from tests.integration.worker import start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def post(app: Any, doc: Any) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            return await client.post("/v1/events", json=doc)

    return asyncio.run(run())


def test_an_event_after_a_forget_in_one_request_survives_it(isolated: Settings, tmp_path: Path) -> None:
    settings = isolated.model_copy(update={"batch_max_events": 50, "batch_max_wait_ms": 100})
    ensure_topics(settings)
    now = int(time.time() * 1000)
    app = create_collector_app(settings, clock_ms=lambda: now)
    user = "fo-u1"
    batch = [
        {"event_id": "fo-a", "user_id": user, "type": "view", "item_id": "sku-00090", "ts_ms": now - 3000},
        {"event_id": "fo-f", "user_id": user, "type": "forget", "ts_ms": now - 2000},
        {"event_id": "fo-b", "user_id": user, "type": "view", "item_id": "sku-00091", "ts_ms": now - 1000},
    ]
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        response = post(app, batch)
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 3
        records = consume_all(settings, settings.events_topic)
        limits = EventLimits.from_settings(settings)
        events = [event_from_dict(value, limits=limits, now_ms=now) for _, value, _ in records]
        assert [e.received_ms for e in events] == [now, now, now + 1]
        expected = offline(settings, events)
        # View B is the user's window after the forget: a profile, not an empty one.
        assert user in expected
        converge(settings, expected, worker, log)
    finally:
        app.state.gateway.close()
        stop_worker(worker)
