"""Event schema v1: the JSON documents shop frontends send, decoded into typed records.

Decoding is pure (the wall clock comes in as `now_ms`) so that the worker, the collector and the
SDK share one validator and tests need no clock.

A v1 event::

    {"event_id": "e-1", "user_id": "u42", "type": "view", "item_id": "sku-9",
     "ts_ms": 1732700000000, "session_id": "s-1", "context": {"page": "home"}}
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import regex

from stream.core.errors import InvalidEvent
from stream.core.json_numbers import (
    MAX_INTEGER_DIGITS,
    BoundedDecoder,
    duplicate_key_reason,
    number_too_large,
    repeated_keys,
    unsafe_number_path,
)
from stream.core.normalise import (
    EXCEL_SERIAL_HINT,
    MAX_ID_CHARS,
    id_text,
    integer_value,
    json_type,
    plain_number,
    time_fix,
    time_ms,
    type_key,
)
from stream.core.settings import DEFAULT_MIN_TS_MS, Settings
from stream.core.stray_bytes import first_stray_byte, stray_byte_reason

SCHEMA_VERSION = 1

__all__ = ["MAX_ID_CHARS", "json_type"]  # defined in stream.core.normalise, imported from here too
MAX_QUERY_CHARS = 512
MAX_CONTEXT_KEYS = 32


class EventType(enum.StrEnum):
    SEARCH = "search"
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    # Asks the system to delete every trace of the user (privacy); carries no item.
    FORGET = "forget"
    # A login: `user_id` (an anonymous id) is the person `known_user_id` names. Keyed by the
    # anonymous id, so it follows that id's events; the worker moves the anonymous window into the
    # known user's (stream/core/identity.py). Carries no item and never enters a window.
    IDENTIFY = "identify"


_TYPE_VALUES = frozenset(t.value for t in EventType)
ITEM_TYPES = frozenset({EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE})
V1_FIELDS = frozenset(
    {
        "v",
        "event_id",
        "user_id",
        "type",
        "item_id",
        "query",
        "ts_ms",
        "session_id",
        "context",
        "received_ms",
        "known_user_id",
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    user_id: str
    type: EventType
    ts_ms: int
    item_id: str | None = None
    query: str | None = None
    session_id: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    # When the collector received the event (ms since epoch, its own clock); None when the event
    # came another way. A `forget` removes what was received before it, whatever ts_ms says.
    received_ms: int | None = None
    # Only for `identify`: the known user the anonymous `user_id` joins.
    known_user_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The v1 JSON document of this event, with absent optional fields left out."""
        doc: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "event_id": self.event_id,
            "user_id": self.user_id,
            "type": self.type.value,
            "ts_ms": self.ts_ms,
        }
        for name in ("item_id", "query", "session_id", "known_user_id"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        if self.context:
            doc["context"] = dict(self.context)
        if self.received_ms is not None:
            doc["received_ms"] = self.received_ms
        return doc

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


# How far past the receive time an event time may lie before it is clamped to it (the collector),
# and how far past its Kafka record's timestamp an event's received_ms may lie before it is
# clamped to that (the worker's decoder). An event cannot happen after the collector received it,
# nor be received after its record was produced; what is left is the difference between two clocks
# (the device's and the collector's, or two hosts'), milliseconds when both follow NTP. 60 s is far
# above that, and far below the hours a wrong clock is off, which would make the event the user's
# newest (ruling their recommendations), or out of a forget's reach, for as long.
RECEIVE_TIME_TOLERANCE_MS = 60_000

# The largest record or line any entry point parses at all (bytes), the collector's default body
# limit. The byte limit (`EventLimits.max_bytes`) applies to the event once normalised: a record
# over it may still be valid once its over-long query is cut. This bounds the parse meanwhile.
MAX_RAW_EVENT_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class EventLimits:
    """Bounds an event must respect; built from the settings so that operators can tune them.

    `max_bytes` bounds the normalised event's record (`Event.to_json`, UTF-8 bytes), whichever
    way it came; `max_raw_bytes` bounds what is parsed to find it; `window_max_bytes` is the
    ceiling an operator may raise `max_bytes` to (Settings refuses more), named in rejections.
    """

    max_bytes: int = 16_384
    min_ts_ms: int = DEFAULT_MIN_TS_MS
    max_future_skew_ms: int = 86_400_000
    max_raw_bytes: int = MAX_RAW_EVENT_BYTES
    window_max_bytes: int = 262_144

    @classmethod
    def from_settings(cls, settings: Settings) -> EventLimits:
        return cls(
            max_bytes=settings.event_max_bytes,
            min_ts_ms=settings.event_min_ts_ms,
            max_future_skew_ms=settings.event_max_future_skew_s * 1000,
            max_raw_bytes=max(MAX_RAW_EVENT_BYTES, settings.event_max_bytes),
            window_max_bytes=settings.window_max_bytes,
        )


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """An accepted event and what normalising it changed, for the entry point to count."""

    event: Event
    # The input's query was over MAX_QUERY_CHARS and was cut (`truncate_query`).
    query_truncated: bool = False


def decode_event(raw: bytes, *, limits: EventLimits, now_ms: int) -> Event:
    """Decode one UTF-8 JSON event; raise InvalidEvent naming the field and the reason."""
    return decode_event_noted(raw, limits=limits, now_ms=now_ms).event


def decode_event_noted(raw: bytes, *, limits: EventLimits, now_ms: int) -> DecodedEvent:
    """`decode_event`, also saying whether the event's query was cut (see `DecodedEvent`).

    The size limit is the normalised event's (`check_event_size`); a record over
    `limits.max_raw_bytes` is not parsed at all and is rejected naming its largest field as a
    scan of the text finds it. Raises InvalidEvent naming the field and the reason.
    """
    if len(raw) > limits.max_raw_bytes:
        name = largest_raw_field(raw)
        raise InvalidEvent(name, _oversize_reason(len(raw), name, None, limits))
    return decode_doc(parse_event_json(raw), limits=limits, now_ms=now_ms, source_bytes=len(raw))


def decode_doc(
    doc: object, *, limits: EventLimits, now_ms: int, source_bytes: int | None = None
) -> DecodedEvent:
    """`event_from_dict` of an already parsed document, also saying whether its query was cut
    (`source_bytes` as for `event_from_dict`). Raises InvalidEvent naming the field and the reason."""
    event = event_from_dict(doc, limits=limits, now_ms=now_ms, source_bytes=source_bytes)
    return DecodedEvent(event, isinstance(doc, dict) and query_truncated(doc.get("query")))


def parse_event_json(raw: bytes) -> object:
    """The JSON document of an event record, read as every entry point reads one (duplicate keys,
    NaN and a BOM refused; a stray Latin-1 byte named by its field). Raises InvalidEvent."""
    try:
        # json.loads(raw) step by step, with one shared decoder: json.loads(raw, parse_constant=...)
        # builds a decoder (a reference cycle) per call, a good part of the decode time.
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        doc = _DECODER.decode(text)
    except RecursionError as exc:
        raise InvalidEvent("$", "JSON nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise _not_utf8(raw, exc) from exc
    except json.JSONDecodeError as exc:
        raise InvalidEvent(
            "$", f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    return doc


_STRAY_BYTE_FIX = "have the producer encode the record's value as UTF-8"


def _not_utf8(raw: bytes, exc: UnicodeDecodeError) -> InvalidEvent:
    """The error for a record that is not UTF-8: naming the field whose string holds the first
    stray byte when the rest is UTF-8 JSON (a Latin-1 "é" in a query), else the byte's offset."""
    if raw[:2] == b"\x1f\x8b":
        return InvalidEvent(
            "$",
            "the value is gzip-compressed (it starts with gzip's magic bytes 1f 8b); send the JSON "
            "itself: Kafka compresses record batches on its own (the producer's compression.type)",
        )
    if json.detect_encoding(raw) == "utf-8":
        try:
            doc = _DECODER.decode(raw.decode("utf-8", "surrogateescape"))
        except (RecursionError, ValueError, InvalidEvent):
            doc = None
        found = first_stray_byte(doc) if doc is not None else None
        if found is not None:
            return InvalidEvent(found.field, stray_byte_reason(found.byte, _STRAY_BYTE_FIX))
    return InvalidEvent("$", f"not UTF-8 text ({exc.reason} at byte {exc.start})")


def _reject_constant(name: str) -> object:
    raise InvalidEvent("$", f"{name} is not valid JSON")


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        # The hook sees one object, not where it lies: "$" with the key named in the reason.
        raise InvalidEvent("$", duplicate_key_reason(repeated_keys(pairs)[0]))
    return doc


# Over-large numbers parse into OversizedNumber values, which the validator rejects by field; a
# record whose JSON repeats a key is refused alone (`stream.core.json_numbers.DuplicateKeys`).
_DECODER = BoundedDecoder(_reject_constant, _reject_duplicate_keys)
MAX_FIELD_NAME_CHARS = 64
# JSON can spell a lone UTF-16 surrogate ("\\ud800"); it is no Unicode character, cannot be
# encoded as UTF-8 and would fail every later write of the event.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_REASON = "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not valid Unicode"
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f]")
QUERY_CONTROL_REASON = (
    "contains control characters (U+0000-U+001F other than tabs and line breaks, which read as a "
    "space: NUL, ESC...); send plain text, as GET /v1/search requires"
)


def event_from_dict(
    doc: object, *, limits: EventLimits, now_ms: int, source_bytes: int | None = None
) -> Event:
    """Validate an already parsed JSON value as a v1 event, normalised (an over-long query cut).

    Field values go through the one set of value rules of `stream.core.normalise` (times as
    numbers, numeric text or ISO-8601; ids given as numbers; type names in any case).
    Raises InvalidEvent naming the field and the reason; an event whose record is still over
    `limits.max_bytes` once normalised names its largest field (`check_event_size`).
    `source_bytes`, the size of the JSON text `doc` was parsed from, lets a small event skip
    measuring its record.
    """
    if not isinstance(doc, dict):
        raise InvalidEvent("$", f"expected a JSON object, got {json_type(doc)}")
    unknown = sorted(set(doc) - V1_FIELDS)
    if unknown:
        name = unknown[0]
        if 0 < len(name) <= MAX_FIELD_NAME_CHARS and name.isprintable():
            raise InvalidEvent(name, "unknown field in schema v1 (check its spelling)")
        # An empty, huge or unprintable name cannot stand as the field: quote a piece of it.
        shown = json.dumps(name[:MAX_FIELD_NAME_CHARS])
        raise InvalidEvent("$", f"unknown field {shown} in schema v1 (check its spelling)")
    version = doc.get("v", SCHEMA_VERSION)
    if type(version) is not int:
        # "1" and 1.0 are version 1; what no integer rule reads is named below as no version.
        with contextlib.suppress(InvalidEvent):
            version = integer_value(version, "v")
    too_large = number_too_large(version)
    if too_large is not None:
        raise InvalidEvent("v", f"{too_large}; this decoder reads v1: send 1 (or leave v out)")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise InvalidEvent("v", f"unsupported schema version {version!r}; this decoder reads v1")

    event_id = _require_id(doc, "event_id")
    user_id = _refuse_unset_text(_require_id(doc, "user_id"), "user_id")
    event_type = _require_type(doc)
    ts_ms = _require_ts(doc, limits, now_ms)
    item_id = _optional_id(doc, "item_id")
    raw_query = doc.get("query")
    # A query is text: invisible edges are trimmed, over-long ones (pasted text) cut, not
    # rejected: see `normalise_query`.
    query = _checked_text(
        normalise_query(raw_query) if isinstance(raw_query, str) else raw_query, "query", MAX_QUERY_CHARS
    )
    if query is not None and has_control_character(query):
        # GET /v1/search's rule too (`stream.serving.search.clean_query`): one policy at every entry.
        raise InvalidEvent("query", QUERY_CONTROL_REASON)
    session_id = _optional_id(doc, "session_id")
    context = _optional_context(doc)
    received_ms = _optional_received(doc)
    known_user_id = _optional_id(doc, "known_user_id")
    known_user_id = known_user_id and _refuse_unset_text(known_user_id, "known_user_id")

    if event_type in ITEM_TYPES and item_id is None:
        raise InvalidEvent("item_id", f"required for type {event_type.value!r}")
    if event_type is EventType.SEARCH and query is None:
        raise InvalidEvent("query", "required for type 'search'")
    if event_type is EventType.FORGET and (item_id is not None or query is not None):
        bad = "item_id" if item_id is not None else "query"
        raise InvalidEvent(bad, "not allowed for type 'forget'")
    if event_type is EventType.IDENTIFY:
        if known_user_id is None:
            raise InvalidEvent("known_user_id", "required for type 'identify' (the user id the login names)")
        if item_id is not None or query is not None:
            bad = "item_id" if item_id is not None else "query"
            raise InvalidEvent(bad, "not allowed for type 'identify'")
    elif known_user_id is not None:
        raise InvalidEvent("known_user_id", "only allowed for type 'identify'")
    event = Event(
        event_id=event_id,
        user_id=user_id,
        type=event_type,
        ts_ms=ts_ms,
        item_id=item_id,
        query=query,
        session_id=session_id,
        context=context,
        received_ms=received_ms,
        known_user_id=known_user_id,
    )
    check_event_size(event, limits, source_bytes=source_bytes)
    return event


def _optional_received(doc: Mapping[str, object]) -> int | None:
    value = time_ms(doc.get("received_ms"), "received_ms")
    if value is not None and value < 0:
        raise InvalidEvent("received_ms", f"{value} is before the epoch; {time_fix()}")
    return value


# What programs write for an unset value (JavaScript's String(undefined), String(null), String({})
# and NaN; Python's str(None)): as a user id, every visitor a tracker bug sends it for would share
# one profile, each shown the others' recommendations.
UNSET_USER_ID_TEXTS = frozenset({"undefined", "null", "None", "NaN", "nan", "[object Object]"})


def _refuse_unset_text(user_id: str, name: str) -> str:
    if user_id in UNSET_USER_ID_TEXTS:
        raise InvalidEvent(
            name,
            f"{user_id!r} is the text a program writes for an unset value (JavaScript's "
            "String(undefined), Python's str(None)); every visitor sent with it would share one "
            "profile: send the visitor's id, or no event until there is one",
        )
    return user_id


def _require_id(doc: Mapping[str, object], name: str) -> str:
    if name not in doc or doc[name] is None:
        raise InvalidEvent(name, "required field is missing")
    value = _optional_id(doc, name)
    assert value is not None
    return value


def _optional_id(doc: Mapping[str, object], name: str) -> str | None:
    value = doc.get(name)
    return None if value is None else valid_id(value, name)


def valid_id(value: object, name: str) -> str:
    """`value` as the id every entry point reads: `id_text` (numbers as their text, non-ASCII
    text in Unicode form NFC), then `check_id`. Events, catalogue rows, lookups and search all
    read ids through this, so one spelling of an id names one user or item everywhere.

    Raises InvalidEvent naming `name` for None and for whatever `id_text` or `check_id` refuses.
    """
    text = id_text(value, name)
    if text is None:
        raise InvalidEvent(name, "required field is missing")
    check_id(text, name)
    return text


def check_id(value: str, name: str) -> None:
    """Raise InvalidEvent naming `name` unless `value` is an id an event may carry: non-blank, at
    most MAX_ID_CHARS characters, no lone surrogate, and `check_id_characters`' rules. The one id
    rule for events and for the catalogue, so that every catalogue item can be named by an event."""
    _checked_text(value, name, MAX_ID_CHARS)
    check_id_characters(value, name)


def check_id_characters(value: str, name: str) -> None:
    """Raise InvalidEvent naming `name` when id text `value` begins or ends with a character that
    draws nothing (whitespace, U+200B, U+FEFF...: `is_blank`'s set), holds a control character,
    or holds a bidirectional embedding, override or isolate (U+202A-202E, U+2066-2069) anywhere.

    Ids are compared exactly: ``"u1\u200b"`` would be another user who looks like ``u1``, and a
    bidi control can make one id display as another (Trojan Source, CVE-2021-42574).
    """
    if value != value.strip() or _CONTROL_CHARACTER.search(value):
        raise InvalidEvent(name, "must not have surrounding whitespace or control characters")
    if value.isascii():
        # Every bidi control and invisible character is outside ASCII; most ids are inside it.
        return
    bidi = _BIDI_CONTROL.search(value)
    if bidi is not None:
        raise InvalidEvent(
            name,
            f"contains the bidirectional control {_char_name(bidi.group())}, which can make an id "
            "display as another; remove it",
        )
    for edge, match in (
        ("begins", _LEADING_INVISIBLE.match(value)),
        ("ends", _TRAILING_INVISIBLE.search(value)),
    ):
        if match is not None:
            char = match.group()[0 if edge == "begins" else -1]
            raise InvalidEvent(
                name,
                f"{edge} with the invisible character {_char_name(char)}, which would make it another "
                "id that looks the same; remove it",
            )


def _char_name(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}"


def _optional_text(doc: Mapping[str, object], name: str, max_chars: int) -> str | None:
    return _checked_text(doc.get(name), name, max_chars)


def _checked_text(value: object, name: str, max_chars: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(name, f"expected a string, got {json_type(value)}")
    if is_blank(value):
        raise InvalidEvent(name, "must not be empty (it holds only whitespace or invisible characters)")
    if len(value) > max_chars:
        raise InvalidEvent(name, f"{len(value)} characters, over the limit of {max_chars}")
    if not value.isascii() and _LONE_SURROGATE.search(value):
        raise InvalidEvent(name, _SURROGATE_REASON)
    return value


# Characters that draw nothing, by Unicode property (the `regex` module's tables, kept current
# with each Unicode release): whitespace; controls (Cc); format characters such as the zero-width
# space U+200B and BOM U+FEFF (Cf); space, line and paragraph separators such as U+00A0 and
# U+3000 (Z); Default_Ignorable_Code_Point, which fonts render as nothing (DerivedCoreProperties:
# the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, the combining grapheme joiner U+034F,
# variation selectors, tags U+E0000-E0FFF...); and U+2800 BRAILLE PATTERN BLANK, a visible-width
# blank widely used to fake an empty name. Text made only of these is empty to a reader.
_INVISIBLE = r"\p{White_Space}\p{Cc}\p{Cf}\p{Z}\p{Default_Ignorable_Code_Point}\u2800"
_BLANK = regex.compile(f"[{_INVISIBLE}]*")
# At the end of text, a variation selector (U+FE0F: emoji presentation) or a tag character (the
# flag of Scotland's tag sequence) belongs to the visible character before it: not an edge.
_ATTACHED = r"\p{Variation_Selector}\U000E0020-\U000E007F"
_LEADING_INVISIBLE = regex.compile(f"\\A[{_INVISIBLE}]+")
_TRAILING_INVISIBLE = regex.compile(f"[[{_INVISIBLE}]--[{_ATTACHED}]]+$", regex.VERSION1)
# Embeddings, overrides and isolates: they reorder what follows them on screen.
_BIDI_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069]")


def is_blank(text: str) -> bool:
    """True when `text` shows nothing: empty, or only whitespace and invisible characters."""
    if text.isascii() and text.isprintable():
        # The common case, without the property tables: printable ASCII draws all but the space.
        return not text.strip(" ")
    return _BLANK.fullmatch(text) is not None


def trim_invisible(text: str) -> str:
    """`text` without the whitespace and invisible characters (`is_blank`'s set) at its edges; a
    variation selector or tag character after visible text is kept (it belongs to it)."""
    text = _LEADING_INVISIBLE.sub("", text, count=1)
    return _TRAILING_INVISIBLE.sub("", text, count=1)


def truncate_query(text: str) -> str:
    """The over-long query policy, shared by the schema, the SDK, the browser snippet and search:
    a query longer than MAX_QUERY_CHARS characters (code points) is trimmed of surrounding
    whitespace and cut to its first MAX_QUERY_CHARS characters; a shorter one is left as it is."""
    if len(text) <= MAX_QUERY_CHARS:
        return text
    return text.strip()[:MAX_QUERY_CHARS]


# Tabs and line breaks inside a query: pasted text and search-log exports carry them between
# words, where they mean a space; other control characters are refused (QUERY_CONTROL_REASON).
# Unicode's other line breaks (NEL U+0085, LINE and PARAGRAPH SEPARATOR) read the same way.
_QUERY_BREAKS = re.compile("[\t\n\r\x85\u2028\u2029]+")


def has_control_character(query: str) -> bool:
    """Whether a query, once `normalise_query` read its tabs and line breaks as spaces, still holds
    a control character (U+0000-U+001F: NUL, ESC...), which every entry point refuses."""
    return _CONTROL_CHARACTER.search(query) is not None


def normalise_query(text: str) -> str:
    """A query as the schema stores it: text, so each run of tabs and line breaks inside it reads
    as one space, a lone UTF-16 surrogate (half of an emoji) is dropped, the whitespace and
    invisible characters at its edges are trimmed (`trim_invisible`: ``"\u200bshoes\ufeff"`` is
    ``"shoes"``), then an over-long one is cut (`truncate_query`). Text of only those characters
    becomes empty (and is refused as empty by the validator)."""
    if "\t" in text or "\n" in text or "\r" in text or not text.isascii():
        text = _QUERY_BREAKS.sub(" ", text)
    if not text.isascii() and _LONE_SURROGATE.search(text):
        # Half of an emoji, left by a JavaScript cut of the text (`substring` counts UTF-16
        # units): it means nothing, and no later write could encode it; the rest is the query.
        text = _LONE_SURROGATE.sub("", text)
    return truncate_query(trim_invisible(text))


def query_truncated(value: object) -> bool:
    """Whether `normalise_query` cuts characters off `value` (not just its invisible edges)."""
    return (
        isinstance(value, str)
        and len(value) > MAX_QUERY_CHARS
        and len(trim_invisible(_QUERY_BREAKS.sub(" ", value))) > MAX_QUERY_CHARS
    )


# How much larger than the JSON text it was parsed from an event's record can be: whitespace
# and escapes only shrink, but a float literal grows (``1e15`` is written ``1000000000000000.0``,
# 4.5 times as long), and "v" and a receive time may be added.
_MAX_GROWTH = 5
_ADDED_BYTES = 64
# Every key of the record, its punctuation, "v" and three 20-digit numbers.
_FIXED_BYTES = 256
# The most bytes one character of a string takes in the record (a control character: \u001f).
_MAX_CHAR_BYTES = 6


def check_event_size(event: Event, limits: EventLimits, *, source_bytes: int | None = None) -> None:
    """Raise InvalidEvent when `event`'s record (`Event.to_json`, UTF-8) is over `limits.max_bytes`.

    The one size policy of every entry point (collector, SDK, replay, load, worker): it applies
    to the event as normalised, so an over-long query is cut first. The error names the field
    whose value takes the most bytes (`largest_field`) and the fix. `source_bytes` (the size of
    the JSON text the event was parsed from) and a bound on the strings skip measuring small
    events.
    """
    if source_bytes is not None and source_bytes * _MAX_GROWTH + _ADDED_BYTES <= limits.max_bytes:
        return
    if not event.context:
        chars = sum(
            len(text)
            for text in (event.event_id, event.user_id, event.item_id, event.query, event.session_id,
                         event.known_user_id)
            if text is not None
        )  # fmt: skip
        if _FIXED_BYTES + _MAX_CHAR_BYTES * chars <= limits.max_bytes:
            return
    size = len(event.to_json())
    if size > limits.max_bytes:
        doc = event.to_dict()
        name = largest_field(doc)
        raise InvalidEvent(name, _oversize_reason(size, name, doc, limits))


def largest_field(doc: Mapping[str, object]) -> str:
    """The name of `doc`'s field whose value takes the most bytes as compact UTF-8 JSON (as
    `Event.to_json` writes it); ``$`` for an empty object. Ties go to the first field."""
    sizes = {name: _json_bytes(value) for name, value in doc.items()}
    # str(): a Python caller's context may have keys of other types, which JSON writes as text.
    return str(max(sizes, key=sizes.__getitem__, default="$"))


_FIELD_KEY = re.compile(rb'"(' + b"|".join(name.encode() for name in sorted(V1_FIELDS)) + rb')"\s*:')


def largest_raw_field(raw: bytes) -> str:
    """The field of an unparsed JSON event text that spans the most bytes, found by a scan for the
    schema's field names (a text too large to parse); ``$`` when none is found."""
    starts = [(match.start(), match.group(1).decode()) for match in _FIELD_KEY.finditer(raw)]
    if not starts:
        return "$"
    ends = [start for start, _ in starts[1:]] + [len(raw)]
    spans = [(end - start, name) for (start, name), end in zip(starts, ends, strict=True)]
    return max(spans, key=lambda span: span[0])[1]


def _json_bytes(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _oversize_reason(size: int, name: str, doc: Mapping[str, object] | None, limits: EventLimits) -> str:
    """Why an event of `size` bytes is refused and how to fix it, naming its largest field `name`;
    `doc` is the normalised event, or None for a text too large to parse."""
    limit = limits.max_bytes
    if doc is None:
        found = f"its largest field is {name}" if name != "$" else "no schema v1 field was found in it"
        return (
            f"event is {size} bytes, over the {limits.max_raw_bytes} bytes read of one event (and the "
            f"limit of {limit} bytes once normalised); {found}: shorten it"
        )
    value = doc.get(name)
    part = f"its largest field, {name}, takes {_json_bytes(value)} bytes"
    if isinstance(value, Mapping) and value:
        part += f", most of them under its key {largest_field(value)[:MAX_FIELD_NAME_CHARS]!r}"
    if limit < limits.window_max_bytes:
        fix = (
            f"shorten it, or raise PROFILESTREAM_EVENT_MAX_BYTES (now {limit}; at most "
            f"PROFILESTREAM_WINDOW_MAX_BYTES, {limits.window_max_bytes})"
        )
    else:
        fix = "shorten it (PROFILESTREAM_EVENT_MAX_BYTES is at its ceiling, PROFILESTREAM_WINDOW_MAX_BYTES)"
    return f"event is {size} bytes, over the limit of {limit} bytes; {part}: {fix}"


def _require_type(doc: Mapping[str, object]) -> EventType:
    value = doc.get("type")
    if value is None:
        raise InvalidEvent("type", "required field is missing")
    if not isinstance(value, str):
        raise InvalidEvent("type", f"expected a string, got {json_type(value)}")
    if value in _TYPE_VALUES:
        return EventType(value)
    try:
        return EventType(type_key(value))
    except ValueError as exc:
        allowed = ", ".join(t.value for t in EventType)
        raise InvalidEvent("type", f"unknown type {value[:40]!r}; expected one of {allowed}") from exc


def _require_ts(doc: Mapping[str, object], limits: EventLimits, now_ms: int) -> int:
    value = time_ms(doc.get("ts_ms"), "ts_ms")
    if value is None:
        raise InvalidEvent("ts_ms", "required field is missing")
    latest = now_ms + limits.max_future_skew_ms
    if value < limits.min_ts_ms:
        hint = ""
        if value * 1000 >= limits.min_ts_ms:
            hint = " (it looks like seconds: multiply by 1000)"
        elif _EXCEL_DAYS[0] <= value < _EXCEL_DAYS[1]:
            hint = f" ({EXCEL_SERIAL_HINT})"
        raise InvalidEvent("ts_ms", f"{value} is before the oldest accepted time {limits.min_ts_ms}{hint}")
    if value > latest:
        hint = ""
        for per_ms, unit in ((1000, "microseconds"), (1_000_000, "nanoseconds")):
            if limits.min_ts_ms <= value // per_ms <= latest:
                hint = f" (it looks like {unit}: divide by {per_ms:,})"
        raise InvalidEvent("ts_ms", f"{value} lies in the future (latest accepted now: {latest}){hint}")
    return value


# An Excel serial date read as ms (whole days, 1954-2173): see `normalise.EXCEL_SERIAL_HINT`.
_EXCEL_DAYS = (20_000, 100_000)


def _optional_context(doc: Mapping[str, object]) -> Mapping[str, Any]:
    value = doc.get("context")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("context", f"expected an object, got {json_type(value)}")
    if len(value) > MAX_CONTEXT_KEYS:
        raise InvalidEvent("context", f"{len(value)} keys, over the limit of {MAX_CONTEXT_KEYS}")
    # The event is written as JSON (Kafka, dead letters): a value JSON text cannot carry would
    # fail that write, or come back unreadable, long after this validation passed.
    try:
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except TypeError:
            # A Python caller's numbers of other types (numpy's int64 and float32 straight from a
            # DataFrame) are numbers: written as such, and the event carries the written form.
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=_json_number)
            value = json.loads(text)
        text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidEvent("context", _SURROGATE_REASON) from exc
    except (TypeError, ValueError, RecursionError) as exc:
        _reject_unsafe_number(value)
        # A Python caller's value (a datetime, a set, a cycle, deep nesting): only JSON travels.
        raise InvalidEvent(
            "context",
            f"holds a value JSON cannot carry ({exc}); use strings, numbers, booleans, null, lists "
            "and objects",
        ) from exc
    # json.dumps wrote every integer it could, up to Python's limit; only a long run of digits in
    # the text (often just a long string) calls for a look at the numbers.
    if _LONG_DIGITS.search(text):
        _reject_unsafe_number(value)
    return value


def _json_number(value: object) -> object:
    """`json.dumps`' hook: another integer or real type as a Python number; TypeError else."""
    plain = plain_number(value)
    if plain is value:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return plain


_LONG_DIGITS = re.compile(f"[0-9]{{{MAX_INTEGER_DIGITS + 1},}}")


def _reject_unsafe_number(context: object) -> None:
    unsafe = unsafe_number_path(context, "context")
    if unsafe is not None:
        path, what = unsafe
        raise InvalidEvent(
            "context",
            f"{path}: {what}; send a finite number of at most {MAX_INTEGER_DIGITS} digits, or a string",
        )
