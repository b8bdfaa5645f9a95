from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given
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
from stream.core.normalise import SECONDS_FRACTION_HINT, time_fix

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
        ("event_id", 42.5, "'42.5' is not a whole number; an id is text: send the id as a string"),
        ("user_id", ["u"], "expected a string, got an array"),
        ("type", True, "expected a string, got a boolean"),
        ("item_id", {"id": 1}, "expected a string, got an object"),
        ("ts_ms", "soon", f"'soon' is neither a number nor a date-time; {time_fix()}"),
        ("ts_ms", True, f"expected a time, got a boolean; {time_fix()}"),
        ("ts_ms", 1.5e9 + 0.5, f"'1500000000.5' is not a whole number of ms; {SECONDS_FRACTION_HINT}"),
        ("context", "home", "expected an object, got a string"),
        ("session_id", [7], "expected a string, got an array"),
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


def test_oversize_event_is_rejected_naming_its_largest_field() -> None:
    raw = json.dumps(valid(context={"blob": "x" * 4000})).encode()
    error = rejected(raw)
    assert error.field == "context"
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
def test_encoding_then_decoding_gives_the_same_event(drawn: Event) -> None:
    # Normalisation is a projection: what the validator produced reads back as itself. (A drawn
    # event may not be one the validator produces: an id "1.0" is read as "1", a query's
    # invisible edges are trimmed, an id with one is refused.)
    try:
        event = decode_event(drawn.to_json(), limits=EventLimits(), now_ms=NOW_MS)
    except InvalidEvent:
        assume(False)
        raise
    assert decode_event(event.to_json(), limits=EventLimits(), now_ms=NOW_MS) == event
    assert event_from_dict(event.to_dict(), limits=EventLimits(), now_ms=NOW_MS) == event


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (json.dumps(valid(event_id="e\ud800")).encode(), "event_id"),
        (json.dumps(valid(context={"page": ["\ud83d"]})).encode(), "context"),
    ],
)
def test_lone_surrogates_are_rejected_since_no_later_write_could_encode_them(raw: bytes, field: str) -> None:
    error = rejected(raw)
    assert error.field == field
    assert "surrogate" in error.reason


@pytest.mark.parametrize("query", ["pens \ud83d", "pens \udfff", "\ud83dpens", "pe\ud800ns"])
def test_a_query_loses_only_a_lone_surrogate_half_of_an_emoji_a_javascript_cut_left(query: str) -> None:
    raw = json.dumps(valid(type="search", item_id=None, query=query)).encode()
    assert decode_event(raw, limits=LIMITS, now_ms=NOW_MS).query in ("pens", "pens ")


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


def test_a_query_within_the_limit_is_kept_as_sent_but_for_its_invisible_edges() -> None:
    query = " " + "q" * (MAX_QUERY_CHARS - 1)
    event = event_from_dict(
        valid(type="search", item_id=_DROP, query=query), limits=EventLimits(), now_ms=NOW_MS
    )
    assert event.query == query.strip()  # a query is text: its edges are trimmed (normalise_query)
    assert not query_truncated(query)
    assert not query_truncated("  " + "q" * MAX_QUERY_CHARS + "  ")


# --- numbers too large to parse or to hold -----------------------------------------------------------

# 5001 digits: past Python's limit on int-from-text (4300), where json.loads raised a ValueError.
BIG = "1" + "0" * 5000
NUMBER_LIMITS = EventLimits(max_bytes=16_384)
NUMERIC_FIELDS = [
    ("ts_ms", "send ms since the epoch as an integer"),
    ("received_ms", "send ms since the epoch as an integer"),
    ("v", "this decoder reads v1: send 1"),
]


def with_literal(name: str, literal: str, doc: dict[str, Any] | None = None) -> bytes:
    """A valid event whose field `name` holds the JSON number `literal`, verbatim."""
    event = valid() if doc is None else doc
    event[name] = "@NUMBER@"
    return json.dumps(event).replace('"@NUMBER@"', literal).encode()


def rejected_with(raw: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw, limits=NUMBER_LIMITS, now_ms=NOW_MS)
    return info.value


@pytest.mark.parametrize(("name", "fix"), NUMERIC_FIELDS)
@pytest.mark.parametrize(
    ("literal", "size"),
    [
        (BIG, "number too large (5001 digits)"),
        ("-" + BIG, "number too small (5001 digits)"),
        ("1e400", "number too large (1e400 overflows a 64-bit float)"),
        ("1" + "0" * 300 + ".0", "number too large (301 digits)"),
    ],
    ids=["5001-digits", "minus-5001-digits", "1e400", "301-digit-float"],
)
def test_a_number_too_large_is_rejected_naming_its_field_and_the_fix(
    name: str, fix: str, literal: str, size: str
) -> None:
    error = rejected_with(with_literal(name, literal))
    assert error.field == name
    if name == "v" and literal.endswith(".0"):
        # A finite float: no integer is read from it, and it is no version.
        assert error.reason.startswith("unsupported schema version 1e+300")
        return
    assert error.reason.startswith(f"{size}; ")
    assert fix in error.reason
    assert "int_max_str_digits" not in error.reason


@pytest.mark.parametrize(("name", "fix"), NUMERIC_FIELDS)
@pytest.mark.parametrize(
    "value", [10**5000, -(10**5000), 2**64, 1e300], ids=["10**5000", "-10**5000", "2**64", "1e300"]
)
def test_a_python_number_too_large_is_an_invalid_event_not_a_value_error(
    name: str, fix: str, value: object
) -> None:
    # The SDK and the file loaders hand Python values to event_from_dict.
    with pytest.raises(InvalidEvent) as info:
        event_from_dict(valid(**{name: value}), limits=LIMITS, now_ms=NOW_MS)
    assert info.value.field == name
    if name == "v" and isinstance(value, float):
        assert info.value.reason.startswith("unsupported schema version 1e+300")
        return
    assert info.value.reason.startswith("number too ")
    assert fix in info.value.reason


def test_a_received_time_orjson_cannot_write_is_rejected() -> None:
    # It passed as "non-negative", then failed the worker's activity and window writes (orjson).
    assert rejected_doc(valid(received_ms=2**64)).field == "received_ms"
    assert decode(valid(received_ms=2**63 - 1)).received_ms == 2**63 - 1


@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id", "session_id", "type"])
def test_a_huge_number_in_a_text_field_is_named_as_a_number(name: str) -> None:
    error = rejected_with(with_literal(name, BIG))
    expected = (
        "expected a string, got a number"
        if name == "type"
        else "number too large (5001 digits); send the id as a string"
    )
    assert (error.field, error.reason) == (name, expected)


@pytest.mark.parametrize(
    ("literal", "path", "size"),
    [
        (BIG, "context.items[1].price", "number too large (5001 digits)"),
        ("-1e999", "context.items[1].price", "number too small (-1e999 overflows a 64-bit float)"),
    ],
    ids=["5001-digits", "-1e999"],
)
def test_a_huge_number_inside_the_context_is_named_by_its_path(literal: str, path: str, size: str) -> None:
    raw = json.dumps(valid(context={"items": [{"sku": "a"}, {"price": "@NUMBER@"}]}))
    error = rejected_with(raw.replace('"@NUMBER@"', literal).encode())
    assert error.field == "context"
    assert error.reason.startswith(f"{path}: {size}; send a finite number of at most 640 digits")


@pytest.mark.parametrize(
    "context",
    [{"price": 10**5000}, {"price": float("nan")}, {"q": [float("inf")]}, {"at": object()}, {"s": {1, 2}}],
    ids=["10**5000", "nan", "inf", "object", "set"],
)
def test_a_python_context_value_json_cannot_carry_is_an_invalid_event(context: dict[str, Any]) -> None:
    # Before: a ValueError or TypeError, or NaN written into the record for the worker to refuse.
    with pytest.raises(InvalidEvent) as info:
        event_from_dict(valid(context=context), limits=LIMITS, now_ms=NOW_MS)
    assert info.value.field == "context"


def test_numbers_within_bounds_are_kept_as_sent() -> None:
    digits = "9" * 640
    raw = json.dumps(valid(context={"big": "@NUMBER@", "price": 1.5})).replace('"@NUMBER@"', digits)
    event = decode_event(raw.encode(), limits=NUMBER_LIMITS, now_ms=NOW_MS)
    assert event.context == {"big": int(digits), "price": 1.5}


_FIELDS = ["v", "event_id", "user_id", "type", "item_id", "query", "ts_ms", "session_id", "context"]
_FIELDS += ["received_ms", "known_user_id"]


@given(
    name=st.sampled_from(_FIELDS),
    sign=st.sampled_from(["", "-"]),
    # Short numbers, and long ones around and past Python's int-from-text limit (4300 digits).
    whole=st.one_of(
        st.text(alphabet="0123456789", min_size=1, max_size=30),
        st.integers(600, 6000).map(lambda n: "9" * n),
    ),
    fraction=st.one_of(st.just(""), st.text(alphabet="0123456789", min_size=1, max_size=5).map(".{}".format)),
    exponent=st.one_of(st.just(""), st.integers(-1000, 1000).map("e{}".format)),
)
def test_any_number_in_any_field_decodes_or_is_an_invalid_event(
    name: str, sign: str, whole: str, fraction: str, exponent: str
) -> None:
    literal = sign + (whole.lstrip("0") or "0") + fraction + exponent
    raw = with_literal(name, literal, valid(type="search", item_id=_DROP, query="pens"))
    try:
        decode_event(raw, limits=NUMBER_LIMITS, now_ms=NOW_MS).to_json()
    except InvalidEvent as exc:
        assert exc.field in (name, "v", "item_id", "query")


# --- text that shows nothing: Unicode Default_Ignorable_Code_Point and blank fillers ----------------

# Default_Ignorable_Code_Point, from Unicode's DerivedCoreProperties.txt (Unicode 16.0), which the
# `regex` module's \p{Default_Ignorable_Code_Point} implements.
DEFAULT_IGNORABLE_RANGES = [
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
]
# Those the category check (Cc, Cf, Zs, Zl, Zp) let through, and U+2800 BRAILLE PATTERN BLANK.
SHOWS_NOTHING = [
    "\u3164",  # HANGUL FILLER
    "\u115f",  # HANGUL CHOSEONG FILLER
    "\u1160",  # HANGUL JUNGSEONG FILLER
    "\uffa0",  # HALFWIDTH HANGUL FILLER
    "\u2800",  # BRAILLE PATTERN BLANK
    "\u034f",  # COMBINING GRAPHEME JOINER
    "\u17b4",  # KHMER VOWEL INHERENT AQ
    "\u17b5",  # KHMER VOWEL INHERENT AA
    "\u180b",  # MONGOLIAN FREE VARIATION SELECTOR ONE
    "\u180f",  # MONGOLIAN FREE VARIATION SELECTOR FOUR
    "\ufe00",  # VARIATION SELECTOR-1
    "\ufe0f",  # VARIATION SELECTOR-16
    "\u2065",  # unassigned, reserved default-ignorable
    "\ufff0",  # unassigned, reserved default-ignorable
    "\U000e0000",  # unassigned, in the tag block
    "\U000e0100",  # VARIATION SELECTOR-17
    "\U000e0fff",  # unassigned, reserved default-ignorable
]


def _code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


@pytest.mark.parametrize("char", SHOWS_NOTHING, ids=_code_point)
def test_default_ignorable_and_blank_filler_characters_are_blank(char: str) -> None:
    assert is_blank(char)
    assert is_blank(f" {char}\u200b{char}{char}\u3000")
    assert not is_blank(char + "a")


@pytest.mark.parametrize("char", SHOWS_NOTHING, ids=_code_point)
@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id", "session_id", "query"])
def test_text_of_only_default_ignorable_characters_is_empty_in_every_text_field(name: str, char: str) -> None:
    doc = valid(type="search", item_id=_DROP, query="pens") if name == "query" else valid()
    doc[name] = char * 3
    error = rejected_doc(doc)
    assert (error.field, error.reason) == (
        name,
        "must not be empty (it holds only whitespace or invisible characters)",
    )


def test_every_default_ignorable_code_point_is_blank() -> None:
    shown = [
        _code_point(chr(point))
        for first, last in DEFAULT_IGNORABLE_RANGES
        for point in range(first, last + 1)
        if not is_blank(chr(point))
    ]
    assert shown == []


@pytest.mark.parametrize(
    "text", ["\u3163", "\u2801", "\uffa1", "\u1161", "\U0001f525", "\u0301", "\u3164x\u3164"], ids=repr
)
def test_visible_neighbours_of_the_fillers_are_not_blank(text: str) -> None:
    assert not is_blank(text)


@given(
    st.text(
        alphabet=st.sampled_from(
            [
                chr(point)
                for first, last in DEFAULT_IGNORABLE_RANGES
                for point in range(first, min(last, first + 40) + 1)
            ]
            + ["\u2800", " ", "\u3000", "\t", "\x00"]
        ),
        min_size=1,
        max_size=40,
    )
)
def test_any_mix_of_default_ignorable_and_blank_characters_is_blank(text: str) -> None:
    assert is_blank(text)
    assert not is_blank(text + "a")


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_is_blank_ascii_fast_path_agrees_with_the_property_tables(text: str) -> None:
    from stream.core.events import _BLANK

    assert is_blank(text) == (_BLANK.fullmatch(text) is not None)
