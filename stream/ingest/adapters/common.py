"""What the three standard-event adapters share: their result record, time and id helpers.

An adapter is a pure function from the sender's parsed JSON payload (and the server's receive
time) to an `Adapted`: the schema v1 documents it maps to, the unknown event names it ignored,
the identity links it saw and the per-message problems. `validate` then runs the worker's own
validator over the documents, naming a failing field in the sender's terms (``messageId``, not
``event_id``), so that a shop can fix its tracking call.

Whole-payload problems (the body is not an object, ``batch`` is not an array) raise
`InvalidEvent` with the field; per-message problems never stop the other messages.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream.core.errors import InvalidEvent
from stream.core.events import MAX_ID_CHARS, Event, EventLimits, decode_doc, json_type
from stream.core.normalise import TimeUnit, id_text, time_ms, type_key
from stream.core.reserved import check_client_event
from stream.ingest.body import ClampedTime, FieldError, clamp_reason

# What JavaScript writes for an id that was never set: String(undefined) and String(null) (a
# template `${userId}`, a concatenation). No user is named so; each would merge every such visitor
# into one window, so an id field holding one is absent (Segment falls back to anonymousId).
UNSET_ID_TEXTS = frozenset({"undefined", "null"})
# Context values copied from the sender are bounded like ids, so that a mapped event stays far
# below the event size limit whatever the sender put in its own fields.
MAX_CONTEXT_VALUE_CHARS = MAX_ID_CHARS


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """One mapped v1 document and where it came from: the message's index in the payload and,
    for each v1 field, the sender's path that filled it (to name it in an error)."""

    index: int
    doc: dict[str, Any]
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class IdentityLink:
    """`from_id` (an anonymous id) and `to_id` (a known user id) name the same person: Segment's
    identify or alias, GA4's client_id with a user_id, Snowplow's duid/tnuid with a uid.

    Each becomes a v1 `identify` event keyed by `from_id` (`Adapted.link`); the worker joins the
    anonymous window into the known user's (stream/core/identity.py).
    """

    source: str
    kind: str
    from_id: str
    to_id: str
    ts_ms: int
    message_id: str | None


@dataclass(slots=True)
class Adapted:
    """The outcome of adapting one payload (see the module docstring)."""

    source: str
    events: list[SourceEvent] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    identities: list[IdentityLink] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    # The sender's path of the message at an index (``batch[{}]``), to name a message as a whole.
    message_path: str = "$"

    def error(self, index: int | None, path: str, reason: str) -> None:
        self.errors.append(FieldError(index, path, reason))

    def link(self, index: int, link: IdentityLink, *, receive_ms: int, fields: Mapping[str, str]) -> None:
        """Record `link` and its v1 `identify` event, placed after the events mapped so far, so
        that it follows them in the anonymous id's partition. A link repeated within the payload
        (GA4 and Snowplow carry both ids on every event) is recorded once."""
        if any((known.from_id, known.to_id) == (link.from_id, link.to_id) for known in self.identities):
            return
        self.identities.append(link)
        event_id = (
            sender_event_id(link.message_id)
            if link.message_id
            else content_id("identity", link.source, link.kind, link.from_id, link.to_id)
        )
        doc = {
            "event_id": event_id,
            "user_id": link.from_id,
            "type": "identify",
            "known_user_id": link.to_id,
            "ts_ms": link.ts_ms,
            "received_ms": receive_ms,
            "context": {"source": link.source, "event_name": link.kind},
        }
        self.events.append(SourceEvent(index, doc, fields))

    @property
    def behaviour_events(self) -> int:
        """How many mapped events are behaviour (not identify records)."""
        return sum(1 for event in self.events if event.doc.get("type") != "identify")

    def cap(self, max_events: int) -> None:
        """Keep the behaviour events of the messages, in payload order, up to the one whose events
        would take them past `max_events`; that message and every later one with behaviour events
        are listed in `errors` instead (the message as a whole: a resend of it is complete).
        Identify records are always kept (at most one or two per message, bounded by the body).

        The collector's bound on the events one request maps to (`CollectorConfig.max_mapped_events`):
        a sender cannot split its batches by mapped events, and drops a batch answered 4xx whole.
        """
        if self.behaviour_events <= max_events:
            return
        per_message: Counter[int] = Counter(
            event.index for event in self.events if event.doc.get("type") != "identify"
        )
        kept: set[int] = set()
        total = 0
        cut = False
        for index, count in per_message.items():
            if not cut and total + count <= max_events:
                kept.add(index)
                total += count
                continue
            cut = True
            path = self.message_path.format(index)
            if count > max_events:
                reason = (
                    f"this message maps to {count} events, over the limit of {max_events} events one "
                    "request may map to; split its items over several messages"
                )
            else:
                reason = (
                    f"this message maps to {count} events and the messages before it to {total}, past the "
                    f"limit of {max_events} events one request may map to; send it in another request"
                )
            self.error(index, path, reason)
        self.events = [
            event for event in self.events if event.doc.get("type") == "identify" or event.index in kept
        ]

    def ignore(self, name: str) -> None:
        # Names are the sender's; bound them so that a hostile sender cannot grow the counter keys.
        self.ignored[name[:80]] += 1

    @property
    def docs(self) -> list[dict[str, Any]]:
        """The v1 documents, ready for `stream.core.events.event_from_dict`."""
        return [event.doc for event in self.events]


@dataclass(frozen=True, slots=True)
class Validated:
    """The valid events of a payload, the problems of the others, and how many were adjusted as
    the collector adjusts its own events (see `stream.ingest.body`)."""

    events: list[Event]
    errors: list[FieldError]
    # Events whose over-long query was cut (`stream.core.events.truncate_query`).
    truncated: int = 0
    # Events whose time was outside the accepted range and was replaced by their receive time.
    clamped_times: tuple[ClampedTime, ...] = ()

    @property
    def clamped(self) -> int:
        return len(self.clamped_times)


# The senders' own send-time fields, from which the adapters correct a device clock's skew.
_SEND_TIME_FIX = "check the device clock, or send the tracker's send time (Segment sentAt, Snowplow stm)"


def validate(
    adapted: Adapted, *, limits: EventLimits, now_ms: int, latest_ms: int | None = None
) -> Validated:
    """The valid events of `adapted`, and its errors plus those of the v1 validator.

    An event time outside the accepted range (a device clock years off, a sender's bug) becomes
    the receive time, as on ``POST /v1/events``: the event is kept, only its time was wrong. The
    range ends at `latest_ms` (the collector's routes: their receive time plus
    `stream.ingest.body.RECEIVE_TIME_TOLERANCE_MS`), or by default at an event's receive time
    plus `limits.max_future_skew_ms` (files, whose receive time may be only the replay's start).
    """
    events: list[Event] = []
    errors = list(adapted.errors)
    clamped: list[ClampedTime] = []
    truncated = 0
    for source_event in adapted.events:
        doc = source_event.doc
        ts, received = doc.get("ts_ms"), doc.get("received_ms")
        clamp: ClampedTime | None = None
        if isinstance(ts, int) and isinstance(received, int):
            latest = received + limits.max_future_skew_ms if latest_ms is None else latest_ms
            if not limits.min_ts_ms <= ts <= latest:
                # The time as the sender's skew correction left it (the original is the sender's).
                reason = clamp_reason(ts, received, limits.min_ts_ms, _SEND_TIME_FIX)
                path = source_event.fields.get("ts_ms", "ts_ms")
                clamp = ClampedTime(source_event.index, path, ts, reason)
                doc = {**doc, "ts_ms": received}
        try:
            # The byte limit (of the record as the worker reads it) is event_from_dict's own check.
            decoded = decode_doc(doc, limits=limits, now_ms=now_ms)
            # Adapters build the context from named fields only, never a sender's own keys; the
            # worker's reserved keys stay refused should one ever copy them.
            check_client_event(decoded.event)
        except InvalidEvent as exc:
            path = source_event.fields.get(exc.field, exc.field)
            errors.append(FieldError(source_event.index, path, exc.reason))
            continue
        event = decoded.event
        truncated += decoded.query_truncated
        if clamp is not None:
            clamped.append(
                ClampedTime(clamp.index, clamp.field, clamp.original_ms, clamp.reason, event.event_id)
            )
        events.append(event)
    return Validated(events, errors, truncated, tuple(clamped))


def require_object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidEvent(path, f"expected a JSON object, got {json_type(value)}")
    return value


def optional_object(value: object, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    return require_object(value, path)


def require_array(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidEvent(path, f"expected a JSON array, got {json_type(value)}")
    return value


def optional_id(value: object, path: str) -> str | None:
    """An id the sender may spell as a string or a number (product ids often are numbers), by
    the id rule of every entry point (`stream.core.normalise.id_text`); None when absent, empty or
    JavaScript's text of an unset variable (`UNSET_ID_TEXTS`: ``"undefined"``, ``"null"``)."""
    if value == "" or (isinstance(value, str) and value.strip() in UNSET_ID_TEXTS):
        return None
    return id_text(value, path)


def first_id(container: Mapping[str, Any], names: Sequence[str], prefix: str) -> tuple[str | None, str]:
    """The first present id among `names` and its path; the first name's path when none is."""
    for name in names:
        value = optional_id(container.get(name), f"{prefix}{name}")
        if value is not None:
            return value, f"{prefix}{name}"
    return None, f"{prefix}{names[0]}"


def context_value(value: object) -> str | None:
    """A sender value worth keeping in the event's context: a short string or an integer."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not text.strip() or len(text) > MAX_CONTEXT_VALUE_CHARS:
        return None
    return text


def context_of(**values: object) -> dict[str, str]:
    kept = {name: context_value(value) for name, value in values.items()}
    return {name: value for name, value in kept.items() if value is not None}


def time_of(value: object, path: str, unit: TimeUnit = "ms") -> int | None:
    """A sender's time field in ms since epoch, by the time rule of every entry point
    (`stream.core.normalise.time_ms`: ISO-8601 text, or a number in `unit` as a number or text;
    no zone means UTC); None when absent. Raises InvalidEvent naming `path`."""
    return time_ms(value, path, unit)


def skew_corrected(received_ms: int, sent_ms: int | None, created_ms: int | None) -> int | None:
    """The device's creation time moved onto the server's clock: received - (sent - created).

    The device's clock may be off by hours, but the delay between creating and sending an event
    is measured on that one clock, so it survives; this is Segment's `timestamp` and Snowplow's
    `derived_tstamp` rule.
    """
    if created_ms is None:
        return None
    if sent_ms is None:
        return created_ms
    return received_ms - (sent_ms - created_ms)


def sender_event_id(message_id: str) -> str:
    """The event id of a sender's message id: itself, or a hash of it when it is over the id limit
    (MAX_ID_CHARS), the same hash `derived_id` makes of such a parent. A sender's id has no such
    limit of its own; hashed, a retried message keeps its id and deduplicates."""
    if len(message_id) <= MAX_ID_CHARS:
        return message_id
    return content_id("long", message_id)


def derived_id(parent: str, index: int) -> str:
    """The id of the `index`-th event made from one message: ``{parent}:{index}``, hashed when
    that would exceed the id limit (a retried message maps to the same ids, so they deduplicate)."""
    candidate = f"{parent}:{index}"
    if len(candidate) <= MAX_ID_CHARS:
        return candidate
    return f"{content_id('long', parent)}:{index}"


def content_id(prefix: str, *parts: object) -> str:
    """A deterministic id from content, for senders whose events carry none (GA4)."""
    digest = hashlib.sha256(
        json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8", "replace")
    )
    return f"{prefix}-{digest.hexdigest()[:32]}"


def event_name_key(name: str) -> str:
    """`Product Viewed`, `product_viewed`, `PRODUCT VIEWED` and `ProductViewed` compare equal
    (the type-name rule of files, `stream.core.normalise.type_key`)."""
    return type_key(name)
