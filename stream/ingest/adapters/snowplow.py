"""Snowplow tracker-protocol POST payloads (``/com.snowplowanalytics.snowplow/tp2``) to schema v1.

Body: ``{"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data":
[{"e": "ue", "eid", "uid", "duid", "dtm", "stm", "ue_pr" | "ue_px", "co" | "cx", ...}]}``, every
value a string. Self-describing events (``e=ue``) carry their event in ``ue_pr`` (JSON text) or
``ue_px`` (the same, base64url); entities come in ``co`` / ``cx`` likewise. Mapped: the Snowplow
e-commerce action event (with its product entities) and site search; every other event is
counted and ignored. The mapping table is in stream/ingest/README.md, "Standard tracking events".
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from stream.core import json_numbers
from stream.core.errors import InvalidEvent
from stream.core.events import EventType, json_type
from stream.ingest.adapters.common import (
    Adapted,
    IdentityLink,
    SourceEvent,
    context_of,
    derived_id,
    optional_id,
    require_array,
    require_object,
    sender_event_id,
    skew_corrected,
    time_of,
)

SOURCE = "snowplow"
PAYLOAD_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-"
UNSTRUCT_SCHEMA = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-"
CONTEXTS_SCHEMA = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-"
# Compared without the version: any 1-x-y revision of these schemas has the fields read here.
ECOMMERCE_ACTION = "com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action"
PRODUCT_ENTITY = "com.snowplowanalytics.snowplow.ecommerce/product"
TRANSACTION_ENTITY = "com.snowplowanalytics.snowplow.ecommerce/transaction"
SITE_SEARCH = "com.snowplowanalytics.snowplow/site_search"

ACTION_TYPES: Mapping[str, EventType] = {
    "product_view": EventType.VIEW,
    "list_click": EventType.CLICK,
    "add_to_cart": EventType.ADD_TO_CART,
    "transaction": EventType.PURCHASE,
}
# The full names of the tracker's event-type codes, for the ignored counter.
EVENT_CODES: Mapping[str, str] = {
    "pv": "page_view",
    "pp": "page_ping",
    "se": "struct",
    "tr": "transaction",
    "ti": "transaction_item",
    "ad": "ad_impression",
}


def adapt_snowplow(payload: object, *, receive_ms: int) -> Adapted:
    """Map one tp2 body; a bare event object (one element of ``data``) is accepted too, for files."""
    adapted = Adapted(SOURCE)
    body = require_object(payload, "$")
    if "data" not in body and "e" in body:
        events: list[Any] = [body]
        prefix = "$"
    else:
        schema = body.get("schema")
        if not isinstance(schema, str) or not schema.startswith(PAYLOAD_SCHEMA):
            raise InvalidEvent("schema", f"expected {PAYLOAD_SCHEMA}0-4 (a tracker-protocol POST body)")
        events = require_array(body.get("data"), "data")
        prefix = "data"
        adapted.message_path = "data[{}]"
    for index, event in enumerate(events):
        path = f"{prefix}[{index}]." if prefix == "data" else ""
        try:
            _adapt_event(adapted, index, require_object(event, path.rstrip(".") or "$"), path, receive_ms)
        except InvalidEvent as exc:
            adapted.error(index, exc.field, exc.reason)
    return adapted


def _adapt_event(adapted: Adapted, index: int, event: dict[str, Any], path: str, receive_ms: int) -> None:
    code = event.get("e")
    if not isinstance(code, str) or not code:
        raise InvalidEvent(
            f"{path}e", f"expected the event type code (ue, pv, se, ...), got {json_type(code)}"
        )
    _link_identities(adapted, index, event, path, receive_ms)
    if code == "ti":
        _adapt_transaction_item(adapted, index, event, path, receive_ms)
        return
    if code != "ue":
        adapted.ignore(EVENT_CODES.get(code, code))
        return
    schema, data = _self_describing(event, path)
    key = _schema_key(schema)
    if key == ECOMMERCE_ACTION:
        action = data.get("type")
        event_type = ACTION_TYPES.get(action) if isinstance(action, str) else None
        if event_type is None:
            adapted.ignore(f"ecommerce:{action}" if isinstance(action, str) else "ecommerce")
            return
    elif key == SITE_SEARCH:
        event_type = EventType.SEARCH
    else:
        adapted.ignore(key)
        return

    event_id, (person, person_field, domain_user_id, network_user_id) = _who(event, path)
    ts_ms, ts_field = _event_time(event, path, receive_ms)
    session_id = optional_id(event.get("sid"), f"{path}sid")
    entities = _entities(event, path)
    base: dict[str, Any] = {
        "user_id": person,
        "type": event_type.value,
        "ts_ms": ts_ms,
        "received_ms": receive_ms,
    }
    if session_id is not None:
        base["session_id"] = session_id
    transaction = next((d for s, d in entities if _schema_key(s) == TRANSACTION_ENTITY), {})
    base["context"] = context_of(
        source=SOURCE,
        event_name=key.rsplit("/", 1)[-1]
        if event_type is EventType.SEARCH
        else f"ecommerce:{data.get('type')}",
        domain_user_id=domain_user_id if person != domain_user_id else None,
        network_user_id=network_user_id if person != network_user_id else None,
        order_id=transaction.get("transaction_id"),
        page=event.get("url"),
    )
    fields = {
        "event_id": f"{path}eid",
        "user_id": f"{path}{person_field}",
        "ts_ms": ts_field,
        "session_id": f"{path}sid",
        "context": path.rstrip(".") or "$",
    }
    if event_type is EventType.SEARCH:
        terms = data.get("terms")
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise InvalidEvent(
                f"{path}ue_px.data.terms", f"expected an array of strings, got {json_type(terms)}"
            )
        doc = {
            **base,
            "event_id": sender_event_id(event_id),
            "query": " ".join(t.strip() for t in terms if t.strip()) or None,
        }
        adapted.events.append(SourceEvent(index, doc, {**fields, "query": f"{path}ue_px.data.terms"}))
        return
    products = [(n, d) for n, (s, d) in enumerate(entities) if _schema_key(s) == PRODUCT_ENTITY]
    if not products:
        raise InvalidEvent(
            f"{path}cx", f"a {data.get('type')} action needs a product entity ({PRODUCT_ENTITY})"
        )
    # One event per product; the tracker's own id when there is just one (and never for an order,
    # so that an order of one product has the same id shape as a larger one).
    suffix = len(products) > 1 or event_type is EventType.PURCHASE
    for position, (entity_index, product) in enumerate(products):
        item_id = optional_id(product.get("id"), f"{path}cx.data[{entity_index}].data.id")
        doc = {
            **base,
            "event_id": derived_id(event_id, position) if suffix else sender_event_id(event_id),
            "item_id": item_id,
        }
        adapted.events.append(
            SourceEvent(index, doc, {**fields, "item_id": f"{path}cx.data[{entity_index}].data.id"})
        )


def _who(event: Mapping[str, Any], path: str) -> tuple[str, tuple[str, str, str | None, str | None]]:
    """The event's id and its person: the first of uid, duid and tnuid, the field it came from,
    and the domain and network user ids. Raises InvalidEvent naming what is missing."""
    event_id = optional_id(event.get("eid"), f"{path}eid")
    if event_id is None:
        raise InvalidEvent(f"{path}eid", "required: the tracker's event UUID becomes the event id")
    user_id = optional_id(event.get("uid"), f"{path}uid")
    domain_user_id = optional_id(event.get("duid"), f"{path}duid")
    network_user_id = optional_id(event.get("tnuid") or event.get("nuid"), f"{path}tnuid")
    person = next((p for p in (user_id, domain_user_id, network_user_id) if p is not None), None)
    if person is None:
        raise InvalidEvent(f"{path}uid", "an event needs a uid, a duid (domain user id) or a tnuid")
    person_field = "uid" if user_id is not None else "duid" if domain_user_id is not None else "tnuid"
    return event_id, (person, person_field, domain_user_id, network_user_id)


def _adapt_transaction_item(
    adapted: Adapted, index: int, event: Mapping[str, Any], path: str, receive_ms: int
) -> None:
    """The classic e-commerce tracker's transaction item (``e=ti``: ``addItem`` after
    ``addTrans``; ``ti_id`` the order, ``ti_sk`` the SKU): one purchase of that SKU. Its order
    (``e=tr``) carries no item and stays ignored."""
    event_id, (person, person_field, domain_user_id, network_user_id) = _who(event, path)
    ts_ms, ts_field = _event_time(event, path, receive_ms)
    session_id = optional_id(event.get("sid"), f"{path}sid")
    item_id = optional_id(event.get("ti_sk"), f"{path}ti_sk")
    if item_id is None:
        raise InvalidEvent(f"{path}ti_sk", "a transaction item needs its SKU (ti_sk): the purchased item")
    doc: dict[str, Any] = {
        "event_id": sender_event_id(event_id),
        "user_id": person,
        "type": EventType.PURCHASE.value,
        "item_id": item_id,
        "ts_ms": ts_ms,
        "received_ms": receive_ms,
        "context": context_of(
            source=SOURCE,
            event_name=EVENT_CODES["ti"],
            domain_user_id=domain_user_id if person != domain_user_id else None,
            network_user_id=network_user_id if person != network_user_id else None,
            order_id=event.get("ti_id"),
            page=event.get("url"),
        ),
    }
    if session_id is not None:
        doc["session_id"] = session_id
    fields = {
        "event_id": f"{path}eid",
        "user_id": f"{path}{person_field}",
        "item_id": f"{path}ti_sk",
        "ts_ms": ts_field,
        "session_id": f"{path}sid",
        "context": path.rstrip(".") or "$",
    }
    adapted.events.append(SourceEvent(index, doc, fields))


def _link_identities(
    adapted: Adapted, index: int, event: Mapping[str, Any], path: str, receive_ms: int
) -> None:
    """A signed-in visitor (``uid`` set): the domain and network user ids join the user id. Any
    event carries it, a page view too (a login page typically sends nothing else)."""
    user_id = optional_id(event.get("uid"), f"{path}uid")
    if user_id is None:
        return
    for anonymous, field in (
        (optional_id(event.get("duid"), f"{path}duid"), "duid"),
        (optional_id(event.get("tnuid") or event.get("nuid"), f"{path}tnuid"), "tnuid"),
    ):
        if anonymous is not None and anonymous != user_id:
            ts_ms, ts_field = _event_time(event, path, receive_ms)
            adapted.link(
                index,
                IdentityLink(SOURCE, field, anonymous, user_id, ts_ms, None),
                receive_ms=receive_ms,
                fields={"user_id": f"{path}{field}", "known_user_id": f"{path}uid", "ts_ms": ts_field},
            )


def _event_time(event: Mapping[str, Any], path: str, receive_ms: int) -> tuple[int, str]:
    """Snowplow's derived timestamp: the true timestamp (``ttm``) when given, else the device's
    creation time (``dtm``) corrected by its send time (``stm``) onto the receive time."""
    true_ms = time_of(event.get("ttm"), f"{path}ttm")
    if true_ms is not None:
        return true_ms, f"{path}ttm"
    created_ms = time_of(event.get("dtm"), f"{path}dtm")
    sent_ms = time_of(event.get("stm"), f"{path}stm")
    derived = skew_corrected(receive_ms, sent_ms, created_ms)
    if derived is None:
        return receive_ms, "$"
    return derived, f"{path}dtm"


def _self_describing(event: Mapping[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    """The (schema, data) of a self-describing event, unwrapped from ``unstruct_event``."""
    wrapper, field = _json_field(event, "ue_pr", "ue_px", path)
    if wrapper is None:
        raise InvalidEvent(f"{path}ue_px", "a self-describing event (e=ue) needs ue_pr or ue_px")
    schema, inner = _schema_data(wrapper, field)
    if schema.startswith(UNSTRUCT_SCHEMA):
        schema, inner = _schema_data(inner, f"{field}.data")
    return schema, require_object(inner, f"{field}.data")


def _entities(event: Mapping[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    wrapper, field = _json_field(event, "co", "cx", path)
    if wrapper is None:
        return []
    _, items = _schema_data(wrapper, field)
    entities: list[tuple[str, dict[str, Any]]] = []
    for position, item in enumerate(require_array(items, f"{field}.data")):
        schema, data = _schema_data(item, f"{field}.data[{position}]")
        entities.append((schema, require_object(data, f"{field}.data[{position}].data")))
    return entities


def _json_field(event: Mapping[str, Any], plain: str, encoded: str, path: str) -> tuple[object, str]:
    """The JSON value of field `plain` (JSON text) or `encoded` (base64url JSON text)."""
    if event.get(plain) is not None:
        text, field = event[plain], f"{path}{plain}"
        if not isinstance(text, str):
            # Some server trackers send the object itself rather than its JSON text.
            return text, field
    elif event.get(encoded) is not None:
        field = f"{path}{encoded}"
        text = _base64url_text(event[encoded], field)
    else:
        return None, f"{path}{encoded}"
    try:
        return json_numbers.loads(text), field
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent(field, f"not valid JSON text ({exc.__class__.__name__})") from exc


def _base64url_text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(field, f"expected base64url text, got {json_type(value)}")
    # Trackers drop the "=" padding; put it back. Some send standard base64 ("+/"): map it too.
    cleaned = value.strip().replace("+", "-").replace("/", "_").rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        return raw.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise InvalidEvent(field, "not base64url-encoded UTF-8 JSON") from exc


def _schema_data(value: object, field: str) -> tuple[str, Any]:
    doc = require_object(value, field)
    schema = doc.get("schema")
    if not isinstance(schema, str) or not schema.startswith("iglu:"):
        raise InvalidEvent(f"{field}.schema", f"expected an iglu: schema URI, got {json_type(schema)}")
    if "data" not in doc:
        raise InvalidEvent(f"{field}.data", "required field is missing")
    return schema, doc["data"]


def _schema_key(schema: str) -> str:
    """``iglu:vendor/name/jsonschema/1-0-2`` -> ``vendor/name`` (only major version 1 is read)."""
    parts = schema.removeprefix("iglu:").split("/")
    if len(parts) == 4 and parts[2] == "jsonschema" and parts[3].startswith("1-"):
        return f"{parts[0]}/{parts[1]}"
    return schema.removeprefix("iglu:")[:80]
