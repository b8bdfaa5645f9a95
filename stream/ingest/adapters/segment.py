"""Segment (and RudderStack) HTTP tracking API payloads mapped to schema v1.

`adapt_segment` reads the body of ``/v1/track``, ``/v1/identify``, ``/v1/alias``,
``/v1/page``, ``/v1/screen``, ``/v1/group`` (one message; the path gives the type when the
message has none) and ``/v1/batch`` (``{"batch": [...], "sentAt"?, "context"?}``). The mapping
table is in stream/ingest/README.md, "Standard tracking events".

Segment's libraries write the message type in lowercase (``track``); a type that is one of the six
in another case (``"Track"``, hand-written senders) is read as that type, not ignored as an
unknown one. An id of only whitespace (``"userId": " "``) is absent, as ``""`` is, so that such a
message falls back to its anonymousId; so is the text ``"undefined"`` or ``"null"`` (what JavaScript
writes for an unset variable, `UNSET_ID_TEXTS`), in every id field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.core.errors import InvalidEvent
from stream.core.events import EventType, is_blank, json_type
from stream.ingest.adapters.common import (
    Adapted,
    IdentityLink,
    SourceEvent,
    content_id,
    context_of,
    derived_id,
    event_name_key,
    first_id,
    optional_id,
    optional_object,
    require_array,
    require_object,
    sender_event_id,
    skew_corrected,
    time_of,
)

SOURCE = "segment"

# E-commerce spec v2 event names (compared by `event_name_key`) -> v1 type, and the v1 spec's
# names for the same events (Viewed Product, Added Product...), which older integrations send.
TRACK_TYPES: Mapping[str, EventType] = {
    event_name_key("Products Searched"): EventType.SEARCH,
    event_name_key("Product Viewed"): EventType.VIEW,
    event_name_key("Product Clicked"): EventType.CLICK,
    event_name_key("Product Added"): EventType.ADD_TO_CART,
    event_name_key("Order Completed"): EventType.PURCHASE,
    event_name_key("Searched Products"): EventType.SEARCH,
    event_name_key("Product Searched"): EventType.SEARCH,
    event_name_key("Viewed Product"): EventType.VIEW,
    event_name_key("Clicked Product"): EventType.CLICK,
    event_name_key("Added Product"): EventType.ADD_TO_CART,
    event_name_key("Completed Order"): EventType.PURCHASE,
}
# Segment's six message types (the spec writes them in lowercase).
MESSAGE_TYPES = frozenset({"track", "identify", "alias", "page", "screen", "group"})
# The spec's product id is `product_id`; shops also send `productId` (camelCase, as the rest of
# a Segment message is), `sku` or a plain `id`.
PRODUCT_ID_FIELDS = ("product_id", "productId", "sku", "id")


def adapt_segment(
    payload: object,
    *,
    receive_ms: int,
    message_type: str | None = None,
    trust_received_at: bool = False,
) -> Adapted:
    """Map one Segment request body; `message_type` is the type the path implies (None: batch).

    `trust_received_at` takes each message's own ``receivedAt`` as the receive time: right for
    files exported from Segment, wrong for live requests (a client must not set server time).
    """
    adapted = Adapted(SOURCE)
    body = require_object(payload, "$")
    if message_type is None:
        messages = require_array(body.get("batch"), "batch")
        given = body.get("context")
        batch_context = given if isinstance(given, dict) else {}
        batch_sent_ms = time_of(body.get("sentAt"), "sentAt")
        prefix = "batch[{}]."
        adapted.message_path = "batch[{}]"
    else:
        messages = [body]
        batch_context = {}
        batch_sent_ms = None
        prefix = ""
    for index, message in enumerate(messages):
        path = prefix.format(index)
        try:
            _adapt_message(
                adapted,
                index,
                require_object(message, path.rstrip(".") or "$"),
                path=path,
                implied_type=message_type,
                batch_context=batch_context,
                batch_sent_ms=batch_sent_ms,
                receive_ms=receive_ms,
                trust_received_at=trust_received_at,
            )
        except InvalidEvent as exc:
            adapted.error(index, exc.field, exc.reason)
    return adapted


def _adapt_message(
    adapted: Adapted,
    index: int,
    message: dict[str, Any],
    *,
    path: str,
    implied_type: str | None,
    batch_context: Mapping[str, Any],
    batch_sent_ms: int | None,
    receive_ms: int,
    trust_received_at: bool,
) -> None:
    kind = _message_type(message.get("type", implied_type), f"{path}type")
    if kind not in ("track", "identify", "alias"):
        # page, screen, group and unknown types: nothing a profile is built from.
        adapted.ignore(kind)
        return
    name = message.get("event")
    if kind == "track":
        if not isinstance(name, str) or not name.strip():
            raise InvalidEvent(f"{path}event", f"a track call needs the event name, got {json_type(name)}")
        if event_name_key(name) not in TRACK_TYPES:
            adapted.ignore(name)
            return
    if trust_received_at:
        exported_ms = time_of(message.get("receivedAt"), f"{path}receivedAt")
        receive_ms = receive_ms if exported_ms is None else exported_ms
    ts_ms, created_field = _message_time(message, path, batch_sent_ms, receive_ms)
    message_id = _sender_id(message.get("messageId"), f"{path}messageId")
    user_id = _sender_id(message.get("userId"), f"{path}userId")
    anonymous_id = _sender_id(message.get("anonymousId"), f"{path}anonymousId")
    if kind != "track":
        _identity(
            adapted,
            kind=kind,
            message=message,
            path=path,
            user_id=user_id,
            anonymous_id=anonymous_id,
            message_id=message_id,
            ts_ms=ts_ms,
            index=index,
            receive_ms=receive_ms,
        )
        return
    assert isinstance(name, str)
    event_type = TRACK_TYPES[event_name_key(name)]
    if message_id is None:
        # Segment's API fills in a missing messageId; a content hash does the same job and keeps
        # a resent message deduplicated.
        message_id = content_id(SOURCE, message)
    if user_id is None and anonymous_id is None:
        raise InvalidEvent(f"{path}userId", "a message needs a userId or an anonymousId")
    properties = optional_object(message.get("properties"), f"{path}properties")
    # The context only feeds informative fields: a malformed one costs them, not the event.
    own_context = message.get("context")
    context: Mapping[str, Any] = own_context if isinstance(own_context, dict) else batch_context
    page = context.get("page")
    base: dict[str, Any] = {
        "event_id": sender_event_id(message_id),
        "user_id": user_id if user_id is not None else anonymous_id,
        "type": event_type.value,
        "ts_ms": ts_ms,
        "received_ms": receive_ms,
    }
    event_context = context_of(
        source=SOURCE,
        event_name=name,
        anonymous_id=anonymous_id if user_id is not None else None,
        order_id=properties.get("order_id"),
        page=page.get("path") if isinstance(page, dict) else None,
    )
    if event_context:
        base["context"] = event_context
    fields = {
        "event_id": f"{path}messageId",
        "user_id": f"{path}userId" if user_id is not None else f"{path}anonymousId",
        "ts_ms": created_field,
        "received_ms": f"{path}receivedAt",
        "context": f"{path}context",
    }
    if event_type is EventType.SEARCH:
        query = properties.get("query")
        doc = {**base, "query": query}
        adapted.events.append(SourceEvent(index, doc, {**fields, "query": f"{path}properties.query"}))
        return
    if event_type is EventType.PURCHASE:
        products = require_array(properties.get("products"), f"{path}properties.products")
        if not products:
            raise InvalidEvent(f"{path}properties.products", "an Order Completed needs at least one product")
        for position, product in enumerate(products):
            item_prefix = f"{path}properties.products[{position}]."
            item_id, item_path = first_id(
                require_object(product, item_prefix.rstrip(".")), PRODUCT_ID_FIELDS, item_prefix
            )
            doc = {**base, "event_id": derived_id(message_id, position), "item_id": item_id}
            adapted.events.append(SourceEvent(index, doc, {**fields, "item_id": item_path}))
        return
    item_id, item_path = first_id(properties, PRODUCT_ID_FIELDS, f"{path}properties.")
    adapted.events.append(SourceEvent(index, {**base, "item_id": item_id}, {**fields, "item_id": item_path}))


def _message_type(kind: object, path: str) -> str:
    """The message type, one of the six in lowercase whatever its case (``"Track"``); another
    name as sent (ignored and counted by it)."""
    if not isinstance(kind, str):
        raise InvalidEvent(path, f"expected a message type (track, identify, ...), got {json_type(kind)}")
    lowered = kind.strip().lower()
    return lowered if lowered in MESSAGE_TYPES else kind


def _sender_id(value: object, path: str) -> str | None:
    """A message's own id (userId, anonymousId, messageId, previousId): None when absent, empty or
    only whitespace or invisible characters (a template that filled in " "), else `optional_id`
    (None for "undefined" and "null" too)."""
    if isinstance(value, str) and is_blank(value):
        return None
    return optional_id(value, path)


def _message_time(
    message: Mapping[str, Any], path: str, batch_sent_ms: int | None, receive_ms: int
) -> tuple[int, str]:
    """Segment's `timestamp`: the device's time of the call corrected by its send time,
    receivedAt - (sentAt - originalTimestamp); the receive time when the message has none."""
    sent_ms = time_of(message.get("sentAt"), f"{path}sentAt")
    if sent_ms is None:
        sent_ms = batch_sent_ms
    # `originalTimestamp` is the device's time of the call; libraries that predate it send the
    # same thing as `timestamp`. Either is corrected by the sent-at rule.
    created_field = "originalTimestamp" if message.get("originalTimestamp") is not None else "timestamp"
    created_ms = time_of(message.get(created_field), f"{path}{created_field}")
    ts_ms = skew_corrected(receive_ms, sent_ms, created_ms)
    if ts_ms is None:
        return receive_ms, "receivedAt"
    return ts_ms, f"{path}{created_field}"


def _identity(
    adapted: Adapted,
    *,
    kind: str,
    message: dict[str, Any],
    path: str,
    user_id: str | None,
    anonymous_id: str | None,
    message_id: str | None,
    ts_ms: int,
    index: int,
    receive_ms: int,
) -> None:
    if user_id is None:
        if kind == "alias" or anonymous_id is None:
            raise InvalidEvent(f"{path}userId", f"an {kind} call needs a userId")
        adapted.ignore(kind)  # identify of an anonymous visitor: traits only, nothing to link
        return
    if kind == "alias":
        previous = _sender_id(message.get("previousId"), f"{path}previousId")
        if previous is None:
            raise InvalidEvent(f"{path}previousId", "an alias call needs the previousId it merges")
        link_from: str | None = previous
        from_field = f"{path}previousId"
    else:
        link_from = anonymous_id
        from_field = f"{path}anonymousId"
    if link_from is not None and link_from != user_id:
        adapted.link(
            index,
            IdentityLink(SOURCE, kind, link_from, user_id, ts_ms, message_id),
            receive_ms=receive_ms,
            fields={
                "event_id": f"{path}messageId",
                "user_id": from_field,
                "known_user_id": f"{path}userId",
                "ts_ms": f"{path}timestamp",
            },
        )
    else:
        adapted.ignore(kind)
