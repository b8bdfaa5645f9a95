"""Snowplow tracker-protocol POST payloads (base64url ue_px/cx, as the trackers send) to schema v1."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from stream.core.errors import InvalidEvent
from stream.ingest.adapters import adapt_file_record, adapt_snowplow
from tests.unit.stream.ingest.adapters.helpers import NOW_MS, payload, rows, valid

PAYLOAD_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
UE = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
ACTION = "iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/1-0-2"
PRODUCT = "iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0"


def b64(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def action(kind: str, *product_ids: str, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "e": "ue",
        "eid": "eid-1",
        "duid": "d-1",
        "ue_px": b64({"schema": UE, "data": {"schema": ACTION, "data": {"type": kind}}}),
        "cx": b64(
            {"schema": CONTEXTS, "data": [{"schema": PRODUCT, "data": {"id": p}} for p in product_ids]}
        ),
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not None}


def body(*events: Any) -> dict[str, Any]:
    return {"schema": PAYLOAD_SCHEMA, "data": list(events)}


def test_the_tracker_payload_maps_every_ecommerce_and_search_event() -> None:
    adapted = adapt_snowplow(payload("snowplow_tp2.json"), receive_ms=NOW_MS)
    derived = NOW_MS - 250  # collector time - (stm - dtm), for every event of the file
    assert rows(adapted) == [
        ("c6ef3124-b53a-4b13-a233-0088f79dcbcb", "shopper-7", "view", "P123", None, derived),
        # No uid: the domain user id.
        (
            "0d5ad2b0-4f8f-4c3c-9c1c-1f3ae3b0b5a1",
            "d2c0f1e8-6c55-4a0b-9c1e-3b6a9f7e2d44",
            "click",
            "P124",
            None,
            derived,
        ),
        ("7e1c5f7a-9a3c-4c11-8d52-5a1d2b3c4e5f", "shopper-7", "add_to_cart", "P125", None, derived),
        ("4b0a3f57-1e1d-4f4a-b0e6-7a4d8b7c6e21:0", "shopper-7", "purchase", "P123", None, derived),
        ("4b0a3f57-1e1d-4f4a-b0e6-7a4d8b7c6e21:1", "shopper-7", "purchase", "P124", None, derived),
        ("a8f3e2d1-5b6c-4d7e-8f90-1a2b3c4d5e6f", "shopper-7", "search", None, "unified log", derived),
    ]
    assert dict(adapted.ignored) == {"page_view": 1, "ecommerce:remove_from_cart": 1}
    events = [e for e in valid(adapted).events if e.type.value != "identify"]
    assert events[0].session_id == "9f4ee0d2-7a5f-4a58-8d2f-2f3c9c1f0b11"
    assert events[0].context["domain_user_id"] == "d2c0f1e8-6c55-4a0b-9c1e-3b6a9f7e2d44"
    assert {e.context["order_id"] for e in events if e.type.value == "purchase"} == {"T-991"}


@pytest.mark.parametrize(
    ("fields", "expected_ts"),
    [
        ({"dtm": "1764000000000", "stm": "1764000003000"}, NOW_MS - 3000),
        ({"dtm": "1764000000000"}, 1_764_000_000_000),
        ({"ttm": "1764000001000", "dtm": "1", "stm": "2"}, 1_764_000_001_000),
        ({}, NOW_MS),
    ],
)
def test_derived_timestamp(fields: dict[str, str], expected_ts: int) -> None:
    ((*_, ts),) = rows(adapt_snowplow(body(action("product_view", "p1", **fields)), receive_ms=NOW_MS))
    assert ts == expected_ts


@pytest.mark.parametrize(
    ("kind", "v1_type"), [("product_view", "view"), ("list_click", "click"), ("add_to_cart", "add_to_cart")]
)
def test_each_action_row_and_multi_product_ids(kind: str, v1_type: str) -> None:
    assert rows(adapt_snowplow(body(action(kind, "p1")), receive_ms=NOW_MS)) == [
        ("eid-1", "d-1", v1_type, "p1", None, NOW_MS)
    ]
    assert [r[0] for r in rows(adapt_snowplow(body(action(kind, "p1", "p2")), receive_ms=NOW_MS))] == [
        "eid-1:0",
        "eid-1:1",
    ]


def test_plain_json_fields_and_uid_preference() -> None:
    event = action("product_view", "p1", uid="u-9")
    event["ue_pr"] = base64.urlsafe_b64decode(event.pop("ue_px") + "==").decode()
    event["co"] = base64.urlsafe_b64decode(event.pop("cx") + "==").decode()
    assert rows(adapt_snowplow(body(event), receive_ms=NOW_MS)) == [
        ("eid-1", "u-9", "view", "p1", None, NOW_MS)
    ]


@pytest.mark.parametrize(
    ("event", "field_name"),
    [
        (action("product_view"), "data[0].cx"),
        (action("product_view", "p1", eid=None), "data[0].eid"),
        (action("product_view", "p1", duid=None), "data[0].uid"),
        (action("product_view", "p1", ue_px="%%%not base64"), "data[0].ue_px"),
        (action("product_view", "p1", ue_px=b64("not an object")), "data[0].ue_px"),
        (
            action("product_view", "p1", cx=b64({"schema": CONTEXTS, "data": [{"data": {}}]})),
            "data[0].cx.data[0].schema",
        ),
        (action("product_view", "p1", dtm="yesterday"), "data[0].dtm"),
        ({"e": "ue", "eid": "x", "duid": "d"}, "data[0].ue_px"),
        ({"eid": "x"}, "data[0].e"),
        ("pv", "data[0]"),
    ],
)
def test_malformed_events_are_errors_naming_the_field(event: Any, field_name: str) -> None:
    outcome = valid(adapt_snowplow(body(event), receive_ms=NOW_MS))
    assert [(e.index, e.field) for e in outcome.errors] == [(0, field_name)]


@pytest.mark.parametrize(
    ("payload_doc", "field_name"),
    [
        ({"data": []}, "schema"),
        ({"schema": "iglu:x/y/jsonschema/1-0-0", "data": []}, "schema"),
        ({"schema": PAYLOAD_SCHEMA, "data": {}}, "data"),
        ("tp2", "$"),
    ],
)
def test_a_malformed_payload_raises_naming_the_field(payload_doc: Any, field_name: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        adapt_snowplow(payload_doc, receive_ms=NOW_MS)
    assert caught.value.field == field_name


def test_site_search_terms_become_the_query_and_other_events_are_counted() -> None:
    search = {
        "schema": UE,
        "data": {
            "schema": "iglu:com.snowplowanalytics.snowplow/site_search/jsonschema/1-0-0",
            "data": {"terms": ["red", " shoes "]},
        },
    }
    other = {"schema": UE, "data": {"schema": "iglu:com.acme/custom/jsonschema/1-0-0", "data": {}}}
    adapted = adapt_snowplow(
        body(
            {"e": "ue", "eid": "s1", "uid": "u", "ue_px": b64(search)},
            {"e": "ue", "eid": "s2", "uid": "u", "ue_px": b64(other)},
            {"e": "se"},
        ),
        receive_ms=NOW_MS,
    )
    assert rows(adapted) == [("s1", "u", "search", None, "red shoes", NOW_MS)]
    assert dict(adapted.ignored) == {"com.acme/custom": 1, "struct": 1}


def test_file_records_may_be_whole_bodies_or_single_events() -> None:
    event = action("add_to_cart", "p1")
    assert rows(adapt_file_record("snowplow", event, NOW_MS)) == rows(
        adapt_file_record("snowplow", body(event), NOW_MS)
    )
    with pytest.raises(InvalidEvent) as caught:
        adapt_file_record("mixpanel", event, NOW_MS)
    assert caught.value.field == "format"


def test_a_classic_transaction_item_is_a_purchase_of_its_sku_and_its_order_stays_ignored() -> None:
    # trackTrans / addItem of the classic tracker: e=tr (the order) then one e=ti per item.
    adapted = adapt_snowplow(
        body(
            {"e": "tr", "eid": "t0", "duid": "d1", "tr_id": "o-7", "tr_tt": "20.00"},
            {"e": "ti", "eid": "t1", "duid": "d1", "ti_id": "o-7", "ti_sk": "sku-1", "ti_qu": "2"},
        ),
        receive_ms=NOW_MS,
    )
    assert rows(adapted) == [("t1", "d1", "purchase", "sku-1", None, NOW_MS)]
    assert valid(adapted).events[0].context["order_id"] == "o-7"
    assert dict(adapted.ignored) == {"transaction": 1}
    missing = adapt_snowplow(body({"e": "ti", "eid": "t2", "duid": "d1"}), receive_ms=NOW_MS)
    assert [(e.field, "SKU" in e.reason) for e in missing.errors] == [("data[0].ti_sk", True)]
