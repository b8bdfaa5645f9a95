"""The Segment, GA4 and Snowplow endpoints of the collector, with a fake producer."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import httpx
import pytest
from kafka.errors import KafkaTimeoutError

from stream.core.settings import Settings, load_settings
from tests.support.collector_app import collector_app
from tests.support.fakes import FakeProducer
from tests.unit.stream.ingest.adapters.helpers import NOW_MS, payload


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


def make_app(settings: Settings, producer: FakeProducer, **config: Any) -> Any:
    return collector_app(settings, producer, NOW_MS, **config)


def call(
    app: Any, method: str, path: str, content: bytes = b"", headers: dict[str, str] | None = None
) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            return await client.request(
                method, path, content=content, headers={"content-type": "application/json", **(headers or {})}
            )

    return asyncio.run(run())


def post_json(app: Any, path: str, doc: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return call(app, "POST", path, json.dumps(doc).encode(), headers)


def produced(producer: FakeProducer) -> list[dict[str, Any]]:
    return [json.loads(v or b"") for _, _, v in producer.sent]


@pytest.mark.parametrize(
    ("path", "file", "expected"),
    [
        ("/v1/track", "segment_track_product_viewed.json", (1, {}, 0)),
        ("/v1/t", "segment_track_product_viewed.json", (1, {}, 0)),
        ("/v1/batch", "segment_batch.json", (5, {"Song Played": 1, "page": 1}, 1)),
        ("/v1/identify", "segment_identify.json", (0, {}, 1)),
        ("/v1/alias", "segment_alias.json", (0, {}, 1)),
        (
            "/mp/collect?measurement_id=G-XXXX&api_secret=s3cr3t",
            "ga4_purchase.json",
            (2, {"tutorial_begin": 1}, 1),
        ),
        (
            "/com.snowplowanalytics.snowplow/tp2",
            "snowplow_tp2.json",
            (6, {"page_view": 1, "ecommerce:remove_from_cart": 1}, 1),
        ),
    ],
)
def test_each_sender_payload_is_mapped_published_and_counted(
    settings: Settings, path: str, file: str, expected: tuple[int, dict[str, int], int]
) -> None:
    """`expected`: (accepted, ignored, identities); each identity is produced as an identify record
    keyed by the anonymous id."""
    producer = FakeProducer()
    response = post_json(make_app(settings, producer), path, payload(file))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["ignored"], body["identities"]) == expected
    assert body["rejected"] == []
    events = produced(producer)
    assert len(events) == expected[0] + expected[2]
    assert sum(event["type"] == "identify" for event in events) == expected[2]
    for (_, key, _), event in zip(producer.sent, events, strict=True):
        assert key == event["user_id"].encode()
        assert event["received_ms"] == NOW_MS


def test_metrics_count_accepted_and_ignored_per_source(settings: Settings) -> None:
    app = make_app(settings, FakeProducer())
    post_json(app, "/mp/collect", payload("ga4_purchase.json"))
    post_json(app, "/com.snowplowanalytics.snowplow/tp2", payload("snowplow_tp2.json"))
    text = call(app, "GET", "/metrics").text
    assert 'profilestream_collector_standard_events_total{outcome="accepted",source="ga4"} 2.0' in text
    assert 'profilestream_collector_standard_events_total{outcome="ignored",source="ga4"} 1.0' in text
    assert 'profilestream_collector_standard_events_total{outcome="accepted",source="snowplow"} 6.0' in text
    assert 'profilestream_collector_standard_events_total{outcome="ignored",source="snowplow"} 2.0' in text


@pytest.mark.parametrize(
    ("path", "content", "status", "field_name"),
    [
        ("/v1/batch", b'{"batch": {"a": 1}}', 422, "batch"),
        ("/v1/batch", b"{oops", 400, "$"),
        ("/v1/track", b"[1, 2]", 422, "$"),
        ("/mp/collect", b'{"events": []}', 422, "client_id"),
        ("/com.snowplowanalytics.snowplow/tp2", b'{"data": []}', 422, "schema"),
        (
            "/v1/track",
            b'{"event": "Product Viewed", "userId": "u", "properties": {}}',
            422,
            "properties.product_id",
        ),
    ],
)
def test_malformed_payloads_are_4xx_naming_the_field(
    settings: Settings, path: str, content: bytes, status: int, field_name: str
) -> None:
    producer = FakeProducer()
    response = call(make_app(settings, producer), "POST", path, content)
    assert response.status_code == status, response.text
    assert field_name in [e["field"] for e in response.json()["errors"]]
    assert producer.sent == []


def test_a_bad_message_in_a_batch_is_listed_and_the_rest_lands(settings: Settings) -> None:
    producer = FakeProducer()
    batch = payload("segment_batch.json")
    batch["batch"][2]["properties"] = {"name": "no product id"}
    response = post_json(make_app(settings, producer), "/v1/batch", batch)
    assert response.status_code == 200
    assert [(e["index"], e["field"]) for e in response.json()["rejected"]] == [
        (2, "batch[2].properties.product_id")
    ]
    assert response.json()["accepted"] == 4
    assert "m-click-1" not in {e["event_id"] for e in produced(producer)}


def test_only_unknown_events_is_a_200_with_nothing_produced(settings: Settings) -> None:
    producer = FakeProducer()
    body = {"client_id": "c", "events": [{"name": "page_view", "params": {}}]}
    response = post_json(make_app(settings, producer), "/mp/collect", body)
    assert response.status_code == 200
    assert response.json()["ignored"] == {"page_view": 1}
    assert producer.sent == []


def test_gzip_bodies_and_the_body_limit_go_through_the_collectors_checks(settings: Settings) -> None:
    producer = FakeProducer()
    app = make_app(settings, producer)
    raw = json.dumps(payload("snowplow_tp2.json")).encode()
    response = call(
        app, "POST", "/com.snowplowanalytics.snowplow/tp2", gzip.compress(raw), {"content-encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 6
    assert call(app, "POST", "/v1/batch", b"{}", {"content-type": "application/xml"}).status_code == 415
    big = make_app(settings, FakeProducer(), max_body_bytes=1024)
    assert call(big, "POST", "/com.snowplowanalytics.snowplow/tp2", raw).status_code == 413
    # Past the mapped-event bound, messages are rejected one by one (test_standard_bounds.py).
    few = make_app(settings, FakeProducer(), max_mapped_events=3)
    capped = call(few, "POST", "/com.snowplowanalytics.snowplow/tp2", raw)
    assert capped.status_code == 200, capped.text
    assert capped.json()["accepted"] <= 3
    assert all(error["field"].startswith("data[") for error in capped.json()["rejected"])


def test_kafka_down_is_a_503_with_retry_after(settings: Settings) -> None:
    app = make_app(settings, FakeProducer(error=KafkaTimeoutError("no ack")))
    response = post_json(app, "/v1/track", payload("segment_track_product_viewed.json"))
    assert response.status_code == 503
    assert response.headers["retry-after"]


def test_the_token_is_accepted_the_way_each_sender_presents_its_key() -> None:
    settings = load_settings({}, events_topic="t.events", collector_token="s3cr3t")
    producer = FakeProducer()
    app = make_app(settings, producer)
    track = payload("segment_track_product_viewed.json")
    basic = "Basic " + base64.b64encode(b"s3cr3t:").decode()
    assert post_json(app, "/v1/track", track).status_code == 401
    assert (
        post_json(
            app, "/v1/track", track, {"authorization": "Basic " + base64.b64encode(b"nope:").decode()}
        ).status_code
        == 401
    )
    assert post_json(app, "/v1/track", track, {"authorization": basic}).status_code == 200
    assert post_json(app, "/v1/track", track, {"authorization": "Bearer s3cr3t"}).status_code == 200
    ga4 = payload("ga4_view_item.json")
    assert post_json(app, "/mp/collect?measurement_id=G-1&api_secret=wrong", ga4).status_code == 401
    assert post_json(app, "/mp/collect?measurement_id=G-1&api_secret=s3cr3t", ga4).status_code == 200
    snowplow = payload("snowplow_tp2.json")
    assert post_json(app, "/com.snowplowanalytics.snowplow/tp2", snowplow).status_code == 401
    assert (
        post_json(
            app, "/com.snowplowanalytics.snowplow/tp2", snowplow, {"authorization": "Bearer s3cr3t"}
        ).status_code
        == 200
    )
    # The api_secret is no key for other paths.
    assert post_json(app, "/v1/track?api_secret=s3cr3t", track).status_code == 401


def test_the_routes_stay_out_of_the_openapi_document(settings: Settings) -> None:
    paths = call(make_app(settings, FakeProducer()), "GET", "/openapi.json").json()["paths"]
    assert "/v1/events" in paths and "/mp/collect" not in paths


def test_a_number_too_large_to_parse_rejects_its_event_alone_naming_the_senders_field(
    settings: Settings,
) -> None:
    # 5001 digits: json.loads raised Python's ValueError, and the whole body was a 400 on "$".
    big = "1" + "0" * 5000
    body = {
        "client_id": "c1",
        "events": [
            {"name": "view_item", "timestamp_micros": "@", "params": {"items": [{"item_id": "a"}]}},
            {"name": "view_item", "params": {"items": [{"item_id": "b", "price": "@", "quantity": "@"}]}},
        ],
    }
    producer = FakeProducer()
    content = json.dumps(body).replace('"@"', big).encode()
    response = call(make_app(settings, producer), "POST", "/mp/collect", content)
    assert response.status_code == 200, response.text
    [error] = response.json()["rejected"]
    assert (error["index"], error["field"]) == (0, "events[0].timestamp_micros")
    assert error["reason"].startswith("number too large (5001 digits); send microseconds since the epoch")
    assert [event["item_id"] for event in produced(producer) if event["type"] == "view"] == ["b"]
