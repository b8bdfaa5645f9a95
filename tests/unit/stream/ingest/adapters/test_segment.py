"""Segment / RudderStack HTTP API payloads (the spec's own examples) mapped to schema v1."""

from __future__ import annotations

from typing import Any

import pytest

from stream.core.errors import InvalidEvent
from stream.ingest.adapters import IdentityLink, adapt_file_record, adapt_segment
from tests.unit.stream.ingest.adapters.helpers import NOW_MS, identify_rows, payload, rows, valid


def track(event: str, properties: dict[str, Any], **changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "messageId": "m-1",
        "userId": "u-1",
        "event": event,
        "properties": properties,
    }
    message.update(changes)
    return {k: v for k, v in message.items() if v is not None}


def test_the_spec_track_example_becomes_a_view_with_its_ids_and_skew_corrected_time() -> None:
    adapted = adapt_segment(
        payload("segment_track_product_viewed.json"), receive_ms=NOW_MS, message_type="track"
    )
    (event,) = valid(adapted).events
    assert event.event_id == "ajs-f8ca1e4de5024d9430b3928bd8ac6b96"
    assert event.user_id == "019mr8mf4r"  # userId preferred over anonymousId
    assert event.type.value == "view"
    assert event.item_id == "507f1f77bcf86cd799439011"
    # receivedAt - (sentAt - originalTimestamp): sent 17 ms after it happened.
    assert event.ts_ms == NOW_MS - 17
    assert event.received_ms == NOW_MS
    assert event.context["anonymous_id"] == "23adfd82-aa0f-45a7-a756-24f2a7a4c895"
    assert event.context["source"] == "segment"


def test_the_batch_example_maps_every_ecommerce_event_and_counts_the_rest() -> None:
    adapted = adapt_segment(payload("segment_batch.json"), receive_ms=NOW_MS)
    assert rows(adapted) == [
        ("m-search-1", "019mr8mf4r", "search", None, "blue roses", 1354408210000),
        ("m-click-1", "019mr8mf4r", "click", "507f1f77bcf86cd799439011", None, 1354408211000),
        ("m-added-1", "019mr8mf4r", "add_to_cart", "507f1f77bcf86cd799439011", None, 1354408212000),
        ("m-order-1:0", "019mr8mf4r", "purchase", "507f1f77bcf86cd799439011", None, 1354408213000),
        ("m-order-1:1", "019mr8mf4r", "purchase", "505bd76785ebb509fc183733", None, 1354408213000),
    ]
    assert dict(adapted.ignored) == {"Song Played": 1, "page": 1}
    assert adapted.identities == [
        IdentityLink(
            "segment",
            "identify",
            "507f191e810c19729de860ea",
            "019mr8mf4r",
            1354408208276,
            "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
        )
    ]
    order = [e for e in valid(adapted).events if e.type.value == "purchase"]
    assert {e.context["order_id"] for e in order} == {"50314b8e9bcf000000000000"}


def test_identify_and_alias_examples_are_identity_links_and_identify_records() -> None:
    identify = adapt_segment(payload("segment_identify.json"), receive_ms=NOW_MS, message_type="identify")
    alias = adapt_segment(payload("segment_alias.json"), receive_ms=NOW_MS, message_type="alias")
    assert rows(identify) == [] and identify.errors == []
    # Keyed by the anonymous id (it follows that id's events), naming the known one.
    assert [row[1:3] for row in identify_rows(identify)] == [("507f191e810c19729de860ea", "97980cfea0067")]
    assert [row[1:3] for row in identify_rows(alias)] == [("39239-239239-239239-23923", "507f191e81")]
    assert [(i.kind, i.from_id, i.to_id) for i in identify.identities] == [
        ("identify", "507f191e810c19729de860ea", "97980cfea0067")
    ]
    assert [(i.kind, i.from_id, i.to_id) for i in alias.identities] == [
        ("alias", "39239-239239-239239-23923", "507f191e81")
    ]


@pytest.mark.parametrize(
    ("event", "properties", "expected"),
    [
        ("Products Searched", {"query": "blue roses"}, ("search", None, "blue roses")),
        ("Product Viewed", {"product_id": "p1", "sku": "s1"}, ("view", "p1", None)),
        ("Product Clicked", {"sku": "s1"}, ("click", "s1", None)),
        ("Product Added", {"id": 42}, ("add_to_cart", "42", None)),
        ("product_viewed", {"product_id": "p1"}, ("view", "p1", None)),
        ("PRODUCT  ADDED", {"product_id": "p1"}, ("add_to_cart", "p1", None)),
        ("ProductAdded", {"productId": "p1"}, ("add_to_cart", "p1", None)),  # camelCase, both
        # The v1 e-commerce spec's names, which older integrations still send.
        ("Viewed Product", {"product_id": "p1"}, ("view", "p1", None)),
        ("Clicked Product", {"product_id": "p1"}, ("click", "p1", None)),
        ("Added Product", {"product_id": "p1"}, ("add_to_cart", "p1", None)),
        ("Completed Order", {"products": [{"product_id": "p1"}]}, ("purchase", "p1", None)),
        ("Searched Products", {"query": "pens"}, ("search", None, "pens")),
    ],
)
def test_each_mapping_row(event: str, properties: dict[str, Any], expected: tuple[str, Any, Any]) -> None:
    adapted = adapt_segment(track(event, properties), receive_ms=NOW_MS, message_type="track")
    ((_, user, kind, item, query, ts),) = rows(adapted)
    assert (kind, item, query) == expected
    assert user == "u-1"
    assert ts == NOW_MS  # no time sent: the receive time


def test_anonymous_visitors_are_keyed_by_their_anonymous_id() -> None:
    message = track("Product Viewed", {"product_id": "p1"}, userId=None, anonymousId="anon-9")
    ((_, user, *_),) = rows(adapt_segment(message, receive_ms=NOW_MS, message_type="track"))
    assert user == "anon-9"


def test_time_without_sent_at_is_taken_as_is_and_batch_sent_at_applies_to_each_message() -> None:
    message = track("Product Viewed", {"product_id": "p1"}, timestamp="2025-11-24T16:00:00.000Z")
    ((*_, ts),) = rows(adapt_segment(message, receive_ms=NOW_MS, message_type="track"))
    assert ts == 1_764_000_000_000
    # The device clock is an hour fast; the batch was sent 2 s after the event on that clock.
    body = {
        "batch": [
            track("Product Viewed", {"product_id": "p1"}, originalTimestamp="2025-11-24T17:00:08.000Z")
        ],
        "sentAt": "2025-11-24T17:00:10.000Z",
    }
    ((*_, ts),) = rows(adapt_segment(body, receive_ms=NOW_MS))
    assert ts == NOW_MS - 2000


def test_a_time_far_off_is_clamped_to_the_receive_time_not_lost() -> None:
    message = track("Product Viewed", {"product_id": "p1"}, timestamp="2099-01-01T00:00:00Z")
    outcome = valid(adapt_segment(message, receive_ms=NOW_MS, message_type="track"))
    assert [e.ts_ms for e in outcome.events] == [NOW_MS]
    assert outcome.clamped == 1


def test_a_missing_message_id_gets_a_stable_content_id() -> None:
    message = track("Product Viewed", {"product_id": "p1"}, messageId=None)
    first = rows(adapt_segment(message, receive_ms=NOW_MS, message_type="track"))
    again = rows(adapt_segment(dict(message), receive_ms=NOW_MS + 5, message_type="track"))
    assert first[0][0] == again[0][0]
    assert first[0][0].startswith("segment-")


@pytest.mark.parametrize(
    ("message", "field_name"),
    [
        (track("Product Viewed", {"product_id": "p1"}, userId=None), "userId"),
        (track("Product Viewed", {"name": "no id"}), "properties.product_id"),
        (track("Products Searched", {}), "properties.query"),
        (track("Order Completed", {"order_id": "o1"}), "properties.products"),
        (track("Order Completed", {"products": []}), "properties.products"),
        (
            track("Order Completed", {"products": [{"product_id": "a"}, {"name": "b"}]}),
            "properties.products[1].product_id",
        ),
        (track("Product Viewed", {"product_id": "p1"}, timestamp="yesterday"), "timestamp"),
        # An over-long messageId is hashed (test_standard_ids.py); a bidi control is refused.
        (track("Product Viewed", {"product_id": "p1"}, messageId="m\u202e1"), "messageId"),
        (track("Product Viewed", "not an object"), "properties"),  # type: ignore[arg-type]
        (track(None, {}), "event"),  # type: ignore[arg-type]
    ],
)
def test_malformed_messages_are_errors_naming_the_sender_field(
    message: dict[str, Any], field_name: str
) -> None:
    outcome = valid(adapt_segment(message, receive_ms=NOW_MS, message_type="track"))
    assert [(e.index, e.field) for e in outcome.errors] == [(0, field_name)]
    assert all(e.reason for e in outcome.errors)


def test_one_bad_message_of_a_batch_leaves_the_others() -> None:
    body = {
        "batch": [track("Product Viewed", {}), track("Product Viewed", {"product_id": "p2"}, messageId="m-2")]
    }
    outcome = valid(adapt_segment(body, receive_ms=NOW_MS))
    assert [e.event_id for e in outcome.events] == ["m-2"]
    assert [(e.index, e.field) for e in outcome.errors] == [(0, "batch[0].properties.product_id")]


@pytest.mark.parametrize(
    ("body", "field_name"),
    [([1], "$"), ({"batch": {"a": 1}}, "batch"), ({}, "batch"), ({"batch": [], "sentAt": "soon"}, "sentAt")],
)
def test_a_malformed_payload_raises_naming_the_field(body: Any, field_name: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        adapt_segment(body, receive_ms=NOW_MS)
    assert caught.value.field == field_name


def test_identify_without_user_id_is_an_error_and_anonymous_identify_is_ignored() -> None:
    alias = adapt_segment({"type": "alias", "previousId": "a"}, receive_ms=NOW_MS, message_type="alias")
    assert [e.field for e in alias.errors] == ["userId"]
    anonymous = adapt_segment({"anonymousId": "a", "traits": {}}, receive_ms=NOW_MS, message_type="identify")
    assert (
        anonymous.errors == [] and anonymous.identities == [] and dict(anonymous.ignored) == {"identify": 1}
    )


def test_file_records_use_the_exported_received_at() -> None:
    record = payload("segment_track_product_viewed.json")
    ((event_id, _, _, _, _, ts),) = rows(adapt_file_record("segment", record, NOW_MS))
    assert event_id == "ajs-f8ca1e4de5024d9430b3928bd8ac6b96"
    # Segment's own `timestamp` for this example: 2015-12-12T19:11:01.249Z.
    assert ts == 1449947461249
