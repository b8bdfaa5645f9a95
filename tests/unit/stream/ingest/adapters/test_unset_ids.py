"""JavaScript's text of an unset variable (String(undefined), String(null)) in an id field is no id:
Segment falls back to the anonymousId; GA4 and Snowplow share the helper."""

from __future__ import annotations

import pytest

from stream.ingest.adapters import adapt_ga4, adapt_segment, adapt_snowplow
from tests.unit.stream.ingest.adapters.helpers import NOW_MS, valid
from tests.unit.stream.ingest.adapters.test_snowplow import action, body


def segment_track(**ids: str) -> dict[str, object]:
    return {
        "type": "track",
        "messageId": "m-1",
        **ids,
        "event": "Product Viewed",
        "properties": {"product_id": "p1"},
        "timestamp": "2025-11-24T16:00:00Z",
    }


@pytest.mark.parametrize("unset", ["undefined", "null", " undefined "])
def test_a_segment_user_id_undefined_falls_back_to_the_anonymous_id(unset: str) -> None:
    message = segment_track(userId=unset, anonymousId="anon-7")
    adapted = adapt_segment(message, receive_ms=NOW_MS, message_type="track")
    (event,) = valid(adapted).events
    assert event.user_id == "anon-7"
    assert "anonymous_id" not in event.context


def test_a_segment_message_with_only_unset_ids_is_an_error_naming_user_id() -> None:
    message = segment_track(userId="undefined", anonymousId="null")
    outcome = valid(adapt_segment(message, receive_ms=NOW_MS, message_type="track"))
    assert outcome.events == [] and [error.field for error in outcome.errors] == ["userId"]


def test_a_segment_product_id_undefined_is_no_item() -> None:
    message = segment_track(userId="u1")
    message["properties"] = {"product_id": "undefined", "sku": "sku-1"}
    (event,) = valid(adapt_segment(message, receive_ms=NOW_MS, message_type="track")).events
    assert event.item_id == "sku-1"


def test_a_ga4_user_id_null_leaves_the_client_id() -> None:
    items = [{"item_id": "p1"}]
    request = {
        "client_id": "c-1",
        "user_id": "null",
        "events": [{"name": "view_item", "params": {"items": items}}],
    }
    events = valid(adapt_ga4(request, receive_ms=NOW_MS)).events
    assert {event.user_id for event in events} == {"c-1"}


def test_a_snowplow_uid_undefined_leaves_the_domain_user_id() -> None:
    events = valid(
        adapt_snowplow(body(action("product_view", "p1", uid="undefined")), receive_ms=NOW_MS)
    ).events
    assert [event.user_id for event in events] == ["d-1"]
