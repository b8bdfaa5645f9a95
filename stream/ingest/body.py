"""Pure request-body logic of the HTTP collector: decode, parse, bound and validate a batch of v1 events.

Accepted shapes of ``POST /v1/events``: one event object, a JSON array of 1..N event objects, or
an envelope ``{"sent_at_ms": <client clock when sending>, "events": [...]}``. The body may be
compressed (``Content-Encoding: gzip`` or ``deflate``, up to MAX_CONTENT_CODINGS layers) and in
any charset Python knows (``Content-Type: ...; charset=``); the limit applies to the decompressed
size and to the text once in UTF-8.

A batch is validated event by event: the valid events are produced, each invalid one is rejected
alone and listed with its index, field and reason (202 ``{"accepted": n, "rejected": [...]}``).
Only a batch without a single valid event is a 422.

Time: the collector stamps every event with its own receive time (``received_ms``); request order
is receive order, so an event after a ``forget`` of the request is stamped 1 ms later per forget
before it (a forget removes what was received at or before it). When the
client says when it sent the batch (``sent_at_ms`` in the envelope, or an ``X-Sent-At-Ms``
header), its clock skew is taken out the way tracking SDKs do it (Segment's ``sentAt``):
``ts_ms := received_ms - (sent_at_ms - ts_ms)``. An event time still outside the accepted range
(before `event_min_ts_ms`, or past the receive time plus `event_max_future_skew_s`) is replaced
by the receive time, the best estimate there is of when it happened, and counted as clamped.
The latest accepted time is the receive time plus RECEIVE_TIME_TOLERANCE_MS (60 s), not plus
`event_max_future_skew_s`: at the collector an event cannot have happened after it arrived, and
an event stamped hours ahead would otherwise be a user's newest for hours. Each clamped event is
listed in the answer's ``clamped_events`` with its index, field, time as sent and the reason.
"""

from __future__ import annotations

import codecs
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message

from stream.core import json_numbers
from stream.core.errors import InvalidEvent
from stream.core.events import (
    RECEIVE_TIME_TOLERANCE_MS,
    Event,
    EventLimits,
    EventType,
    decode_doc,
    event_from_dict,
)
from stream.core.normalise import time_fix, time_ms
from stream.core.reserved import check_client_event
from stream.core.stray_bytes import first_stray_byte, stray_byte_reason

# Browsers send beacons as text/plain to stay a "simple" CORS request (no preflight); the body is
# still JSON and goes through the same parser.
ACCEPTED_CONTENT_TYPES = frozenset({"application/json", "text/plain"})
SUPPORTED_ENCODINGS = ("gzip", "deflate", "identity")
# Content codings undone at most (RFC 9110 allows a list); a third layer buys a client nothing but
# costs the collector a decompression pass each.
MAX_CONTENT_CODINGS = 2
# Codecs Python knows that transform text rather than encode it: no client declares them as a
# charset, and some turn escapes into other characters.
_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"})
SENT_AT_HEADER = "X-Sent-At-Ms"
_ENVELOPE_FIELDS = frozenset({"sent_at_ms", "events"})
_GZIP_MAGIC = b"\x1f\x8b"
# BOM-less UTF-16/32 is big-endian (RFC 2781 section 4.3); Python's codecs assume the machine's order.
_BOM_LESS = {"utf-16": "utf-16-be", "utf-32": "utf-32-be"}


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
class ClampedTime:
    """An event kept with its time replaced by the receive time: its index in the request, the
    field (the sender's name for it), the time as sent (ms since epoch, on the sender's clock)
    and why it was impossible."""

    index: int
    field: str
    original_ms: int
    reason: str
    event_id: str = ""  # for the log only

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "original": self.original_ms, "reason": self.reason}


def clamp_reason(ts_ms: int, received_ms: int, min_ts_ms: int, fix_ahead: str, how: str = "") -> str:
    """Why the event time `ts_ms` (`how` it was reached, e.g. corrected by a send time) was
    replaced by `received_ms`; `fix_ahead` says how a sender avoids it for a clock ahead."""
    if ts_ms < min_ts_ms:
        return (
            f"{how}{ts_ms} is before {min_ts_ms} (PROFILESTREAM_EVENT_MIN_TS_MS; a reset clock or a time "
            "in seconds): set to the receive time; send ms since the epoch"
        )
    # A time 1,000 or 1,000,000 times the receive time is a unit, not a clock: say which.
    for factor, unit in ((1_000_000, "nanoseconds"), (1_000, "microseconds")):
        if ts_ms >= received_ms * factor // 2:
            return (
                f"{how}{ts_ms} looks like {unit} since the epoch: set to the receive time; send ms "
                f"since the epoch (divide by {factor:,})"
            )
    return (
        f"{how}{ts_ms} is {ts_ms - received_ms} ms after the receive time {received_ms} (the device clock "
        f"is ahead): set to the receive time; {fix_ahead}"
    )


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
    clamped_times: tuple[ClampedTime, ...] = ()

    @property
    def clamped(self) -> int:
        return len(self.clamped_times)

    def to_dict(self) -> dict[str, object]:
        return {
            "accepted": len(self.events),
            "rejected": [error.to_dict() for error in self.rejected],
            "truncated": self.truncated,
            "clamped": self.clamped,
            "clamped_events": [clamp.to_dict() for clamp in self.clamped_times],
        }


def body_error(status: int, reason: str, field_name: str = "$") -> Rejection:
    return Rejection(status, (FieldError(None, field_name, reason),))


def media_type(header: str | None) -> str:
    """The media type of a Content-Type header, lower case, without parameters ("" for none)."""
    return (header or "").split(";", 1)[0].strip().lower()


def check_content_type(header: str | None) -> Rejection | None:
    """None when the Content-Type is accepted: application/json or text/plain, with no charset or
    one that Python's codecs know. Else the 415 naming the fix."""
    declared = media_type(header)
    if declared not in ACCEPTED_CONTENT_TYPES:
        shown = repr(declared) if declared else "none"
        return body_error(415, f"content type {shown} is not accepted; send application/json (or text/plain)")
    charset = content_charset(header)
    return charset if isinstance(charset, Rejection) else None


def content_charset(header: str | None) -> str | Rejection | None:
    """The Python codec of the charset a Content-Type declares, None when it declares none, or the
    415 for a charset Python does not know (the body is then unreadable: send it as UTF-8)."""
    if not header or "charset" not in header.lower():
        return None
    message = Message()
    message["content-type"] = header
    declared = message.get_content_charset()
    if declared is None:
        return None
    try:
        codec = codecs.lookup(declared)
    except LookupError:
        codec = None
    # bytes.decode refuses codecs that are not text encodings (base64, zlib); so do we, up front.
    if codec is None or codec.name in _NOT_CHARSETS or not getattr(codec, "_is_text_encoding", True):
        return body_error(
            415,
            f"charset {declared[:40]!r} is not one this collector can decode; send the body as UTF-8 "
            "(Content-Type: application/json; charset=utf-8)",
            "Content-Type",
        )
    return codec.name


def declared_charset(header: str | None) -> str | None:
    """The charset a Content-Type declares, as the client spelled it (at most 40 characters), when
    it is one other than UTF-8 that Python knows; else None. For messages naming it."""
    codec = content_charset(header)
    if not isinstance(codec, str) or codec == "utf-8":
        return None
    message = Message()
    message["content-type"] = header or ""
    return (message.get_content_charset() or codec)[:40]


def decode_charset(body: bytes, content_type: str | None, max_bytes: int) -> bytes | Rejection:
    """The body as UTF-8: decoded with the charset its Content-Type declares, at most `max_bytes`
    once in UTF-8 (a single-byte charset's text grows up to 3 times).

    Without a declared charset, or with UTF-8, the body is returned as is: JSON is UTF-8 (the parser
    reads a BOM away, and tells UTF-16 and UTF-32 from their zero bytes). 415 for a charset Python
    does not know, 400 naming the charset for a body that is not valid in it, 413 over the limit.
    """
    charset = content_charset(content_type)
    if isinstance(charset, Rejection):
        return charset
    if charset is None or charset == "utf-8":
        return body
    try:
        # A BOM says which charset the text is in, and is no part of it.
        utf8 = body.decode(_byte_order(body, charset)).removeprefix("\ufeff").encode("utf-8")
    except UnicodeDecodeError as exc:
        return body_error(
            400,
            f"the body is not valid {charset} text, the charset its Content-Type declares ({exc.reason} "
            f"at byte {exc.start}); send it as UTF-8 or declare the charset it is in",
        )
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from UTF-7
        return body_error(
            400, f"the body's {charset} text holds a character UTF-8 cannot carry ({exc.reason}); send UTF-8"
        )
    if len(utf8) > max_bytes:
        return body_error(
            413,
            f"the body is {len(utf8)} bytes once decoded from {charset} to UTF-8, over the limit of "
            f"{max_bytes} bytes; split it",
        )
    return utf8


def _byte_order(body: bytes, charset: str) -> str:
    """The codec for a body declared as `charset`: BOM-less UTF-16 or UTF-32 in the byte order that
    JSON's first character shows (ASCII, so its zero bytes: RFC 8259 section 8.1, RFC 4627
    section 3), else big-endian as RFC 2781 says, never the machine's order."""
    if charset not in _BOM_LESS or body.startswith(_BOMS[charset]):
        return charset
    detected = json.detect_encoding(body)
    return detected if detected.startswith(charset) else _BOM_LESS[charset]


_BOMS = {
    "utf-16": (codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE),
    "utf-32": (codecs.BOM_UTF32_BE, codecs.BOM_UTF32_LE),
}


def too_large(size_bytes: int, max_body_bytes: int) -> Rejection:
    return body_error(
        413, f"request body is {size_bytes} bytes or more, over the limit of {max_body_bytes} bytes; split it"
    )


def decode_content(body: bytes, header: str | Sequence[str] | None, max_bytes: int) -> bytes | Rejection:
    """The body with its ``Content-Encoding`` undone, at most `max_bytes` once decompressed.

    `header` is the header's value, or its values when it was sent more than once (Starlette's
    ``request.headers.getlist``): both are one list of codings in the order they were applied
    (RFC 9110 section 8.4), undone last to first, ``identity`` skipped, at most
    MAX_CONTENT_CODINGS of them. An empty body stays empty, whatever its label.

    415 for an encoding other than gzip, deflate or identity anywhere in the list, or more than
    MAX_CONTENT_CODINGS layers; 400 for a body that is not what its label says; 413 as soon as a
    layer's decompressed size passes `max_bytes` (a small compressed bomb never grows in memory
    past the limit).
    """
    values = [header] if isinstance(header, str) else list(header or ())
    codings = [c.strip().lower() for value in values for c in value.split(",") if c.strip()]
    layers = [c for c in codings if c != "identity"]
    # Every coding is checked before any work: an unknown one anywhere refuses the request.
    for coding in layers:
        if coding not in ("gzip", "x-gzip", "deflate"):
            supported = ", ".join(SUPPORTED_ENCODINGS)
            return body_error(
                415,
                f"Content-Encoding {coding[:40]!r} is not supported; send one of {supported} (or none)",
                "Content-Encoding",
            )
    if len(layers) > MAX_CONTENT_CODINGS:
        return body_error(
            415,
            f"Content-Encoding lists {len(layers)} codings, over the limit of {MAX_CONTENT_CODINGS}; "
            "compress the body once",
            "Content-Encoding",
        )
    if not body:
        # No content was coded: nothing to undo (a client that labels every request, even an empty
        # one); the parser says the body is empty.
        return body
    # Encodings are listed in the order they were applied: undo them last to first.
    for coding in reversed(layers):
        inflate = _inflate_deflate if coding == "deflate" else _inflate_gzip
        decoded = inflate(body, max_bytes)
        if isinstance(decoded, Rejection):
            return decoded
        body = decoded
    return body


def _inflate_gzip(data: bytes, max_bytes: int) -> bytes | Rejection:
    out = bytearray()
    # A gzip body may hold several members back to back (RFC 1952 section 2.2): read them all,
    # within one decompressed-size limit.
    while True:
        member = _inflate(data, 16 + zlib.MAX_WBITS, "gzip", max_bytes - len(out))
        if isinstance(member, Rejection):
            return member
        chunk, data = member
        out += chunk
        if _only_padding(data):
            return bytes(out)
        if not data.startswith(_GZIP_MAGIC):
            return _trailing_bytes(data, "gzip")


def _only_padding(rest: bytes) -> bool:
    """True when nothing but NUL bytes follows the compressed data: padding some proxies and
    clients add (to a block size), which gzip(1) reads away too. Bounded by the body limit."""
    return not rest.strip(b"\0")


def _trailing_bytes(rest: bytes, coding: str) -> Rejection:
    return body_error(
        400,
        f"{len(rest)} trailing bytes after the {coding} data (only NUL padding may follow it); send "
        f"only the {coding} stream",
        "Content-Encoding",
    )


def _inflate_deflate(data: bytes, max_bytes: int) -> bytes | Rejection:
    # HTTP's "deflate" is the zlib format (RFC 1950), yet some clients send raw deflate (RFC 1951):
    # a valid zlib header tells them apart.
    zlib_wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
    member = _inflate(data, zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS, "deflate", max_bytes)
    if isinstance(member, Rejection):
        return member
    chunk, rest = member
    return chunk if _only_padding(rest) else _trailing_bytes(rest, "deflate")


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


def parse_json(body: bytes, charset: str | None = None) -> object | Rejection:
    """The parsed body, or a 400 saying why it is not JSON.

    `charset` is the charset other than UTF-8 that the Content-Type declared (`declared_charset`),
    which `decode_charset` turned the body from into UTF-8: a body that is not JSON once decoded
    names it (text read in the wrong charset is garbage).
    Over-large numbers and ``NaN``/``Infinity`` (which Python's json.dumps writes) parse into
    placeholders that the validator rejects with their event alone, naming the field. A UTF-8 body
    whose strings hold bytes that are not UTF-8 (a Latin-1 "é" sent without its charset) still
    parses: each such byte is kept as a lone surrogate (``surrogateescape``), which the validator
    rejects with its event alone (`parse_batch` names the field and the fix: `stray_bytes`); a body
    that is not JSON even so is the 400 naming the first such byte.
    """
    parsed = _parse_json(body, charset)
    return parsed if isinstance(parsed, Rejection) else parsed[0]


def _parse_json(body: bytes, charset: str | None) -> tuple[object, bool] | Rejection:
    """`parse_json`'s document and whether any of its bytes were not UTF-8 (kept as surrogates)."""
    if not body.strip():
        return body_error(400, "the request body is empty; send a JSON document")
    declared = (
        f" after decoding it from {charset}, the charset its Content-Type declares; check that the body "
        "is in that charset, or send UTF-8"
        if charset
        else ""
    )
    try:
        return json_numbers.loads(body, _DECODER), False
    except RecursionError:
        return body_error(400, f"JSON nested too deeply{declared}")
    except UnicodeDecodeError as exc:
        not_utf8 = exc
    except json.JSONDecodeError as exc:
        return body_error(
            400, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}){declared}"
        )
    # A stray byte inside one event's string must not cost the others: read it as a surrogate and
    # reject that event alone. UTF-16/32 bodies and broken JSON keep the error naming the byte.
    if json.detect_encoding(body) == "utf-8" and body[:2] != _GZIP_MAGIC:
        try:
            return json_numbers.loads(body.decode("utf-8", "surrogateescape"), _DECODER), True
        except (RecursionError, json.JSONDecodeError):
            pass
    hint = "; it looks gzip-compressed: send Content-Encoding: gzip" if body[:2] == _GZIP_MAGIC else ""
    return body_error(400, f"not UTF-8 text ({not_utf8.reason} at byte {not_utf8.start}){hint}")


_STRAY_BYTE_FIX = (
    "send the body as UTF-8, or declare its charset (Content-Type: application/json; charset=windows-1252)"
)


def stray_bytes(doc: object) -> InvalidEvent | None:
    """The error for the first string (value or key) of `doc` that holds a byte that is not UTF-8
    (read by `parse_json` as a surrogate), naming its field (``context.name``, ``items[2]``) and
    the byte; None when there is none."""
    found = first_stray_byte(doc)
    if found is None:
        return None
    return InvalidEvent(found.field, stray_byte_reason(found.byte, _STRAY_BYTE_FIX))


def parse_batch(
    body: bytes,
    *,
    limits: EventLimits,
    max_events: int,
    received_ms: int,
    sent_at_header: str | None = None,
    charset: str | None = None,
) -> Batch | Rejection:
    """The valid events of a request body and the rejected ones, or why the request is refused whole.

    `charset` is the one the Content-Type declared (see `parse_json`)."""
    parsed = _parse_json(body, charset)
    if isinstance(parsed, Rejection):
        return parsed
    doc, has_stray_bytes = parsed
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
    events: list[Event] = []
    errors: list[FieldError] = []
    truncated = 0
    clamped: list[ClampedTime] = []
    # Request order is receive order: a forget removes what was received at or before it, so
    # each event after a forget of the request is stamped one ms later per forget before it.
    forgets_before = 0
    for index, item in enumerate(docs):
        try:
            if not isinstance(item, dict):
                event_from_dict(item, limits=limits, now_ms=received_ms)  # raises, naming the type
                continue
            stray = stray_bytes(item) if has_stray_bytes else None
            if stray is not None:
                raise stray
            duplicate = json_numbers.first_duplicate_key(item)
            if duplicate is not None:
                raise InvalidEvent(duplicate[0], json_numbers.duplicate_key_reason(duplicate[1]))
            stamped, clamp_reason_ms = _stamp_times(item, limits, received_ms, sent_at_ms)
            stamped["received_ms"] = received_ms + forgets_before
            # The size check (of the record the worker will read) is event_from_dict's; no event
            # of a small body can be over it, which the body's size lets it skip measuring.
            decoded = decode_doc(stamped, limits=limits, now_ms=received_ms, source_bytes=len(body))
            check_client_event(decoded.event)
        except InvalidEvent as exc:
            errors.append(FieldError(index, exc.field, exc.reason))
            continue
        event = decoded.event
        events.append(event)
        forgets_before += event.type is EventType.FORGET
        truncated += decoded.query_truncated
        if clamp_reason_ms is not None:
            reason, original_ms = clamp_reason_ms
            clamped.append(ClampedTime(index, "ts_ms", original_ms, reason, event.event_id))
    if not events:
        return Rejection(422, tuple(errors))
    return Batch(events, tuple(errors), truncated, tuple(clamped))


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
            # Escaped: a name read with a stray byte (or a JSON-escaped lone surrogate) cannot be
            # written in the UTF-8 answer.
            shown = unknown[0][:64].encode("utf-8", "backslashreplace").decode("utf-8")
            return body_error(
                422, "unknown field of a batch envelope; it holds only sent_at_ms and events", shown
            )
        if isinstance(doc, json_numbers.DuplicateKeys):
            return body_error(422, json_numbers.duplicate_key_reason(doc.duplicates[0]), doc.duplicates[0])
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
    """The client's send time, read by the time rule of every entry point (`stream.core.normalise`)."""
    try:
        sent_at_ms = time_ms(value, name)
    except InvalidEvent as exc:
        return body_error(422, exc.reason, name)
    if sent_at_ms is None:
        return body_error(422, f"the client's send time is empty; {time_fix()}", name)
    if sent_at_ms < 0:
        return body_error(422, f"{sent_at_ms} is before the epoch; {time_fix()}", name)
    return sent_at_ms


def latest_event_ms(received_ms: int, limits: EventLimits) -> int:
    """The latest event time accepted for an event received at `received_ms`: the receive time
    plus RECEIVE_TIME_TOLERANCE_MS, or less when `event_max_future_skew_s` is set smaller."""
    return received_ms + min(RECEIVE_TIME_TOLERANCE_MS, limits.max_future_skew_ms)


def _stamp_times(
    item: dict[str, object], limits: EventLimits, received_ms: int, sent_at_ms: int | None
) -> tuple[dict[str, object], tuple[str, int] | None]:
    """A copy of `item` with the receive time set and its event time corrected or clamped; when
    clamped, also why and the time as sent (ms)."""
    stamped = dict(item)
    # The collector's own clock, whatever the client sent.
    stamped["received_ms"] = received_ms
    try:
        sent = time_ms(item.get("ts_ms"), "ts_ms")
    except InvalidEvent:
        sent = None
    if sent is None:
        # The validator names what is wrong with it (the same rule refuses it there).
        return stamped, None
    ts = sent if sent_at_ms is None else received_ms - (sent_at_ms - sent)
    if not limits.min_ts_ms <= ts <= latest_event_ms(received_ms, limits):
        stamped["ts_ms"] = received_ms
        unit = None if sent_at_ms is None else send_time_unit(sent_at_ms, received_ms)
        if sent_at_ms is None:
            reason = clamp_reason(ts, received_ms, limits.min_ts_ms, _SEND_TIME_FIX)
        elif unit is not None:
            # The send time, not the device clock, is off: name it, or the reason blames the clock.
            reason = (
                f"corrected by the send time {sent_at_ms} (sent_at_ms or {SENT_AT_HEADER}), which looks "
                f"like {unit} since the epoch: set to the receive time; send the send time in ms since "
                "the epoch"
            )
        else:
            reason = clamp_reason(
                ts, received_ms, limits.min_ts_ms, "check the device clock", "corrected by the send time, "
            )
        return stamped, (reason, sent)
    stamped["ts_ms"] = ts
    return stamped, None


def send_time_unit(sent_at_ms: int, received_ms: int) -> str | None:
    """The unit a client's send time is in when it is not ms: "seconds", "microseconds" or
    "nanoseconds" when it lies within a factor of 2 of the receive time so converted (a send time
    is the client's clock, off by minutes or hours, never by a factor of 1,000); None otherwise."""
    for unit, received_in_unit in (
        ("seconds", received_ms / 1_000),
        ("microseconds", received_ms * 1_000),
        ("nanoseconds", received_ms * 1_000_000),
    ):
        if received_in_unit / 2 <= sent_at_ms <= received_in_unit * 2:
            return unit
    return None


_SEND_TIME_FIX = (
    f"send the batch's send time (sent_at_ms, or the {SENT_AT_HEADER} header) to have it corrected"
)
# NaN and Infinity parse into placeholders the validator rejects with their event alone; an event
# whose JSON repeats a key is rejected alone, naming where (`json_numbers.first_duplicate_key`).
_DECODER = json_numbers.BoundedDecoder(json_numbers.parse_json_constant, json_numbers.mark_duplicate_keys)
