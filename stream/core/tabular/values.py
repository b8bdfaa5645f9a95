"""The value rules every file reader applies: ids, integers, event times, event types, event ids.

Ids, integers and times follow the one set of rules every entry point shares
(`stream.core.normalise`); what is file-specific here is the time unit of numbers, the type map,
empty cells and derived event ids.

- **Ids** (``event_id``, ``user_id``, ``item_id``, ``session_id``): a number becomes its integer text;
  an integer written as a float (``17850.0``, as pandas writes an integer column with gaps, in CSV
  text, a JSON number or a Parquet double alike) becomes ``17850``; a number that is not whole
  (``1.5``) is a reject naming the field. Other text is kept as it is (``"007"`` stays ``"007"``),
  except scientific notation (``7.23456789012E+12``, ``1E+3``: Excel's form of a long numeric id,
  digits lost), a reject naming the field in every format (export the column as text).
  With `RowRules.decimal_comma` (a ``;``-separated file) ``17850,0`` is read as ``17850.0`` in ids,
  ``ts_ms`` and ``v``; other fields keep their text.
- **Integers** (``v``): the same, as an int.
- **Event times** (``ts_ms``): a number in the unit given (``ms`` default, ``s``, ``us`` or ``ns``,
  Arrow's and pandas' int64 timestamps; there is no guessing: a time in seconds, us or ns read as
  ms is refused by the validator with a hint naming the unit), an ISO-8601 date-time
  (``2019-10-01T00:00:00Z``, ``2019-10-01T02:00:00+02:00``, ``2019-10-01``, any case, a space
  before the zone) or ``YYYY-MM-DD HH:MM:SS[.fff][ UTC]``; a date-time without a zone is UTC. ms,
  us and ns must be whole (us and ns are truncated to ms); seconds may carry a fraction (rounded
  to ms). Parquet timestamp columns are read as they are (naive = UTC).
- **Event types**: looked up after lower-casing and joining words with ``_`` (``Product Viewed`` ->
  ``product_viewed``) in a map whose defaults cover common public exports and tracking specs
  (RetailRocket's ``addtocart``/``transaction``, REES46's ``cart``, GA4's ``view_item``, Segment's
  ``Order Completed``...). A name that maps to nothing (``remove_from_cart`` by default: profilestream
  has no such type) raises `UnmappedEventType`; callers skip and count those per name.
- **Missing values**: in a table (CSV, Parquet, a loaded JSON file: `normalise_v1` with
  ``empty_is_absent``) a cell holding one of `MISSING_MARKERS` (pandas' default ``na_values``:
  ``NA``, ``nan``, ``None``, ``NULL``, ``N/A``, ``<NA>``..., and ``\\N`` of MySQL and Hive; a
  float NaN) has no value: in ``user_id``, ``type``, ``ts_ms``, ``known_user_id`` or an ``item_id``
  its type needs it rejects the row naming the field (Diginetica's anonymous sessions, ``userId``
  ``NA``, would otherwise be one user "NA"); elsewhere it is absent. A search's ``query`` is
  exempt: its text is what was searched for (``null``, ``NA``, ``None`` are words), so only an
  empty cell (or a float NaN) leaves it without a query, a reject naming ``query``.
  `RowRules.na_markers` False (``--na-markers none``, pandas' ``keep_default_na=False``) keeps
  every marker text as text; only the empty cell and a float NaN are then no value.
- **Event ids** absent from a row are derived from its normalised content (sha256 of user, type,
  item, query and time), so a duplicated row gets the same id and is de-duplicated downstream.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from stream.core import json_numbers, normalise
from stream.core.errors import ConfigError, InvalidEvent, UnmappedEventType
from stream.core.events import ITEM_TYPES, V1_FIELDS, EventType, trim_invisible

TsUnit = normalise.TimeUnit
TS_UNITS: tuple[TsUnit, ...] = normalise.TIME_UNITS
ID_FIELDS = ("event_id", "user_id", "item_id", "session_id")
# The id fields whose normal form is text: the validator would rewrite any other (a number).
_TEXT_FIELDS = (*ID_FIELDS, "known_user_id")
_V1_TYPES = frozenset(t.value for t in EventType)
# Cells that mean "no value" in a table. The reference is pandas' default `na_values` (the list
# `pandas.read_csv` documents and `pandas._libs.parsers.STR_NA_VALUES` holds; '' is the empty
# cell, already absent), plus MySQL's and Hive's NULL in text exports, ``\N``.
MISSING_MARKERS = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
        "\\N",
    }
)
# Fields a row cannot be without: a marker there rejects the row (`item_id` and `query` by type).
_MARKER_REJECTS = ("user_id", "type", "ts_ms", "known_user_id")
# "17850.0", "-3.", "12.000": an integer that a float formatter wrote.
_FLOAT_INTEGER_TEXT = re.compile(r"-?[0-9]+\.0*")
# "17850,0", "1,5": a number as Excel writes it in a locale with decimal commas.
_DECIMAL_COMMA_TEXT = re.compile(r"-?[0-9]+,[0-9]+")


def decimal_point(text: str, *, whole_only: bool = False) -> str | None:
    """`text` with its decimal comma written as a point (``"17850,0"`` -> ``"17850.0"``), or None
    when `text` is not a number written with a decimal comma. With `whole_only` (an id, which is
    not a value) a number with a non-zero fraction is None too: it stays text, as ``"12.5"`` does.
    """
    if not _DECIMAL_COMMA_TEXT.fullmatch(text):
        return None
    whole, _, fraction = text.partition(",")
    if whole_only and fraction.strip("0"):
        return None
    return f"{whole}.{fraction}"


_V1 = {t.value: t.value for t in EventType}
DEFAULT_TYPE_MAP: Mapping[str, str | None] = MappingProxyType(
    {
        **_V1,
        # Views: GA4 view_item, Universal Analytics "detail", Segment "Product Viewed", page views.
        "pageview": "view",
        "page_view": "view",
        "detail": "view",
        "view_item": "view",
        "product_viewed": "view",
        "product_view": "view",
        "viewed": "view",
        "pv": "view",  # Taobao's UserBehavior.csv: pv, fav, cart, buy
        "viewed_product": "view",  # Segment's v1 spec names (Viewed Product...)
        # Clicks: GA4 select_item, Segment "Product Clicked".
        "select_item": "click",
        "product_clicked": "click",
        "product_click": "click",
        "clicked": "click",
        "clicked_product": "click",
        # Saved for later (Taobao's fav, GA4's add_to_wishlist): more than a view, less than a cart.
        "fav": "click",
        "favorite": "click",
        "favourite": "click",
        "wishlist": "click",
        "add_to_wishlist": "click",
        # Carts: RetailRocket addtocart, REES46 cart, UA "add", Segment "Product Added".
        "addtocart": "add_to_cart",
        "cart": "add_to_cart",
        "add": "add_to_cart",
        "add_to_basket": "add_to_cart",
        "product_added": "add_to_cart",
        "added_to_cart": "add_to_cart",
        "added_product": "add_to_cart",
        # Purchases: RetailRocket transaction, Segment "Order Completed".
        "transaction": "purchase",
        "order": "purchase",
        "order_completed": "purchase",
        "checkout_completed": "purchase",
        "buy": "purchase",
        "purchased": "purchase",
        "completed_order": "purchase",
        # Searches: GA4 view_search_results, Segment "Products Searched".
        "view_search_results": "search",
        "products_searched": "search",
        "search_query": "search",
        "searched_products": "search",
        "product_searched": "search",
        # No profilestream type: skipped and counted (a profile records interest, not its removal).
        "remove_from_cart": None,
        "removefromcart": None,
        "remove": None,
        "remove_from_basket": None,
        "product_removed": None,
        "removed_product": None,
    }
)


def _default_type_map() -> dict[str, str | None]:
    return dict(DEFAULT_TYPE_MAP)


@dataclass(frozen=True, slots=True)
class RowRules:
    """How a file's values are read: the unit of numeric times and the event-type map."""

    ts_unit: TsUnit = "ms"
    type_map: Mapping[str, str | None] = field(default_factory=_default_type_map)
    # A ';'-separated export writes decimal commas: "17850,0" in an id, ts_ms or v means "17850.0".
    decimal_comma: bool = False
    # Whether a table cell's text that is one of MISSING_MARKERS ("NA", "null") means no value;
    # False (--na-markers none, pandas' keep_default_na=False) keeps it as the text it is.
    na_markers: bool = True


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Which column holds which v1 field (None: the table has no such column)."""

    user_col: str
    ts_col: str
    item_col: str | None = None
    type_col: str | None = None
    default_type: str = "view"
    query_col: str | None = None
    session_col: str | None = None
    event_id_col: str | None = None
    context_col: str | None = None
    id_prefix: str = "gen"


V1_COLUMNS = ColumnMap(
    user_col="user_id",
    ts_col="ts_ms",
    item_col="item_id",
    type_col="type",
    query_col="query",
    session_col="session_id",
    event_id_col="event_id",
    context_col="context",
    id_prefix="row",
)


def parse_type_map(
    specs: Iterable[str] = (), *, file_text: str | None = None, defaults: bool = True
) -> dict[str, str | None]:
    """The type map: the defaults, then a JSON object file, then ``NAME=TYPE[,NAME=TYPE...]`` specs.

    A TYPE of ``-`` or nothing skips the name. ConfigError names a malformed entry or unknown TYPE.
    """
    chosen: dict[str, str | None] = _default_type_map() if defaults else {}
    pairs: list[tuple[str, object]] = []
    if file_text is not None:
        try:
            document = json.loads(file_text)
        except ValueError as exc:
            raise ConfigError(
                f"--type-map-file: not JSON ({exc}); give an object such as "
                '{"addtocart": "add_to_cart", "remove_from_cart": null}'
            ) from exc
        if not isinstance(document, dict):
            raise ConfigError('--type-map-file: expected a JSON object such as {"addtocart": "add_to_cart"}')
        pairs.extend(document.items())
    for spec in specs:
        for entry in spec.split(","):
            if not entry.strip():
                continue
            key, sep, value = entry.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--type-map {entry!r}: expected NAME=TYPE, e.g. addtocart=add_to_cart")
            pairs.append((key, value.strip()))
    for name, target in pairs:
        if target in (None, "", "-"):
            chosen[_type_key(str(name))] = None
            continue
        if not isinstance(target, str) or target not in _V1_TYPES:
            allowed = ", ".join(sorted(_V1_TYPES))
            raise ConfigError(
                f"type map {name!r} -> {target!r}: not a profilestream type; use one of {allowed} "
                "or '-' to skip"
            )
        chosen[_type_key(str(name))] = target
    return chosen


_type_key = normalise.type_key


def map_event_type(value: Any, type_map: Mapping[str, str | None]) -> Any:
    """The v1 type of a file's type name; UnmappedEventType if it has none; non-text unchanged."""
    if not isinstance(value, str):
        return value
    if value in _V1_TYPES and type_map.get(value, value) == value:
        return value
    key = _type_key(value)
    if key in type_map:
        target = type_map[key]
        if target is not None:
            return target
    raise UnmappedEventType(value)


def id_text(value: Any, name: str) -> Any:
    """An id as text by the one id rule (`stream.core.normalise.id_text`); None for an empty cell.

    InvalidEvent naming `name` for a number that is not whole and for a value that is no text
    nor number.
    """
    if value == "":
        return None
    return normalise.id_text(value, name)


def integer_value(value: Any, name: str) -> Any:
    """An integer field (``v``): ints, whole floats and numeric text as int; None for an empty cell."""
    return normalise.integer_value(value, name)


def time_ms(value: Any, unit: TsUnit = "ms", name: str = "ts_ms") -> Any:
    """Milliseconds since the epoch by the one time rule (`stream.core.normalise.time_ms`): a
    number in `unit`, numeric text, date-time text (no zone = UTC) or a datetime; None for an
    empty cell. Raises InvalidEvent naming `name` for a value the rule refuses.
    """
    return normalise.time_ms(value, name, unit)


def derived_event_id(doc: Mapping[str, Any], prefix: str) -> str:
    """A stable id from a normalised document's content: the same row always gets the same id."""
    content = [doc.get(name) for name in ("user_id", "type", "item_id", "query", "ts_ms")]
    digest = hashlib.sha256(json.dumps(content, ensure_ascii=False, default=str).encode("utf-8", "replace"))
    return f"{prefix}-{digest.hexdigest()[:32]}"


def is_normal_v1(doc: Mapping[str, Any], rules: RowRules) -> bool:
    """True when `normalise_v1` would change nothing: replay then forwards the line as it is."""
    if rules.ts_unit != "ms" or "event_id" not in doc or not V1_FIELDS.issuperset(doc):
        return False  # another unit, a derived id to add, or a field name in another spelling
    for name in _TEXT_FIELDS:
        value = doc.get(name)
        if value is not None and (
            not isinstance(value, str)
            or ("." in value and _FLOAT_INTEGER_TEXT.fullmatch(value))
            or value.startswith('="')  # Excel's text formula: the id is what it quotes
            # The id rule puts non-ASCII ids in NFC: such a line goes out normalised.
            or (not value.isascii() and not unicodedata.is_normalized("NFC", value))
        ):
            return False
    for name in ("ts_ms", "received_ms", "v"):
        value = doc.get(name)
        if not (value is None or type(value) is int):
            return False
    query = doc.get("query")
    if isinstance(query, str) and trim_invisible(query) != query:
        return False  # the validator trims it: the line goes out normalised
    kind = doc.get("type")
    return not isinstance(kind, str) or (kind in _V1_TYPES and rules.type_map.get(kind, kind) == kind)


def _v1_name(name: str, doc: Mapping[Any, Any]) -> str:
    """A column's v1 field name when it is one spelt in another case or with spaces or "-"
    (``Event_ID``, ``User ID``, ``ts-ms``: spreadsheet headers), unless the row also has the field
    under its own name; any other name as it is (the validator names it if unknown)."""
    if name in V1_FIELDS:
        return name
    key = _cached_type_key(name) if len(name) <= _CACHED_NAME_CHARS else _type_key(name)
    return key if key in V1_FIELDS and key not in doc else name


# Every row repeats its file's column names: their keys are cached, short ones only (a JSON line
# may bring any name, and the cache must stay small whatever the input).
_CACHED_NAME_CHARS = 64
_cached_type_key = functools.lru_cache(maxsize=1024)(normalise.type_key)


def normalise_v1(
    doc: Mapping[Any, Any], rules: RowRules, *, empty_is_absent: bool, id_prefix: str = "row"
) -> dict[str, Any]:
    """A v1-named row with the value rules applied; unknown fields are kept for the validator.

    `empty_is_absent`: an empty cell is an absent field (CSV, Parquet), and so is a missing-value
    marker (`MISSING_MARKERS`), except where the event needs the field: there the row is rejected
    naming it; in JSON an empty string is a value (and the validator refuses it). Raises
    InvalidEvent (or UnmappedEventType) naming the field for a value no rule can read.
    """
    out: dict[str, Any] = {
        _v1_name(str(name), doc): value
        for name, value in doc.items()
        if name is not None and value is not None and not (empty_is_absent and value == "")
    }
    marked: dict[str, Any] = {}
    if empty_is_absent:
        marked = {name: value for name, value in out.items() if _is_marker(value, text=rules.na_markers)}
        for name in marked:
            del out[name]
        for name in _MARKER_REJECTS:
            if name in marked:
                raise _marker_reject(name, marked[name])
    if rules.decimal_comma:
        for name in (*ID_FIELDS, "ts_ms", "v"):
            value = out.get(name)
            if isinstance(value, str):
                pointed = decimal_point(value, whole_only=name not in ("ts_ms", "v"))
                if pointed is not None:
                    out[name] = pointed
    if "type" in out:
        out["type"] = map_event_type(out["type"], rules.type_map)
    if "item_id" in marked and out.get("type") in ITEM_TYPES:
        raise _marker_reject("item_id", marked["item_id"])
    if "query" in marked and out.get("type") == EventType.SEARCH:
        if not isinstance(marked["query"], str):
            raise _marker_reject("query", marked["query"])
        # What a search asked for is read as written: "null" and "NA" are words a shopper types.
        out["query"] = marked["query"]
    for name in ID_FIELDS:
        if name in out and out[name] != "":
            out[name] = id_text(out[name], name)
    if "ts_ms" in out:
        out["ts_ms"] = time_ms(out["ts_ms"], rules.ts_unit)
    if "v" in out:
        out["v"] = integer_value(out["v"], "v")
    context = out.get("context")
    if isinstance(context, str):
        # Context text that is not JSON is left as text: the validator names the field.
        with contextlib.suppress(ValueError, RecursionError):
            out["context"] = json_numbers.loads(context)
    out = {name: value for name, value in out.items() if value is not None}
    if "event_id" not in out:
        out["event_id"] = derived_event_id(out, id_prefix)
    return out


def _is_marker(value: Any, *, text: bool = True) -> bool:
    # A float NaN is pandas' missing value in a Parquet column of numbers with gaps; marker text
    # counts only with `text` (RowRules.na_markers).
    if isinstance(value, float):
        return math.isnan(value)
    return text and isinstance(value, str) and value.strip() in MISSING_MARKERS


def _marker_reject(name: str, value: Any) -> InvalidEvent:
    fix = (
        "the row has no user: fill the column, or map another one (a session id) as the user"
        if name == "user_id"
        else f"the row has no {name}: fill the cell or drop the row"
    )
    return InvalidEvent(name, f"{value!r} is a missing-value marker (pandas' na_values); {fix}")


def to_v1_doc(row: Mapping[str, Any], columns: ColumnMap, rules: RowRules) -> dict[str, Any]:
    """A table row mapped onto v1 fields by `columns`, then `normalise_v1` (empty cells absent)."""
    doc: dict[str, Any] = {
        "user_id": row.get(columns.user_col),
        "type": row.get(columns.type_col) if columns.type_col else columns.default_type,
        "ts_ms": row.get(columns.ts_col),
    }
    for name, column in (
        ("item_id", columns.item_col),
        ("query", columns.query_col),
        ("session_id", columns.session_col),
        ("event_id", columns.event_id_col),
        ("context", columns.context_col),
    ):
        if column is not None:
            doc[name] = row.get(column)
    query = doc.get("query")
    if isinstance(query, int | float) and not isinstance(query, bool) and not _is_marker(query):
        doc["query"] = str(query)  # a numeric search (a JSONL or Parquet number) is its text
    return normalise_v1(doc, rules, empty_is_absent=True, id_prefix=columns.id_prefix)
