"""Pure request-body logic of the HTTP collector: parse, bound and validate a batch of v1 events.

Accepted shapes of ``POST /v1/events``: one event object, or a JSON array of 1..N event objects.
A batch is all or nothing: if any event is invalid, none is produced, and the 422 answer lists
every invalid event by its index, so a client can fix them and resend the whole batch without
wondering which events already landed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from stream.core.errors import InvalidEvent
from stream.core.events import Event, EventLimits, event_from_dict

# Browsers send beacons as text/plain to stay a "simple" CORS request (no preflight); the body is
# still JSON and goes through the same parser.
ACCEPTED_CONTENT_TYPES = frozenset({"application/json", "text/plain"})


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in a request: the event's index in the batch (0 for a single event, None for the
    body as a whole), the field (``$`` for the whole event or body) and the reason."""

    index: int | None
    field: str
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request the collector refuses, with its HTTP status and the problems found."""

    status: int
    errors: tuple[FieldError, ...]

    def to_dict(self) -> dict[str, object]:
        return {"errors": [error.to_dict() for error in self.errors]}


def body_error(status: int, reason: str) -> Rejection:
    return Rejection(status, (FieldError(None, "$", reason),))


def check_content_type(header: str | None) -> Rejection | None:
    media_type = (header or "").split(";", 1)[0].strip().lower()
    if media_type in ACCEPTED_CONTENT_TYPES:
        return None
    shown = repr(media_type) if media_type else "none"
    return body_error(415, f"content type {shown} is not accepted; send application/json (or text/plain)")


def too_large(size_bytes: int, max_body_bytes: int) -> Rejection:
    return body_error(
        413, f"request body is {size_bytes} bytes or more, over the limit of {max_body_bytes} bytes; split it"
    )


def parse_batch(body: bytes, *, limits: EventLimits, max_events: int, now_ms: int) -> list[Event] | Rejection:
    """The validated events of a request body, or why the request is rejected as a whole."""
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        return body_error(400, "JSON nested too deeply")
    except UnicodeDecodeError as exc:
        return body_error(400, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except json.JSONDecodeError as exc:
        return body_error(400, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    except ValueError as exc:  # NaN / Infinity, refused by _reject_constant
        return body_error(400, str(exc))
    if isinstance(doc, dict):
        docs = [doc]
    elif isinstance(doc, list):
        docs = doc
    else:
        return body_error(422, "expected an event object or a JSON array of event objects")
    if not docs:
        return body_error(422, "the batch is empty; send at least one event")
    if len(docs) > max_events:
        return body_error(413, f"the batch has {len(docs)} events, over the limit of {max_events}; split it")
    # Only a body larger than one event's limit can hold an event over that limit.
    check_sizes = len(body) > limits.max_bytes
    events: list[Event] = []
    errors: list[FieldError] = []
    for index, item in enumerate(docs):
        try:
            if check_sizes:
                _check_size(item, limits)
            events.append(event_from_dict(item, limits=limits, now_ms=now_ms))
        except InvalidEvent as exc:
            errors.append(FieldError(index, exc.field, exc.reason))
    if errors:
        return Rejection(422, tuple(errors))
    return events


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _check_size(item: object, limits: EventLimits) -> None:
    size = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())
    if size > limits.max_bytes:
        raise InvalidEvent("$", f"event is {size} bytes, over the limit of {limits.max_bytes} bytes")
