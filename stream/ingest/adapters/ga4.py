"""Google Analytics 4 Measurement Protocol payloads (``POST /mp/collect``) mapped to schema v1.

Body: ``{"client_id" | "app_instance_id", "user_id"?, "timestamp_micros"?, "non_personalized_ads"?,
"consent"?: {"ad_personalization"?, ...}, "events": [{"name", "params": {...},
"timestamp_micros"?}]}``. The mapping table is in stream/ingest/README.md, "Standard tracking
events".

Event ids: GA4 events carry none, so they are derived from the content, never from the receive
time, so that a resent request maps to the same ids and deduplicates. With a time
(``timestamp_micros`` of the event or the request): a hash of the user, client id, name, time,
item and the event's and item's index. Without one: a hash of the whole request's content with
the event's and item's index. Two identical events of one request keep distinct ids (their index
differs); an identical request sent again on purpose is a resend to this rule: send
``timestamp_micros`` to tell such requests apart.

Consent: a request with ``non_personalized_ads: true`` or a ``consent.ad_personalization`` other
than ``GRANTED`` asks that its events not be used for personalisation. A profile is nothing
else, so none of its events (nor its login link) is produced: each is counted in `ignored`
under the field and value that withheld it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.core.errors import InvalidEvent
from stream.core.events import EventType, json_type
from stream.ingest.adapters.common import (
    Adapted,
    IdentityLink,
    SourceEvent,
    content_id,
    context_of,
    first_id,
    optional_id,
    optional_object,
    require_array,
    require_object,
    time_of,
)

SOURCE = "ga4"

EVENT_TYPES: Mapping[str, EventType] = {
    "search": EventType.SEARCH,
    "view_search_results": EventType.SEARCH,
    "view_item": EventType.VIEW,
    "select_item": EventType.CLICK,
    "add_to_cart": EventType.ADD_TO_CART,
    "purchase": EventType.PURCHASE,
}
# GA4's item: "one of item_id or item_name is required".
ITEM_ID_FIELDS = ("item_id", "item_name")
MICROS_PER_MS = 1000


def adapt_ga4(payload: object, *, receive_ms: int) -> Adapted:
    """Map one Measurement Protocol request body (see the module docstring)."""
    adapted = Adapted(SOURCE)
    body = require_object(payload, "$")
    client_id, client_field = first_id(body, ("client_id", "app_instance_id"), "")
    user_id = optional_id(body.get("user_id"), "user_id")
    if client_id is None and user_id is None:
        raise InvalidEvent("client_id", "required (or app_instance_id for Firebase apps, or user_id)")
    request_ms = time_of(body.get("timestamp_micros"), "timestamp_micros", unit="us")
    events = require_array(body.get("events"), "events")
    adapted.message_path = "events[{}]"
    # Without any time the ids hash the request's content: a resend is the same request.
    request_digest = content_id(SOURCE, body) if request_ms is None else None
    withheld = _personalisation_withheld(body)
    person = user_id if user_id is not None else client_id
    assert person is not None
    person_field = "user_id" if user_id is not None else client_field
    for index, event in enumerate(events):
        path = f"events[{index}]."
        try:
            _adapt_event(
                adapted,
                index,
                require_object(event, f"events[{index}]"),
                path=path,
                person=(person, person_field),
                client_id=client_id,
                request_ms=request_ms,
                receive_ms=receive_ms,
                request_digest=request_digest,
            )
        except InvalidEvent as exc:
            adapted.error(index, exc.field, exc.reason)
    if withheld is not None:
        # Not one of this request's events may shape a profile; counted, so the shop sees why.
        withheld_count = len(adapted.events) + (client_id is not None and user_id not in (None, client_id))
        if withheld_count:
            adapted.ignored[withheld] += withheld_count
        adapted.events.clear()
        return adapted
    if client_id is not None and user_id is not None and client_id != user_id:
        # A signed-in visitor: the browser's client id joins the user id (their login).
        adapted.link(
            len(events),
            IdentityLink(SOURCE, "user_id", client_id, user_id, request_ms or receive_ms, None),
            receive_ms=receive_ms,
            fields={"user_id": client_field, "known_user_id": "user_id", "ts_ms": "timestamp_micros"},
        )
    return adapted


def _adapt_event(
    adapted: Adapted,
    index: int,
    event: dict[str, Any],
    *,
    path: str,
    person: tuple[str, str],
    client_id: str | None,
    request_ms: int | None,
    receive_ms: int,
    request_digest: str | None,
) -> None:
    name = event.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidEvent(f"{path}name", f"expected the event name, got {json_type(name)}")
    event_type = EVENT_TYPES.get(name)
    if event_type is None:
        adapted.ignore(name)
        return
    params = optional_object(event.get("params"), f"{path}params")
    event_ms = time_of(event.get("timestamp_micros"), f"{path}timestamp_micros", unit="us")
    ts_ms = event_ms if event_ms is not None else request_ms if request_ms is not None else receive_ms
    ts_field = (
        f"{path}timestamp_micros"
        if event_ms is not None
        else "timestamp_micros"
        if request_ms is not None
        else "$"
    )
    user_id, user_field = person
    session_id = optional_id(params.get("session_id"), f"{path}params.session_id")
    base: dict[str, Any] = {
        "user_id": user_id,
        "type": event_type.value,
        "ts_ms": ts_ms,
        "received_ms": receive_ms,
    }
    if session_id is not None:
        base["session_id"] = session_id
    event_context = context_of(
        source=SOURCE,
        event_name=name,
        client_id=client_id if client_id != user_id else None,
        order_id=params.get("transaction_id"),
    )
    base["context"] = event_context
    fields = {
        "user_id": user_field,
        "ts_ms": ts_field,
        "session_id": f"{path}params.session_id",
        "context": f"{path}params",
        "event_id": f"{path}name",
    }
    if event_type is EventType.SEARCH:
        query = params.get("search_term")
        doc = {
            **base,
            "event_id": content_id(SOURCE, user_id, client_id, name, ts_ms, query, index)
            if request_digest is None
            else content_id(SOURCE, request_digest, index),
            "query": query,
        }
        adapted.events.append(SourceEvent(index, doc, {**fields, "query": f"{path}params.search_term"}))
        return
    items = require_array(params.get("items"), f"{path}params.items")
    if not items:
        raise InvalidEvent(f"{path}params.items", f"a {name} event needs at least one item")
    for position, item in enumerate(items):
        item_prefix = f"{path}params.items[{position}]."
        item_id, item_path = first_id(
            require_object(item, item_prefix.rstrip(".")), ITEM_ID_FIELDS, item_prefix
        )
        event_id = (
            content_id(SOURCE, user_id, client_id, name, ts_ms, item_id, index, position)
            if request_digest is None
            else content_id(SOURCE, request_digest, index, position)
        )
        doc = {**base, "event_id": event_id, "item_id": item_id}
        adapted.events.append(SourceEvent(index, doc, {**fields, "item_id": item_path}))


def _personalisation_withheld(body: Mapping[str, Any]) -> str | None:
    """The field and value by which a request asks not to be used for personalisation (the
    `ignored` key its events are counted under), or None when it does not.

    ``non_personalized_ads: true`` (also ``"true"``, any case); ``consent.ad_personalization``
    other than ``"GRANTED"`` (any case): ``"DENIED"``, or a value the spec does not define, which
    grants nothing.
    """
    flag = body.get("non_personalized_ads")
    if flag is True or (isinstance(flag, str) and flag.strip().casefold() == "true"):
        return "non_personalized_ads: true (not used for personalisation)"
    consent = body.get("consent")
    if isinstance(consent, Mapping) and consent.get("ad_personalization") is not None:
        value = consent["ad_personalization"]
        if not (isinstance(value, str) and value.strip().upper() == "GRANTED"):
            shown = value.strip()[:20] if isinstance(value, str) else json_type(value)
            return f"consent.ad_personalization: {shown} (not used for personalisation)"
    return None
