"""Segment-, GA4- and Snowplow-shaped requests to the real collector land in the real events topic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from stream.core.events import Event, EventLimits, event_from_dict
from stream.core.identity import MERGED_FROM
from stream.core.settings import Settings, child_environment
from stream.kafka.drain import end_offsets, stored_positions
from stream.kafka.topics import ensure_topics
from stream.redis.activity import RECENT_KIND
from stream.redis.reco_store import EMB_KIND, RECO_KIND
from tests.integration import convergence
from tests.integration.convergence import converge, offline, redis_state
from tests.integration.test_collector import consume_all, running_collector
from tests.integration.worker import start_worker, stop_worker

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
    everything = consume_all(isolated, isolated.events_topic)
    # The logins (Segment's identify, GA4's client_id with a user_id in both requests, Snowplow's
    # duid with a uid) travel as identify records keyed by the anonymous id.
    logins = [(key, value) for key, value, _ in everything if value["type"] == "identify"]
    assert sorted((key, value["known_user_id"]) for key, value in logins) == [
        (b"123456.7654321", "XXXXX"),
        (b"123456.7654321", "XXXXX"),
        (b"507f191e810c19729de860ea", "019mr8mf4r"),
        (b"d2c0f1e8-6c55-4a0b-9c1e-3b6a9f7e2d44", "shopper-7"),
    ]
    records = [record for record in everything if record[1]["type"] != "identify"]
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


# --- a visitor who logs in, in each sender's shape: collector and files end the same way --------

ANONYMOUS = {"segment": "seg-anon", "ga4": "ga-anon.1", "snowplow": "sp-anon"}
KNOWN = {"segment": "seg-user", "ga4": "ga-user", "snowplow": "sp-user"}
ECOMMERCE = "com.snowplowanalytics.snowplow.ecommerce"
ROUTES = {
    "segment": "/v1/batch",
    "ga4": "/mp/collect?measurement_id=G-TEST&api_secret=unused",
    "snowplow": "/com.snowplowanalytics.snowplow/tp2",
}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def segment_login(t: int) -> list[dict[str, Any]]:
    """One batch: anonymous browsing, identify, then an order as the known user. No sentAt: the
    device times stand as sent, in the collector and in files alike."""
    anonymous = {"anonymousId": "seg-anon"}
    return [
        {
            "batch": [
                {"type": "track", "event": "Product Viewed", **anonymous, "messageId": "seg-1",
                 "originalTimestamp": iso(t + 1_000), "properties": {"product_id": "sku-00011"}},
                {"type": "track", "event": "Products Searched", **anonymous, "messageId": "seg-2",
                 "originalTimestamp": iso(t + 2_000), "properties": {"query": "gel pens"}},
                {"type": "track", "event": "Product Added", **anonymous, "messageId": "seg-3",
                 "originalTimestamp": iso(t + 3_000), "properties": {"product_id": "sku-00012"}},
                {"type": "identify", **anonymous, "userId": "seg-user", "messageId": "seg-4",
                 "originalTimestamp": iso(t + 4_000), "traits": {"plan": "pro"}},
                {"type": "track", "event": "Order Completed", **anonymous, "userId": "seg-user",
                 "messageId": "seg-5", "originalTimestamp": iso(t + 5_000),
                 "properties": {"order_id": "o-1",
                                "products": [{"product_id": "sku-00013"}, {"sku": "sku-00014"}]}},
            ]
        }
    ]  # fmt: skip


def ga4_login(t: int) -> list[dict[str, Any]]:
    """Two requests: the browser's client id alone, then with the user id (signed in)."""
    return [
        {
            "client_id": "ga-anon.1",
            "timestamp_micros": (t + 1_000) * 1000,
            "events": [
                {"name": "view_item", "params": {"items": [{"item_id": "sku-00021"}]}},
                {"name": "search", "params": {"search_term": "stapler"}},
            ],
        },
        {
            "client_id": "ga-anon.1",
            "user_id": "ga-user",
            "timestamp_micros": (t + 5_000) * 1000,
            "events": [{"name": "add_to_cart", "params": {"items": [{"item_id": "sku-00022"}]}}],
        },
    ]


def snowplow_event(eid: str, action: str, product: str, ts_ms: int, uid: str | None = None) -> dict[str, Any]:
    action_event = {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {
            "schema": f"iglu:{ECOMMERCE}/snowplow_ecommerce_action/jsonschema/1-0-2",
            "data": {"type": action},
        },
    }
    entities = {
        "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
        "data": [
            {
                "schema": f"iglu:{ECOMMERCE}/product/jsonschema/1-0-0",
                "data": {"id": product, "category": "office", "currency": "EUR", "price": 3.5},
            }
        ],
    }
    event = {
        "e": "ue", "eid": eid, "tv": "js-3.17.0", "p": "web", "duid": "sp-anon", "ttm": str(ts_ms),
        "ue_pr": json.dumps(action_event), "co": json.dumps(entities),
    }  # fmt: skip
    if uid is not None:
        event["uid"] = uid
    return event


def snowplow_login(t: int) -> list[dict[str, Any]]:
    """One tp2 body: product views under the domain user id, then a cart add once signed in."""
    return [
        {
            "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
            "data": [
                snowplow_event("sp-1", "product_view", "sku-00031", t + 1_000),
                snowplow_event("sp-2", "product_view", "sku-00032", t + 2_000),
                snowplow_event("sp-3", "add_to_cart", "sku-00033", t + 5_000, uid="sp-user"),
            ],
        }
    ]


def write_sender_files(directory: Path, t: int) -> dict[str, Path]:
    bodies = {"segment": segment_login(t), "ga4": ga4_login(t), "snowplow": snowplow_login(t)}
    files = {}
    for source, lines in bodies.items():
        files[source] = directory / f"{source}.jsonl"
        files[source].write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return files


def cli(settings: Settings, *args: str) -> None:
    env = child_environment(os.environ, settings) | {"HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", *args], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"profilestream {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def topic_events(settings: Settings) -> list[Event]:
    """The events topic's events in Kafka order, without those a worker moved at a login (the
    offline recomputation moves them itself)."""
    limits = EventLimits.from_settings(settings)
    now_ms = int(time.time() * 1000)
    return [
        event_from_dict(value, limits=limits, now_ms=now_ms)
        for _, value, _ in consume_all(settings, settings.events_topic)
        if MERGED_FROM not in value.get("context", {})
    ]


def anonymous_keys(settings: Settings) -> list[str]:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        return [
            f"{user}:{kind}"
            for user in ANONYMOUS.values()
            for kind in (RECO_KIND, EMB_KIND, RECENT_KIND)
            if redis.exists(settings.redis_key(kind, user))
        ]
    finally:
        redis.close()


def settle(settings: Settings, worker: subprocess.Popen[bytes], log: Path, done: Callable[[], bool]) -> None:
    """Wait until the worker has processed every record (moved events included) and `done()`."""
    deadline = time.monotonic() + convergence.CONVERGE_TIMEOUT_S
    while not (stored_positions(settings.worker_web_port) == end_offsets(settings) and done()):
        if worker.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"did not settle\n{log.read_text(errors='replace')[-2500:]}")
        time.sleep(1.0)


@pytest.mark.slow
def test_each_senders_login_ends_as_the_known_users_recommendations_and_files_replay_the_same(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated.model_copy(update={"batch_max_events": 50, "batch_max_wait_ms": 100})
    ensure_topics(settings)
    files = write_sender_files(tmp_path, int(time.time() * 1000) - 3_600_000)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        with running_collector(settings) as base:
            for source, path in files.items():
                for line in path.read_text(encoding="utf-8").splitlines():
                    response = httpx.post(
                        f"{base}{ROUTES[source]}",
                        content=line.encode(),
                        headers={"content-type": "application/json"},
                        timeout=30,
                    )
                    assert response.status_code == 200, response.text
                    assert response.json()["rejected"] == [], response.text
        expected = offline(settings, topic_events(settings))
        # Every visitor logged in: only the known users have recommendations.
        assert set(expected) == set(KNOWN.values())
        state = converge(settings, expected, worker, log)
        settle(settings, worker, log, lambda: not anonymous_keys(settings))

        # The same files through `load` and `replay`: the same event ids and times, so the known
        # users' entries stay byte-identical and the anonymous keys are removed again.
        for source, path in files.items():
            out = tmp_path / f"{source}.v1.jsonl"
            cli(settings, "load", source, str(path), str(out))
            cli(settings, "replay", str(out))
        settle(settings, worker, log, lambda: not anonymous_keys(settings))
        assert redis_state(settings, sorted(expected)) == state
    finally:
        assert stop_worker(worker) == 0
