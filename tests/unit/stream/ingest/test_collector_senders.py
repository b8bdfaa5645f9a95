"""The collector and the SDK as real senders use them (breaker round G): reserved context keys,
request order around a forget, batches mapping to many events, GA4 without a JSON content type,
Snowplow's CORS, identity counts, self-identifies, GA4 ids without a time and GA4 consent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from stream.core.errors import InvalidEvent
from stream.core.events import Event, EventLimits, EventType, event_from_dict
from stream.core.settings import Settings, load_settings
from stream.core.window import Window, WindowConfig, apply_events
from stream.ingest.sdk import ProfilestreamProducer
from tests.support.collector_app import collector_app
from tests.support.fakes import FakeProducer

NOW_MS = 1_764_000_000_000
ORIGIN = "https://shop.example"
SNOWPLOW_ECOMMERCE = "com.snowplowanalytics.snowplow.ecommerce"


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


def call(
    app: Any,
    method: str,
    path: str,
    content: bytes = b"",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            return await client.request(method, path, content=content, headers=headers or {})

    return asyncio.run(run())


def post_json(app: Any, path: str, doc: Any, content_type: str | None = "application/json") -> httpx.Response:
    headers = {} if content_type is None else {"content-type": content_type}
    return call(app, "POST", path, json.dumps(doc).encode(), headers)


def produced(producer: FakeProducer) -> list[Event]:
    limits = EventLimits()
    return [event_from_dict(json.loads(v or b""), limits=limits, now_ms=NOW_MS) for _, _, v in producer.sent]


def view(n: int, user: str = "u1", **changes: Any) -> dict[str, Any]:
    return {
        "event_id": f"e-{n}",
        "user_id": user,
        "type": "view",
        "item_id": f"sku-{n}",
        "ts_ms": NOW_MS - 1000,
        **changes,
    }


def forget(n: int, user: str = "u1", **changes: Any) -> dict[str, Any]:
    return {"event_id": f"f-{n}", "user_id": user, "type": "forget", "ts_ms": NOW_MS - 500, **changes}


# --- 4. reserved context keys ------------------------------------------------------------------


RESERVED = ["forget_of", "merged_from"]


@pytest.mark.parametrize("key", RESERVED)
@pytest.mark.parametrize(
    "make",
    [
        lambda key: forget(1, context={key: "someone"}),
        lambda key: view(1, context={key: "anon-1", "page": "home"}),
        lambda key: {**forget(1), "context": {key: None}},
    ],
    ids=["forget", "view", "null-value"],
)
@pytest.mark.parametrize("shape", ["single", "batch", "envelope"])
def test_a_worker_only_context_key_from_a_client_rejects_that_event_alone(
    settings: Settings, key: str, make: Any, shape: str
) -> None:
    producer = FakeProducer()
    app = collector_app(settings, producer, NOW_MS)
    bad = make(key)
    others = [view(2), view(3, user="u2")]
    if shape == "single":
        response = post_json(app, "/v1/events", bad)
        assert response.status_code == 422, response.text
        errors = response.json()["errors"]
    else:
        events = [others[0], bad, others[1]]
        doc: Any = events if shape == "batch" else {"sent_at_ms": NOW_MS, "events": events}
        response = post_json(app, "/v1/events", doc)
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 2
        errors = response.json()["rejected"]
        assert [e.event_id for e in produced(producer)] == ["e-2", "e-3"]
    assert len(errors) == 1
    assert errors[0]["field"] == f"context.{key}"
    assert "reserved for the worker" in errors[0]["reason"]
    assert errors[0]["index"] == (0 if shape == "single" else 1)


@pytest.mark.parametrize("key", ["Forget_Of", "forget-of", "forgetof", "merged"])
def test_keys_that_only_look_reserved_are_ordinary_context(settings: Settings, key: str) -> None:
    producer = FakeProducer()
    response = post_json(
        collector_app(settings, producer, NOW_MS), "/v1/events", forget(1, context={key: "x"})
    )
    assert response.status_code == 202, response.text
    assert produced(producer)[0].context == {key: "x"}


@pytest.mark.parametrize("key", RESERVED)
@pytest.mark.parametrize("event_type", ["forget", "view"])
def test_the_sdk_refuses_a_worker_only_context_key(settings: Settings, key: str, event_type: str) -> None:
    fake = FakeProducer()
    sdk = ProfilestreamProducer(settings, producer_factory=lambda _: fake, clock_ms=lambda: NOW_MS)
    item = {"item_id": "sku-1"} if event_type == "view" else {}
    with pytest.raises(InvalidEvent) as raised:
        sdk.track("u1", event_type, context={key: "someone"}, **item)
    assert raised.value.field == f"context.{key}"
    built = Event("e-1", "u1", EventType.FORGET, NOW_MS, context={key: "x"})
    with pytest.raises(InvalidEvent) as sent:
        sdk.send(built)
    assert sent.value.field == f"context.{key}"
    assert fake.sent == []


@pytest.mark.parametrize(
    ("path", "doc"),
    [
        (
            "/v1/track",
            {
                "event": "Product Viewed",
                "userId": "u1",
                "messageId": "m1",
                "properties": {"product_id": "p", "forget_of": "x", "merged_from": "y"},
                "context": {"forget_of": "x", "merged_from": "y"},
            },
        ),
        (
            "/mp/collect",
            {
                "client_id": "c.1",
                "events": [{"name": "view_item", "params": {"forget_of": "x", "items": [{"item_id": "p"}]}}],
            },
        ),
    ],
)
def test_sender_fields_named_like_reserved_keys_never_reach_the_context(
    settings: Settings, path: str, doc: Any
) -> None:
    """Guard: the adapters build the context from named fields only (passes without the fix)."""
    producer = FakeProducer()
    response = post_json(collector_app(settings, producer, NOW_MS), path, doc)
    assert response.status_code == 200, response.text
    for event in produced(producer):
        assert not {"forget_of", "merged_from"} & set(event.context)


# --- 13. request order is receive order around a forget -----------------------------------------


def window_of(events: list[Event], user: str) -> Window:
    return apply_events(Window(), [e for e in events if e.user_id == user], WindowConfig()).window


@pytest.mark.parametrize(
    ("batch", "kept"),
    [
        ([view(1), forget(1), view(2)], ["e-2"]),
        ([forget(1), view(1), view(2)], ["e-1", "e-2"]),
        ([view(1), forget(1), view(2), forget(2), view(3)], ["e-3"]),
        ([view(1), forget(1), forget(2), view(2)], ["e-2"]),
        # A forget the validator refuses cuts nothing.
        ([view(1), forget(1, item_id="sku-1"), view(2)], ["e-1", "e-2"]),
        # Another user's forget moves the stamp too, harmlessly.
        ([view(1), forget(1, user="u2"), view(2)], ["e-1", "e-2"]),
    ],
    ids=[
        "view-forget-view",
        "forget-first",
        "two-forgets",
        "forgets-in-a-row",
        "refused-forget",
        "other-user",
    ],
)
def test_events_after_a_forget_in_the_same_request_count_as_received_after_it(
    settings: Settings, batch: list[dict[str, Any]], kept: list[str]
) -> None:
    producer = FakeProducer()
    response = post_json(collector_app(settings, producer, NOW_MS), "/v1/events", batch)
    assert response.status_code == 202, response.text
    events = produced(producer)
    assert [e.event_id for e in window_of(events, "u1").events] == kept
    # Each event is received no earlier than the one before it, a forget strictly before what follows.
    received = [e.received_ms or 0 for e in events]
    assert received == sorted(received)
    assert received[0] == NOW_MS


# --- 7. sender batches mapping to more than 500 events ------------------------------------------


def segment_orders(orders: int, products: int) -> dict[str, Any]:
    batch: list[dict[str, Any]] = [
        {
            "type": "track",
            "event": "Order Completed",
            "userId": f"bo-u{i}",
            "messageId": f"m-{i}",
            "properties": {
                "order_id": f"o{i}",
                "products": [{"product_id": f"sku-{j}"} for j in range(products)],
            },
        }
        for i in range(orders)
    ]
    batch.append(
        {
            "type": "track",
            "event": "Product Viewed",
            "userId": "bo-view",
            "messageId": "m-view",
            "properties": {"product_id": "sku-1"},
        }
    )
    return {"batch": batch}


def ga4_items(events: int, items: int) -> dict[str, Any]:
    return {
        "client_id": "bo.1",
        "events": [
            {"name": "view_item", "params": {"items": [{"item_id": f"sku-{j}"} for j in range(items)]}}
            for _ in range(events)
        ],
    }


def snowplow_products(events: int, products: int) -> dict[str, Any]:
    def encoded(doc: Any) -> str:
        import base64

        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    action = {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {
            "schema": f"iglu:{SNOWPLOW_ECOMMERCE}/snowplow_ecommerce_action/jsonschema/1-0-2",
            "data": {"type": "product_view"},
        },
    }
    entities = {
        "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
        "data": [
            {
                "schema": "iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0",
                "data": {"id": f"p{j}"},
            }
            for j in range(products)
        ],
    }
    return {
        "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
        "data": [
            {"e": "ue", "eid": f"eid-{i}", "duid": "d1", "ue_px": encoded(action), "cx": encoded(entities)}
            for i in range(events)
        ],
    }


@pytest.mark.parametrize(
    ("path", "doc", "expected"),
    [
        ("/v1/batch", segment_orders(99, 6), 595),
        ("/mp/collect", ga4_items(21, 30), 630),
        ("/mp/collect", ga4_items(25, 200), 5000),
        ("/com.snowplowanalytics.snowplow/tp2", snowplow_products(30, 30), 900),
    ],
    ids=["segment-595", "ga4-630", "ga4-max-5000", "snowplow-900"],
)
def test_a_valid_sender_batch_mapping_to_more_than_500_events_lands_whole(
    settings: Settings, path: str, doc: Any, expected: int
) -> None:
    producer = FakeProducer()
    response = post_json(collector_app(settings, producer, NOW_MS), path, doc)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == expected
    assert response.json()["rejected"] == []
    assert len(producer.sent) == expected


@pytest.mark.parametrize(
    ("path", "doc", "kept", "rejected"),
    [
        # 3 orders of 4 products and a view; at most 10: orders 0 and 1 land, order 2 and the view not.
        ("/v1/batch", segment_orders(3, 4), 8, ["batch[2]", "batch[3]"]),
        ("/mp/collect", ga4_items(4, 3), 9, ["events[3]"]),
        ("/com.snowplowanalytics.snowplow/tp2", snowplow_products(3, 4), 8, ["data[2]"]),
    ],
)
def test_past_the_mapped_event_bound_messages_are_rejected_one_by_one(
    settings: Settings, path: str, doc: Any, kept: int, rejected: list[str]
) -> None:
    producer = FakeProducer()
    response = post_json(collector_app(settings, producer, NOW_MS, max_mapped_events=10), path, doc)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == kept
    assert [e["field"] for e in body["rejected"]] == rejected
    assert all("limit of 10 events" in e["reason"] for e in body["rejected"])


def test_one_message_over_the_bound_is_rejected_alone_saying_to_split_it(settings: Settings) -> None:
    producer = FakeProducer()
    app = collector_app(settings, producer, NOW_MS, max_mapped_events=10)
    response = post_json(app, "/v1/track", segment_orders(1, 11)["batch"][0])
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "$"
    assert "split its items" in error["reason"]


# --- 8. GA4 Measurement Protocol whatever the content type --------------------------------------


GA4_VIEW: dict[str, Any] = {
    "client_id": "ct.1",
    "events": [{"name": "view_item", "params": {"items": [{"item_id": "sku-1"}]}}],
}


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/x-www-form-urlencoded",
        "text/plain;charset=UTF-8",
        "application/octet-stream",
        "application/json",
    ],
)
def test_ga4_reads_the_body_as_json_whatever_its_declared_type(
    settings: Settings, content_type: str | None
) -> None:
    producer = FakeProducer()
    response = post_json(
        collector_app(settings, producer, NOW_MS),
        "/mp/collect?measurement_id=G-1&api_secret=x",
        GA4_VIEW,
        content_type,
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1


@pytest.mark.parametrize(
    "body",
    [b"client_id=ct.1&events=%5B%5D", b"measurement_id=G-1&client_id=1", b"events[0][name]=view_item"],
)
def test_a_real_form_body_on_ga4_is_a_400_naming_the_fix(settings: Settings, body: bytes) -> None:
    response = call(
        collector_app(settings, FakeProducer(), NOW_MS),
        "POST",
        "/mp/collect",
        body,
        {"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400, response.text
    assert "raw request body" in response.json()["errors"][0]["reason"]


def test_other_routes_keep_refusing_a_form_content_type(settings: Settings) -> None:
    app = collector_app(settings, FakeProducer(), NOW_MS)
    assert post_json(app, "/v1/events", view(1), "application/x-www-form-urlencoded").status_code == 415


# --- 9. CORS for Snowplow's browser tracker -----------------------------------------------------


@pytest.mark.parametrize(
    "requested",
    ["content-type,sp-anonymous", "Content-Type, SP-Anonymous", "content-type", "authorization,content-type"],
)
def test_snowplows_preflight_passes_and_credentials_are_allowed_for_a_listed_origin(
    settings: Settings, requested: str
) -> None:
    app = collector_app(settings, FakeProducer(), NOW_MS, cors_origins=(ORIGIN,))
    preflight = call(
        app,
        "OPTIONS",
        "/com.snowplowanalytics.snowplow/tp2",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": requested,
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert preflight.headers["access-control-allow-credentials"] == "true"
    actual = call(
        app,
        "POST",
        "/com.snowplowanalytics.snowplow/tp2",
        json.dumps(snowplow_products(1, 1)).encode(),
        {"origin": ORIGIN, "content-type": "application/json; charset=UTF-8", "sp-anonymous": "*"},
    )
    assert actual.status_code == 200, actual.text
    assert actual.headers["access-control-allow-origin"] == ORIGIN
    assert actual.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize("origins", [("*",), ("*", ORIGIN)])
def test_credentials_are_never_allowed_with_a_wildcard_origin(
    settings: Settings, origins: tuple[str, ...]
) -> None:
    app = collector_app(settings, FakeProducer(), NOW_MS, cors_origins=origins)
    response = call(
        app,
        "POST",
        "/v1/events",
        json.dumps(view(1)).encode(),
        {"origin": "https://evil.example", "content-type": "application/json"},
    )
    assert response.status_code == 202
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["access-control-allow-origin"] == "*"


def test_an_unlisted_origin_gets_no_allow_origin(settings: Settings) -> None:
    app = collector_app(settings, FakeProducer(), NOW_MS, cors_origins=(ORIGIN,))
    response = call(
        app,
        "POST",
        "/v1/events",
        json.dumps(view(1)).encode(),
        {"origin": "https://evil.example", "content-type": "application/json"},
    )
    assert "access-control-allow-origin" not in response.headers


# --- 11. identities count what was produced; over-long message ids ------------------------------


@pytest.mark.parametrize(
    "message",
    [
        {"type": "identify", "userId": "k" * 200, "anonymousId": "a1", "messageId": "m1"},
        {"type": "alias", "userId": "k1", "previousId": "a\u202e1", "messageId": "m1"},
        {"type": "identify", "userId": "k1", "anonymousId": "a1", "messageId": "m\u202e1"},
    ],
    ids=["long-userId", "bidi-previousId", "bidi-messageId"],
)
def test_a_refused_identity_is_not_counted_and_alone_is_a_422(
    settings: Settings, message: dict[str, Any]
) -> None:
    producer = FakeProducer()
    app = collector_app(settings, producer, NOW_MS)
    alone = post_json(app, f"/v1/{message['type']}", message)
    assert alone.status_code == 422, alone.text
    assert producer.sent == []
    track = {
        "type": "track",
        "event": "Product Viewed",
        "userId": "u1",
        "messageId": "t1",
        "properties": {"product_id": "p"},
    }
    mixed = post_json(app, "/v1/batch", {"batch": [message, track]})
    assert mixed.status_code == 200, mixed.text
    assert (mixed.json()["accepted"], mixed.json()["identities"]) == (1, 0)
    assert [e["index"] for e in mixed.json()["rejected"]] == [0]
    metrics = call(app, "GET", "/metrics").text
    assert 'profilestream_collector_standard_events_total{outcome="identity",source="segment"}' not in metrics


@pytest.mark.parametrize("kind", ["identify", "alias", "track"])
def test_an_over_long_message_id_is_hashed_the_same_way_for_every_message_type(
    settings: Settings, kind: str
) -> None:
    long_id = "m" * 200
    message: dict[str, Any] = {"type": kind, "userId": "k1", "messageId": long_id}
    if kind == "identify":
        message["anonymousId"] = "a1"
    elif kind == "alias":
        message["previousId"] = "a1"
    else:
        message.update(event="Product Viewed", properties={"product_id": "p"})
    ids = []
    for _ in range(2):  # a resend maps to the same id
        producer = FakeProducer()
        response = post_json(collector_app(settings, producer, NOW_MS), f"/v1/{kind}", message)
        assert response.status_code == 200, response.text
        assert response.json()["rejected"] == []
        assert response.json()["identities" if kind != "track" else "accepted"] == 1
        ids += [e.event_id for e in produced(producer)]
    order = {
        "type": "track", "event": "Order Completed", "userId": "k1", "messageId": long_id,
        "properties": {"products": [{"product_id": "p"}]},
    }  # fmt: skip
    producer = FakeProducer()
    post_json(collector_app(settings, producer, NOW_MS), "/v1/track", order)
    # One id per message whatever its type, and an order's products derive theirs from it.
    assert ids[0] == ids[1] and len(ids[0]) <= 128
    assert produced(producer)[0].event_id == f"{ids[0]}:0"


# --- 16. self-identify ---------------------------------------------------------------------------


def identify(user: str, known: str, n: int = 1) -> dict[str, Any]:
    return {
        "event_id": f"i-{n}",
        "user_id": user,
        "type": "identify",
        "known_user_id": known,
        "ts_ms": NOW_MS - 100,
    }


@pytest.mark.parametrize("user", ["u1", "42", "ü-user"])
def test_a_self_identify_is_refused_naming_known_user_id(settings: Settings, user: str) -> None:
    producer = FakeProducer()
    app = collector_app(settings, producer, NOW_MS)
    alone = post_json(app, "/v1/events", identify(user, user))
    assert alone.status_code == 422, alone.text
    assert alone.json()["errors"][0]["field"] == "known_user_id"
    batch = post_json(app, "/v1/events", [identify(user, user), identify(user, "known-1", 2)])
    assert batch.status_code == 202, batch.text
    assert [(e["index"], e["field"]) for e in batch.json()["rejected"]] == [(0, "known_user_id")]
    assert [e.event_id for e in produced(producer)] == ["i-2"]


def test_the_sdk_refuses_sending_a_self_identify(settings: Settings) -> None:
    fake = FakeProducer()
    sdk = ProfilestreamProducer(settings, producer_factory=lambda _: fake, clock_ms=lambda: NOW_MS)
    with pytest.raises(InvalidEvent) as raised:
        sdk.send(Event("i-1", "u1", EventType.IDENTIFY, NOW_MS, known_user_id="u1"))
    assert raised.value.field == "known_user_id"


# --- 6. GA4 ids without timestamp_micros ---------------------------------------------------------


def ga4_ids(settings: Settings, doc: Any, now_ms: int) -> list[str]:
    producer = FakeProducer()
    response = post_json(collector_app(settings, producer, now_ms), "/mp/collect", doc)
    assert response.status_code == 200, response.text
    return [e.event_id for e in produced(producer)]


@pytest.mark.parametrize(
    "doc",
    [
        GA4_VIEW,
        {
            "client_id": "c.1",
            "user_id": "k1",
            "events": [{"name": "search", "params": {"search_term": "desk"}}],
        },
        {
            "client_id": "c.1",
            "events": [
                {
                    "name": "purchase",
                    "params": {"transaction_id": "t1", "items": [{"item_id": "a"}, {"item_id": "b"}]},
                }
            ],
        },
    ],
    ids=["view", "search-and-login", "purchase"],
)
def test_a_ga4_resend_without_a_time_gets_the_same_ids(settings: Settings, doc: Any) -> None:
    first = ga4_ids(settings, doc, NOW_MS)
    assert ga4_ids(settings, doc, NOW_MS + 60_000) == first
    assert len(set(first)) == len(first)


def test_identical_ga4_events_of_one_request_keep_distinct_ids(settings: Settings) -> None:
    doc = {"client_id": "c.1", "events": [GA4_VIEW["events"][0]] * 3}
    ids = ga4_ids(settings, doc, NOW_MS)
    assert len(set(ids)) == 3


def test_a_different_ga4_request_without_a_time_gets_other_ids(settings: Settings) -> None:
    other = {
        **GA4_VIEW,
        "events": [{"name": "view_item", "params": {"items": [{"item_id": "sku-1"}], "page": "/b"}}],
    }
    assert set(ga4_ids(settings, GA4_VIEW, NOW_MS)).isdisjoint(ga4_ids(settings, other, NOW_MS))


# --- 17. GA4 consent -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"non_personalized_ads": True}, "non_personalized_ads: true"),
        ({"non_personalized_ads": "TRUE"}, "non_personalized_ads: true"),
        ({"consent": {"ad_personalization": "DENIED"}}, "consent.ad_personalization: DENIED"),
        (
            {"consent": {"ad_user_data": "GRANTED", "ad_personalization": "denied"}},
            "consent.ad_personalization: denied",
        ),
        ({"consent": {"ad_personalization": "maybe"}}, "consent.ad_personalization: maybe"),
    ],
)
def test_ga4_events_without_personalisation_consent_are_not_used(
    settings: Settings, extra: dict[str, Any], key: str
) -> None:
    producer = FakeProducer()
    doc = {
        "client_id": "c.1",
        "user_id": "k1",
        **extra,
        "events": GA4_VIEW["events"] * 2 + [{"name": "page_view"}],
    }
    response = post_json(collector_app(settings, producer, NOW_MS), "/mp/collect", doc)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["identities"]) == (0, 0)
    assert producer.sent == []
    [(name, count)] = [(n, c) for n, c in body["ignored"].items() if n != "page_view"]
    # Two views and the login link, each withheld and counted under the field that withheld it.
    assert name.startswith(key) and "not used for personalisation" in name
    assert count == 3


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"non_personalized_ads": False},
        {"consent": {"ad_personalization": "GRANTED"}},
        {"consent": {"ad_user_data": "DENIED"}},
    ],
)
def test_ga4_events_with_consent_are_used(settings: Settings, extra: dict[str, Any]) -> None:
    producer = FakeProducer()
    response = post_json(collector_app(settings, producer, NOW_MS), "/mp/collect", {**GA4_VIEW, **extra})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
