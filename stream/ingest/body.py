"""Pure request-body logic of the HTTP collector: decode, parse, bound and validate a batch of v1 events.

Accepted shapes of ``POST /v1/events``: one event object, a JSON array of 1..N event objects, or
an envelope ``{"sent_at_ms": <client clock when sending>, "events": [...]}``. The body may be
compressed (``Content-Encoding: gzip`` or ``deflate``); the limit applies to the decompressed size.

A batch is validated event by event: the valid events are produced, each invalid one is rejected
alone and listed with its index, field and reason (202 ``{"accepted": n, "rejected": [...]}``).
Only a batch without a single valid event is a 422.

Time: the collector stamps every event with its own receive time (``received_ms``). When the
client says when it sent the batch (``sent_at_ms`` in the envelope, or an ``X-Sent-At-Ms``
header), its clock skew is taken out the way tracking SDKs do it (Segment's ``sentAt``):
``ts_ms := received_ms - (sent_at_ms - ts_ms)``. An event time still outside the accepted range
(before `event_min_ts_ms`, or past the receive time plus `event_max_future_skew_s`) is replaced
by the receive time, the best estimate there is of when it happened, and counted as clamped.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

from stream.core import json_numbers
from stream.core.errors import InvalidEvent
from stream.core.events import Event, EventLimits, event_from_dict, query_truncated

# Browsers send beacons as text/plain to stay a "simple" CORS request (no preflight); the body is
# still JSON and goes through the same parser.
ACCEPTED_CONTENT_TYPES = frozenset({"application/json", "text/plain"})
SUPPORTED_ENCODINGS = ("gzip", "deflate", "identity")
SENT_AT_HEADER = "X-Sent-At-Ms"
_ENVELOPE_FIELDS = frozenset({"sent_at_ms", "events"})
_GZIP_MAGIC = b"\x1f\x8b"
# What stamping adds to an event at most: ',"v":1' and ',"received_ms":' with 20 digits.
_STAMP_BYTES = 64


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


@dataclass(frozen=True, slots=True)
class Batch:
    """The valid events of a request and what happened to the rest."""

    events: list[Event]
    rejected: tuple[FieldError, ...] = ()
    # Events whose over-long query was cut to MAX_QUERY_CHARS (`stream.core.events.truncate_query`).
    truncated: int = 0
    # Events whose time was outside the accepted range and was replaced by the receive time.
    clamped: int = 0
    clamped_ids: tuple[str, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "accepted": len(self.events),
            "rejected": [error.to_dict() for error in self.rejected],
            "truncated": self.truncated,
            "clamped": self.clamped,
        }


def body_error(status: int, reason: str, field_name: str = "$") -> Rejection:
    return Rejection(status, (FieldError(None, field_name, reason),))


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


def decode_content(body: bytes, header: str | None, max_bytes: int) -> bytes | Rejection:
    """The body with its ``Content-Encoding`` undone, at most `max_bytes` once decompressed.

    415 for an encoding other than gzip, deflate or identity; 400 for a body that is not what its
    label says; 413 as soon as the decompressed size passes `max_bytes` (a small compressed bomb
    never grows in memory past the limit).
    """
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    # Encodings are listed in the order they were applied: undo them last to first.
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            decoded = _inflate_gzip(body, max_bytes)
        elif coding == "deflate":
            decoded = _inflate_deflate(body, max_bytes)
        else:
            supported = ", ".join(SUPPORTED_ENCODINGS)
            return body_error(
                415,
                f"Content-Encoding {coding[:40]!r} is not supported; send one of {supported} (or none)",
                "Content-Encoding",
            )
        if isinstance(decoded, Rejection):
            return decoded
        body = decoded
    return body


def _inflate_gzip(data: bytes, max_bytes: int) -> bytes | Rejection:
    out = bytearray()
    # A gzip body may hold several members back to back (RFC 1952 section 2.2): read them all.
    while True:
        member = _inflate(data, 16 + zlib.MAX_WBITS, "gzip", max_bytes - len(out))
        if isinstance(member, Rejection):
            return member
        chunk, data = member
        out += chunk
        if not data:
            return bytes(out)


def _inflate_deflate(data: bytes, max_bytes: int) -> bytes | Rejection:
    # HTTP's "deflate" is the zlib format (RFC 1950), yet some clients send raw deflate (RFC 1951):
    # a valid zlib header tells them apart.
    zlib_wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
    member = _inflate(data, zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS, "deflate", max_bytes)
    if isinstance(member, Rejection):
        return member
    chunk, rest = member
    if rest:
        return body_error(400, f"{len(rest)} bytes follow the end of the deflate data; send only the stream")
    return chunk


def _inflate(data: bytes, wbits: int, coding: str, max_bytes: int) -> tuple[bytes, bytes] | Rejection:
    """One compressed stream from the start of `data`: (decompressed bytes, the bytes after it)."""
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    pending = data
    try:
        while True:
            # max_length bounds the output of each call: memory never holds more than the limit.
            chunk = inflater.decompress(pending, max_bytes + 1 - len(out))
            out += chunk
            if len(out) > max_bytes:
                return body_error(
                    413,
                    f"the {coding}-decompressed body is over the limit of {max_bytes} bytes; split it",
                )
            pending = inflater.unconsumed_tail
            if inflater.eof:
                return bytes(out), inflater.unused_data
            if not chunk and not pending:
                return body_error(400, f"the body ends inside its {coding} data; send the whole stream")
    except zlib.error as exc:
        return body_error(
            400,
            f"the body is labelled Content-Encoding: {coding} but is not {coding} data ({exc}); "
            "compress it or drop the header",
        )


def parse_json(body: bytes) -> object | Rejection:
    """The parsed body, or a 400 saying why it is not JSON (NaN and Infinity are not JSON)."""
    try:
        # Over-large numbers parse into values the validator rejects with their event alone.
        doc: object = json_numbers.loads(body, _DECODER)
    except RecursionError:
        return body_error(400, "JSON nested too deeply")
    except UnicodeDecodeError as exc:
        hint = "; it looks gzip-compressed: send Content-Encoding: gzip" if body[:2] == _GZIP_MAGIC else ""
        return body_error(400, f"not UTF-8 text ({exc.reason} at byte {exc.start}){hint}")
    except json.JSONDecodeError as exc:
        return body_error(400, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    except ValueError as exc:  # NaN / Infinity, refused by _reject_constant
        return body_error(400, str(exc))
    return doc


def parse_batch(
    body: bytes,
    *,
    limits: EventLimits,
    max_events: int,
    received_ms: int,
    sent_at_header: str | None = None,
) -> Batch | Rejection:
    """The valid events of a request body and the rejected ones, or why the request is refused whole."""
    doc = parse_json(body)
    if isinstance(doc, Rejection):
        return doc
    unwrapped = _unwrap(doc, sent_at_header)
    if isinstance(unwrapped, Rejection):
        return unwrapped
    doc, sent_at_ms = unwrapped
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
    # Only a body near one event's limit can hold an event over it: the record produced is the
    # body's event, compacted, plus "v" and "received_ms" (under _STAMP_BYTES).
    check_sizes = len(body) + _STAMP_BYTES > limits.max_bytes
    events: list[Event] = []
    errors: list[FieldError] = []
    truncated = 0
    clamped: list[str] = []
    for index, item in enumerate(docs):
        try:
            if not isinstance(item, dict):
                event_from_dict(item, limits=limits, now_ms=received_ms)  # raises, naming the type
                continue
            stamped, was_clamped = _stamp_times(item, limits, received_ms, sent_at_ms)
            event = event_from_dict(stamped, limits=limits, now_ms=received_ms)
            if check_sizes:
                # The record the worker will read, which must stay under its limit.
                _check_size(len(event.to_json()), limits)
        except InvalidEvent as exc:
            errors.append(FieldError(index, exc.field, exc.reason))
            continue
        events.append(event)
        truncated += query_truncated(item.get("query"))
        if was_clamped:
            clamped.append(event.event_id)
    if not events:
        return Rejection(422, tuple(errors))
    return Batch(events, tuple(errors), truncated, len(clamped), tuple(clamped))


def _unwrap(doc: object, sent_at_header: str | None) -> tuple[object, int | None] | Rejection:
    """The events of an envelope (or the document itself) and the client's send time, if given."""
    sent_at_ms: int | None = None
    if sent_at_header is not None:
        header_value = _sent_at(sent_at_header.strip(), SENT_AT_HEADER)
        if isinstance(header_value, Rejection):
            return header_value
        sent_at_ms = header_value
    if isinstance(doc, dict) and "events" in doc:
        unknown = sorted(set(doc) - _ENVELOPE_FIELDS)
        if unknown:
            return body_error(
                422, "unknown field of a batch envelope; it holds only sent_at_ms and events", unknown[0][:64]
            )
        if "sent_at_ms" in doc:
            # The body's own send time wins over the header: it travels with the events.
            envelope_value = _sent_at(doc["sent_at_ms"], "sent_at_ms")
            if isinstance(envelope_value, Rejection):
                return envelope_value
            sent_at_ms = envelope_value
        doc = doc["events"]
        if not isinstance(doc, list):
            return body_error(422, "expected a JSON array of event objects", "events")
    return doc, sent_at_ms


def _sent_at(value: object, name: str) -> int | Rejection:
    fix = f"send the client's send time in ms since epoch, an integer up to {json_numbers.MAX_INT64}"
    if isinstance(value, str) and value.isascii() and value.isdigit():
        # int() of a long digit string raises (or is slow): its length alone says it is too large.
        digits = len(value.lstrip("0"))
        if digits > len(str(json_numbers.MAX_INT64)):
            return body_error(422, f"number too large ({digits} digits); {fix}", name)
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    too_large = json_numbers.number_too_large(value)
    if too_large is not None:
        return body_error(422, f"{too_large}; {fix}", name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return body_error(
            422,
            f"expected the client's send time in ms since epoch (an integer), got {str(value)[:40]!r}",
            name,
        )
    return value


def _stamp_times(
    item: dict[str, object], limits: EventLimits, received_ms: int, sent_at_ms: int | None
) -> tuple[dict[str, object], bool]:
    """A copy of `item` with the receive time set and its event time corrected or clamped."""
    stamped = dict(item)
    # The collector's own clock, whatever the client sent.
    stamped["received_ms"] = received_ms
    ts = item.get("ts_ms")
    if isinstance(ts, float) and ts.is_integer():
        ts = int(ts)
    if isinstance(ts, bool) or not isinstance(ts, int) or json_numbers.number_too_large(ts) is not None:
        # The validator names what is wrong with it; a number past 64 bits is no clock's reading
        # to correct, but garbage.
        return stamped, False
    if sent_at_ms is not None:
        ts = received_ms - (sent_at_ms - ts)
    if not limits.min_ts_ms <= ts <= received_ms + limits.max_future_skew_ms:
        stamped["ts_ms"] = received_ms
        return stamped, True
    stamped["ts_ms"] = ts
    return stamped, False


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json_numbers.BoundedDecoder(_reject_constant)


def _check_size(size: int, limits: EventLimits) -> None:
    if size > limits.max_bytes:
        raise InvalidEvent("$", f"event is {size} bytes, over the limit of {limits.max_bytes} bytes")
