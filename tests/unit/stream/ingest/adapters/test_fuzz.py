"""Fuzz: on any JSON, near-valid or not, the adapters raise nothing but InvalidEvent, and the
validation of what they map raises nothing at all."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.core.errors import InvalidEvent
from stream.ingest.adapters import Adapted, adapt_file_record, adapt_ga4, adapt_segment, adapt_snowplow
from tests.unit.stream.ingest.adapters.helpers import NOW_MS, payload, valid

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
SEEDS = [
    payload("segment_batch.json"),
    payload("segment_track_product_viewed.json"),
    payload("ga4_purchase.json"),
    payload("ga4_search.json"),
    payload("snowplow_tp2.json"),
]
ADAPTERS: list[Callable[[Any], Adapted]] = [
    lambda p: adapt_segment(p, receive_ms=NOW_MS),
    lambda p: adapt_segment(p, receive_ms=NOW_MS, message_type="track"),
    lambda p: adapt_segment(p, receive_ms=NOW_MS, message_type="identify"),
    lambda p: adapt_segment(p, receive_ms=NOW_MS, message_type="alias"),
    lambda p: adapt_ga4(p, receive_ms=NOW_MS),
    lambda p: adapt_snowplow(p, receive_ms=NOW_MS),
    lambda p: adapt_file_record("segment", p, NOW_MS),
]


def check(doc: Any) -> None:
    for adapter in ADAPTERS:
        try:
            adapted = adapter(doc)
        except InvalidEvent as exc:
            assert exc.field and exc.reason
            continue
        valid(adapted)  # must not raise


def mutate(doc: Any, data: st.DataObject) -> Any:
    """`doc` with one subtree replaced by arbitrary JSON (or by base64url JSON, as in ue_px)."""
    if isinstance(doc, dict) and doc and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(doc)))
        return {**doc, key: mutate(doc[key], data)}
    if isinstance(doc, list) and doc and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(doc) - 1))
        return [*doc[:index], mutate(doc[index], data), *doc[index + 1 :]]
    replacement = data.draw(JSON)
    if isinstance(doc, str) and data.draw(st.booleans()):
        return base64.urlsafe_b64encode(json.dumps(replacement).encode()).decode().rstrip("=")
    return replacement


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_arbitrary_json(doc: Any) -> None:
    check(doc)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_near_valid_payloads(data: st.DataObject) -> None:
    doc = data.draw(st.sampled_from(SEEDS))
    for _ in range(data.draw(st.integers(1, 3))):
        doc = mutate(doc, data)
    check(doc)


def encoded(data: st.DataObject) -> Any:
    """What may arrive in ue_pr/ue_px/co/cx: text, JSON text, base64url of JSON or of any bytes,
    the self-describing wrapper around anything."""
    inner = data.draw(JSON)
    wrapped = {
        "schema": data.draw(
            st.sampled_from(
                [
                    "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
                    "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
                    "iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/1-0-2",
                    "iglu:x",
                ]
            )
        ),
        "data": data.draw(
            st.sampled_from([inner, [inner], {"schema": "iglu:a/b/jsonschema/1-0-0", "data": inner}])
        ),
    }
    doc = data.draw(st.sampled_from([inner, wrapped]))
    return data.draw(
        st.sampled_from(
            [
                json.dumps(doc),
                base64.urlsafe_b64encode(json.dumps(doc).encode()).decode(),
                data.draw(st.text(max_size=30)),
                base64.b64encode(data.draw(st.binary(max_size=30))).decode(),
                doc,
            ]
        )
    )


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_snowplow_encoded_fields(data: st.DataObject) -> None:
    event = {"e": "ue", "eid": "e-1", "uid": "u-1"}
    for name in data.draw(st.lists(st.sampled_from(["ue_pr", "ue_px", "co", "cx"]), min_size=1, unique=True)):
        event[name] = encoded(data)
    check({"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": [event]})
