from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.errors import InvalidEvent
from stream.core.events import (
    MAX_QUERY_CHARS,
    Event,
    EventLimits,
    EventType,
    decode_event,
    event_from_dict,
    is_blank,
    query_truncated,
    truncate_query,
)

NOW_MS = 1_764_000_000_000
LIMITS = EventLimits(max_bytes=2048)


def valid(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "e-1",
        "user_id": "u-1",
        "type": "view",
        "item_id": "sku-1",
        "ts_ms": NOW_MS - 1000,
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not _DROP}


_DROP = object()


def decode(doc: object) -> Event:
    return decode_event(json.dumps(doc).encode(), limits=LIMITS, now_ms=NOW_MS)


def rejected(raw: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw, limits=LIMITS, now_ms=NOW_MS)
    return info.value


def rejected_doc(doc: object) -> InvalidEvent:
    return rejected(json.dumps(doc).encode())


def test_valid_view_event_decodes_to_typed_record() -> None:
    event = decode(valid(session_id="s-9", context={"page": "home"}))
    assert event == Event(
        event_id="e-1",
        user_id="u-1",
        type=EventType.VIEW,
        ts_ms=NOW_MS - 1000,
        item_id="sku-1",
        session_id="s-9",
        context={"page": "home"},
    )


@pytest.mark.parametrize("event_type", ["view", "click", "add_to_cart", "purchase"])
def test_item_events_require_item_id(event_type: str) -> None:
    assert decode(valid(type=event_type)).type.value == event_type
    error = rejected_doc(valid(type=event_type, item_id=_DROP))
    assert error.field == "item_id"
    assert "required" in error.reason


def test_search_requires_query_and_item_is_optional() -> None:
    event = decode(valid(type="search", item_id=_DROP, query="red stapler"))
    assert (event.type, event.query, event.item_id) == (EventType.SEARCH, "red stapler", None)
    assert rejected_doc(valid(type="search", item_id=_DROP)).field == "query"


def test_forget_carries_neither_item_nor_query() -> None:
    event = decode(valid(type="forget", item_id=_DROP))
    assert event.type is EventType.FORGET
    assert rejected_doc(valid(type="forget")).field == "item_id"
    assert rejected_doc(valid(type="forget", item_id=_DROP, query="x")).field == "query"


def test_bad_json_names_position() -> None:
    error = rejected(b'{"event_id": "e-1",')
    assert error.field == "$"
    assert "not valid JSON" in error.reason


def test_non_utf8_bytes_are_rejected() -> None:
    assert "UTF-8" in rejected(b'{"event_id": "\xff\xfe"}').reason


@pytest.mark.parametrize("raw", [b"NaN", b'{"ts_ms": Infinity}'])
def test_non_standard_json_constants_are_rejected(raw: bytes) -> None:
    assert rejected(raw).field == "$"


@pytest.mark.parametrize("doc", [[1, 2], "text", 3, None])
def test_document_must_be_an_object(doc: object) -> None:
    error = rejected_doc(doc)
    assert error.field == "$"
    assert "expected a JSON object" in error.reason


@pytest.mark.parametrize("name", ["event_id", "user_id", "type", "ts_ms"])
def test_each_missing_required_field_is_named(name: str) -> None:
    error = rejected_doc(valid(**{name: _DROP}))
    assert error.field == name
    assert error.reason == "required field is missing"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("event_id", 42, "expected a string, got a number"),
        ("user_id", ["u"], "expected a string, got an array"),
        ("type", True, "expected a string, got a boolean"),
        ("item_id", {"id": 1}, "expected a string, got an object"),
        ("ts_ms", "1764000000000", "expected an integer (ms since epoch), got a string"),
        ("ts_ms", True, "expected an integer (ms since epoch), got a boolean"),
        ("ts_ms", 1.5e12 + 0.5, "expected an integer (ms since epoch), got a number"),
        ("context", "home", "expected an object, got a string"),
        ("session_id", 7, "expected a string, got a number"),
    ],
)
def test_wrongly_typed_fields_are_named(name: str, value: object, expected: str) -> None:
    error = rejected_doc(valid(**{name: value}))
    assert (error.field, error.reason) == (name, expected)


def test_unknown_type_lists_allowed_types() -> None:
    error = rejected_doc(valid(type="wishlist"))
    assert error.field == "type"
    assert "add_to_cart" in error.reason


def test_unknown_field_is_named() -> None:
    assert rejected_doc(valid(itemid="sku-1")).field == "itemid"


def test_unsupported_schema_version() -> None:
    assert rejected_doc(valid(v=2)).field == "v"


def test_oversize_event_is_rejected_before_parsing() -> None:
    raw = json.dumps(valid(context={"blob": "x" * 4000})).encode()
    error = rejected(raw)
    assert error.field == "$"
    assert "over the limit of 2048 bytes" in error.reason


def test_oversize_ids_are_rejected() -> None:
    assert rejected_doc(valid(user_id="u" * 129)).field == "user_id"


@pytest.mark.parametrize("value", ["", "   ", " padded", "tab\there"])
def test_blank_or_padded_ids_are_rejected(value: str) -> None:
    assert rejected_doc(valid(user_id=value)).field == "user_id"


def test_timestamp_in_seconds_gets_a_hint() -> None:
    error = rejected_doc(valid(ts_ms=NOW_MS // 1000))
    assert error.field == "ts_ms"
    assert "multiply by 1000" in error.reason


@pytest.mark.parametrize("ts_ms", [-1, 0, 10**20])
def test_absurd_timestamps_are_rejected(ts_ms: int) -> None:
    assert rejected_doc(valid(ts_ms=ts_ms)).field == "ts_ms"


def test_future_timestamp_beyond_skew_is_rejected_but_small_skew_is_fine() -> None:
    assert decode(valid(ts_ms=NOW_MS + 60_000)).ts_ms == NOW_MS + 60_000
    error = rejected_doc(valid(ts_ms=NOW_MS + LIMITS.max_future_skew_ms + 1))
    assert "future" in error.reason


def test_integral_float_timestamp_is_accepted() -> None:
    assert decode(valid(ts_ms=float(NOW_MS - 5))).ts_ms == NOW_MS - 5


def test_too_many_context_keys() -> None:
    error = rejected_doc(valid(context={f"k{i}": i for i in range(33)}))
    assert error.field == "context"


def test_deep_nesting_is_an_invalid_event_not_a_crash() -> None:
    raw = b'{"context": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw, limits=EventLimits(max_bytes=20_000), now_ms=NOW_MS)
    assert info.value.field == "$"


ids = st.text(
    alphabet=st.characters(max_codepoint=0x2FFF, categories=["L", "N", "P", "S"]),
    min_size=1,
    max_size=40,
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    event_type = draw(st.sampled_from(list(EventType)))
    needs_item = event_type not in (EventType.SEARCH, EventType.FORGET, EventType.IDENTIFY)
    return Event(
        event_id=draw(ids),
        user_id=draw(ids),
        type=event_type,
        ts_ms=draw(st.integers(LIMITS.min_ts_ms, NOW_MS)),
        item_id=draw(ids) if needs_item else None,
        query=draw(ids) if event_type is EventType.SEARCH else None,
        session_id=draw(st.none() | ids),
        context=draw(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4)),
        known_user_id=draw(ids) if event_type is EventType.IDENTIFY else None,
    )


@given(events())
def test_encoding_then_decoding_gives_the_same_event(event: Event) -> None:
    assert decode_event(event.to_json(), limits=EventLimits(), now_ms=NOW_MS) == event
    assert event_from_dict(event.to_dict(), limits=EventLimits(), now_ms=NOW_MS) == event


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (json.dumps(valid(event_id="e\ud800")).encode(), "event_id"),
        (json.dumps(valid(type="search", item_id=None, query="pens \udfff")).encode(), "query"),
        (json.dumps(valid(context={"page": ["\ud83d"]})).encode(), "context"),
    ],
)
def test_lone_surrogates_are_rejected_since_no_later_write_could_encode_them(raw: bytes, field: str) -> None:
    error = rejected(raw)
    assert error.field == field
    assert "surrogate" in error.reason


def test_escaped_surrogate_pairs_are_ordinary_characters() -> None:
    event = decode_event(json.dumps(valid(event_id="e\U0001f600")).encode(), limits=LIMITS, now_ms=NOW_MS)
    assert event.event_id == "e\U0001f600"
    assert decode_event(event.to_json(), limits=LIMITS, now_ms=NOW_MS) == event


# --- invisible-only text and the over-long query policy ---------------------------------------------

INVISIBLE_ONLY = [
    "\u200b",
    "\u200b\u200c\u200d",
    "\u2060",
    "\ufeff",
    "\u3000",
    "\u00a0",
    "\u200b \ufeff\t\u3000",
]


@pytest.mark.parametrize("text", INVISIBLE_ONLY)
@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id", "session_id", "query"])
def test_invisible_only_text_is_empty_in_every_text_field(name: str, text: str) -> None:
    doc = valid(type="search", item_id=_DROP, query="pens") if name == "query" else valid()
    doc[name] = text
    error = rejected_doc(doc)
    assert error.field == name
    assert "empty" in error.reason


@given(
    st.text(
        alphabet=st.characters(categories=("Cc", "Cf", "Zs", "Zl", "Zp")),
        min_size=1,
        max_size=40,
    )
)
def test_any_mix_of_invisible_characters_is_blank(text: str) -> None:
    assert is_blank(text)
    assert not is_blank(text + "a")
    assert not is_blank("\U0001f525")  # an emoji is visible


@pytest.mark.parametrize("extra", [1, 600])
def test_an_over_long_query_is_trimmed_and_cut_to_max_query_chars(extra: int) -> None:
    pasted = "  " + "q" * (MAX_QUERY_CHARS + extra) + " \n"
    event = event_from_dict(
        valid(type="search", item_id=_DROP, query=pasted), limits=EventLimits(), now_ms=NOW_MS
    )
    assert event.query == "q" * MAX_QUERY_CHARS
    assert query_truncated(pasted)
    assert truncate_query(pasted) == event.query


def test_a_query_within_the_limit_is_kept_as_sent() -> None:
    query = " " + "q" * (MAX_QUERY_CHARS - 1)
    event = event_from_dict(
        valid(type="search", item_id=_DROP, query=query), limits=EventLimits(), now_ms=NOW_MS
    )
    assert event.query == query
    assert not query_truncated(query)
    assert not query_truncated("  " + "q" * MAX_QUERY_CHARS + "  ")
