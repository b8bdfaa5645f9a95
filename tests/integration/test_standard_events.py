"""Segment-, GA4- and Snowplow-shaped requests to the real collector land in the real events topic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from stream.core.settings import Settings
from stream.kafka.topics import ensure_topics
from tests.integration.test_collector import consume_all, running_collector

pytestmark = pytest.mark.integration

PAYLOADS = Path(__file__).resolve().parents[1] / "unit" / "stream" / "ingest" / "adapters" / "payloads"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def test_standard_tracker_batches_land_as_v1_events_keyed_by_user(isolated: Settings) -> None:
    ensure_topics(isolated)
    requests = [
        ("/v1/batch", payload("segment_batch.json"), 5),
        ("/mp/collect?measurement_id=G-TEST&api_secret=unused", payload("ga4_purchase.json"), 2),
        ("/mp/collect?measurement_id=G-TEST&api_secret=unused", payload("ga4_search.json"), 2),
        ("/com.snowplowanalytics.snowplow/tp2", payload("snowplow_tp2.json"), 6),
    ]
    with running_collector(isolated) as base:
        for path, body, accepted in requests:
            # As the senders send them: GA4's fetch() default and Snowplow's JSON with a charset.
            response = httpx.post(
                f"{base}{path}",
                content=json.dumps(body).encode(),
                headers={"content-type": "text/plain;charset=UTF-8"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == accepted, response.text
            assert response.json()["rejected"] == []
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
    records = consume_all(isolated, isolated.events_topic)
    by_id = {value["event_id"]: (key, value) for key, value, _ in records}
    assert len(records) == len(by_id) == 15
    for key, value in by_id.values():
        assert key == value["user_id"].encode()
        assert value["v"] == 1 and isinstance(value["received_ms"], int)
    assert by_id["m-order-1:1"][1]["item_id"] == "505bd76785ebb509fc183733"
    assert by_id["m-search-1"][1]["query"] == "blue roses"
    assert {
        v["item_id"] for _, v in by_id.values() if v["context"]["source"] == "ga4" and v["type"] == "purchase"
    } == {
        "SKU_12345",
        "SKU_12346",
    }
    assert by_id["4b0a3f57-1e1d-4f4a-b0e6-7a4d8b7c6e21:0"][1]["type"] == "purchase"
    assert by_id["a8f3e2d1-5b6c-4d7e-8f90-1a2b3c4d5e6f"][1]["query"] == "unified log"
    # Snowplow's derived timestamp: 250 ms between creation and sending, on the device's clock.
    view = by_id["c6ef3124-b53a-4b13-a233-0088f79dcbcb"][1]
    assert view["ts_ms"] == view["received_ms"] - 250
    assert (
        'profilestream_collector_standard_events_total{outcome="accepted",source="snowplow"} 6.0' in metrics
    )


def test_a_malformed_standard_payload_is_a_4xx_and_nothing_lands(isolated: Settings) -> None:
    ensure_topics(isolated)
    with running_collector(isolated) as base:
        response = httpx.post(f"{base}/v1/batch", json={"batch": "nope"}, timeout=30)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "batch"
    assert consume_all(isolated, isolated.events_topic) == []
