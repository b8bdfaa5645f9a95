"""GA4 Measurement Protocol payloads (the documentation's examples) mapped to schema v1."""

from __future__ import annotations

from typing import Any

import pytest

from stream.core.errors import InvalidEvent
from stream.ingest.adapters import adapt_file_record, adapt_ga4
from tests.unit.stream.ingest.adapters.helpers import NOW_MS, payload, rows, valid


def request(*events: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"client_id": "123456.7654321", "events": list(events)}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("view_item", [("123456.7654321", "view", "SKU_12345", None, 1_764_000_000_000)]),
        (
            "search",
            [
                ("XXXXX", "search", None, "t-shirts", 1_764_000_001_000),
                ("XXXXX", "search", None, "Clothing", 1_764_000_001_000),
            ],
        ),
        ("select_item", [("123456.7654321", "click", "SKU_12345", None, 1_764_000_002_000)]),
        # No item_id: GA4 allows item_name instead, and so does the mapping.
        ("add_to_cart", [("123456.7654321", "add_to_cart", "Stan and Friends Tee", None, 1_764_000_003_000)]),
        (
            "purchase",
            [
                ("XXXXX", "purchase", "SKU_12345", None, 1_764_000_004_000),
                ("XXXXX", "purchase", "SKU_12346", None, 1_764_000_004_000),
            ],
        ),
    ],
)
def test_each_documented_example_maps_by_the_table(name: str, expected: list[tuple[Any, ...]]) -> None:
    mapped = rows(adapt_ga4(payload(f"ga4_{name}.json"), receive_ms=NOW_MS))
    assert [row[1:] for row in mapped] == expected
    assert len({row[0] for row in mapped}) == len(mapped)  # distinct event ids


def test_purchase_keeps_the_transaction_and_counts_unknown_events() -> None:
    adapted = adapt_ga4(payload("ga4_purchase.json"), receive_ms=NOW_MS)
    events = [e for e in valid(adapted).events if e.type.value != "identify"]
    assert {e.context["order_id"] for e in events} == {"T_12345"}
    assert {e.context["client_id"] for e in events} == {"123456.7654321"}
    assert dict(adapted.ignored) == {"tutorial_begin": 1}


def test_event_ids_are_deterministic_so_a_resent_request_deduplicates() -> None:
    first = rows(adapt_ga4(payload("ga4_purchase.json"), receive_ms=NOW_MS))
    again = rows(adapt_ga4(payload("ga4_purchase.json"), receive_ms=NOW_MS + 60_000))
    assert [r[0] for r in first] == [r[0] for r in again]
    assert all(r[0].startswith("ga4-") for r in first)


def test_time_event_level_over_request_level_over_receive_time() -> None:
    item = {"name": "view_item", "params": {"items": [{"item_id": "a"}]}}
    at = {**item, "timestamp_micros": "1764000005123999"}
    mapped = rows(adapt_ga4(request(item, at, timestamp_micros=1_764_000_001_000_000), receive_ms=NOW_MS))
    assert [r[-1] for r in mapped] == [1_764_000_001_000, 1_764_000_005_123]
    assert [r[-1] for r in rows(adapt_ga4(request(item), receive_ms=NOW_MS))] == [NOW_MS]


def test_session_and_app_instance_ids() -> None:
    event = {"name": "view_item", "params": {"session_id": 1764000000, "items": [{"item_id": "a"}]}}
    body = request(event, client_id=None, app_instance_id="app-1")
    (mapped,) = valid(adapt_ga4(body, receive_ms=NOW_MS)).events
    assert (mapped.user_id, mapped.session_id) == ("app-1", "1764000000")


@pytest.mark.parametrize(
    ("event", "field_name"),
    [
        ({"name": "view_item", "params": {}}, "events[0].params.items"),
        ({"name": "view_item", "params": {"items": []}}, "events[0].params.items"),
        ({"name": "purchase", "params": {"items": [{"price": 3}]}}, "events[0].params.items[0].item_id"),
        ({"name": "search", "params": {"search_term": "   "}}, "events[0].params.search_term"),
        ({"name": "search"}, "events[0].params.search_term"),
        ({"params": {}}, "events[0].name"),
        ({"name": "view_item", "timestamp_micros": "soon", "params": {}}, "events[0].timestamp_micros"),
        ("view_item", "events[0]"),
    ],
)
def test_malformed_events_are_errors_naming_the_field(event: Any, field_name: str) -> None:
    outcome = valid(adapt_ga4(request(event), receive_ms=NOW_MS))
    assert [(e.index, e.field) for e in outcome.errors] == [(0, field_name)]


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"events": []}, "client_id"),
        ({"client_id": "c", "events": {}}, "events"),
        ({"client_id": "c"}, "events"),
        ({"client_id": ["c"], "events": []}, "client_id"),
        ({"client_id": "c", "timestamp_micros": True, "events": []}, "timestamp_micros"),
        ([], "$"),
    ],
)
def test_a_malformed_request_raises_naming_the_field(body: Any, field_name: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        adapt_ga4(body, receive_ms=NOW_MS)
    assert caught.value.field == field_name


def test_file_records_are_request_bodies() -> None:
    assert rows(adapt_file_record("ga4", payload("ga4_view_item.json"), NOW_MS)) == rows(
        adapt_ga4(payload("ga4_view_item.json"), receive_ms=NOW_MS)
    )
