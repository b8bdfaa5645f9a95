"""The value rules every file reader applies: ids, integers, event times, event types, event ids.

- **Ids** (``event_id``, ``user_id``, ``item_id``, ``session_id``): a number becomes its integer text;
  an integer written as a float (``17850.0``, as pandas writes an integer column with gaps, in CSV
  text, a JSON number or a Parquet double alike) becomes ``17850``; a number that is not whole
  (``1.5``) is a reject naming the field. Other text is kept as it is (``"007"`` stays ``"007"``).
- **Integers** (``v``): the same, as an int.
- **Event times** (``ts_ms``): a number in the unit given (``ms`` default, ``s`` or ``us``; there is no
  guessing: a time in seconds read as ms is refused by the validator with a hint), an ISO-8601
  date-time (``2019-10-01T00:00:00Z``, ``2019-10-01T02:00:00+02:00``, ``2019-10-01``) or
  ``YYYY-MM-DD HH:MM:SS[.fff][ UTC]``; a date-time without a zone is UTC. ms and us must be whole
  (us is truncated to ms); seconds may carry a fraction (rounded to ms). Parquet timestamp columns
  are read as they are (naive = UTC).
- **Event types**: looked up after lower-casing and joining words with ``_`` (``Product Viewed`` ->
  ``product_viewed``) in a map whose defaults cover common public exports and tracking specs
  (RetailRocket's ``addtocart``/``transaction``, REES46's ``cart``, GA4's ``view_item``, Segment's
  ``Order Completed``...). A name that maps to nothing (``remove_from_cart`` by default: profilestream
  has no such type) raises `UnmappedEventType`; callers skip and count those per name.
- **Event ids** absent from a row are derived from its normalised content (sha256 of user, type,
  item, query and time), so a duplicated row gets the same id and is de-duplicated downstream.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from types import MappingProxyType
from typing import Any, Literal

from stream.core import json_numbers
from stream.core.errors import ConfigError, InvalidEvent, UnmappedEventType
from stream.core.events import EventType

TsUnit = Literal["ms", "s", "us"]
TS_UNITS: tuple[TsUnit, ...] = ("ms", "s", "us")
ID_FIELDS = ("event_id", "user_id", "item_id", "session_id")
_V1_TYPES = frozenset(t.value for t in EventType)
# "17850.0", "-3.", "12.000": an integer that a float formatter wrote.
_FLOAT_INTEGER_TEXT = re.compile(r"-?[0-9]+\.0*")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Beyond this many digits before the point a number is no time or id anyone meant (and int() of a
# huge Decimal would take memory and time).
_MAX_INTEGER_DIGITS = 30
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ZONE_SUFFIXES = (" UTC", " GMT")
_TIME_HINT = "use ms since the epoch (or --ts-unit s|us), ISO-8601 or YYYY-MM-DD HH:MM:SS[ UTC]"

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
        # Clicks: GA4 select_item, Segment "Product Clicked".
        "select_item": "click",
        "product_clicked": "click",
        "product_click": "click",
        "clicked": "click",
        # Carts: RetailRocket addtocart, REES46 cart, UA "add", Segment "Product Added".
        "addtocart": "add_to_cart",
        "cart": "add_to_cart",
        "add": "add_to_cart",
        "add_to_basket": "add_to_cart",
        "product_added": "add_to_cart",
        "added_to_cart": "add_to_cart",
        # Purchases: RetailRocket transaction, Segment "Order Completed".
        "transaction": "purchase",
        "order": "purchase",
        "order_completed": "purchase",
        "checkout_completed": "purchase",
        "buy": "purchase",
        "purchased": "purchase",
        # Searches: GA4 view_search_results, Segment "Products Searched".
        "view_search_results": "search",
        "products_searched": "search",
        "search_query": "search",
        # No profilestream type: skipped and counted (a profile records interest, not its removal).
        "remove_from_cart": None,
        "removefromcart": None,
        "remove": None,
        "remove_from_basket": None,
        "product_removed": None,
    }
)


def _default_type_map() -> dict[str, str | None]:
    return dict(DEFAULT_TYPE_MAP)


@dataclass(frozen=True, slots=True)
class RowRules:
    """How a file's values are read: the unit of numeric times and the event-type map."""

    ts_unit: TsUnit = "ms"
    type_map: Mapping[str, str | None] = field(default_factory=_default_type_map)


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


def _type_key(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


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
    """An id as text: numbers and float-written integers as integer text; None for an empty cell.

    InvalidEvent naming `name` for a number that is not whole; other non-text values are returned
    unchanged for the validator to name.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if "." in value and _FLOAT_INTEGER_TEXT.fullmatch(value):
            return value.partition(".")[0]
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        return str(_whole(Decimal(value), name, value))
    return value


def integer_value(value: Any, name: str) -> Any:
    """An integer field (``v``): ints, whole floats and numeric text as int; None for an empty cell."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = _number(value)
    if number is None:
        return value
    return _whole(number, name, value)


def time_ms(value: Any, unit: TsUnit = "ms", name: str = "ts_ms") -> Any:
    """Milliseconds since the epoch from a number in `unit`, date-time text or a datetime.

    None for an empty cell; InvalidEvent naming `name` for text that is neither a number nor a
    date-time, and for a number that is not whole (ms, us) or out of range; a bool or other type is
    returned unchanged for the validator to name.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (moment - _EPOCH) // _ONE_MS
    if isinstance(value, date):
        return (datetime(value.year, value.month, value.day, tzinfo=UTC) - _EPOCH) // _ONE_MS
    number = _number(value)
    if number is None:
        if not isinstance(value, str):
            return value
        parsed = _parse_datetime(value.strip())
        if parsed is None:
            raise InvalidEvent(name, f"{value[:40]!r} is neither a number nor a date-time; {_TIME_HINT}")
        return (parsed - _EPOCH) // _ONE_MS
    _check_range(number, name, value)
    if unit == "s":
        # Exact: the context's default 28 digits cannot hold a 30-digit number of seconds times
        # 1000 (quantize raised InvalidOperation, found by the fuzz test), nor its fraction.
        with localcontext() as context:
            context.prec = max(len(number.as_tuple().digits), number.adjusted() + 4) + 2
            return int(number.scaleb(3).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    whole = _whole(
        number, name, value, f" (a time in {unit} must be whole; fractional seconds need --ts-unit s)"
    )
    if unit == "us":
        return whole // 1000  # floor, exact for any size (Decimal division rounds at 28 digits)
    return whole


def _number(value: Any) -> Decimal | None:
    """A number as an exact Decimal; None for what is not a number (bool, other text, other types)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(value)
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER_TEXT.fullmatch(text):
            try:
                return Decimal(text)
            except InvalidOperation:
                return None
    return None


def _check_range(number: Decimal, name: str, original: Any) -> None:
    if not number.is_finite():
        raise InvalidEvent(name, f"{str(original)[:40]!r} is not a finite number")
    if number != 0 and number.adjusted() >= _MAX_INTEGER_DIGITS:
        raise InvalidEvent(name, f"{str(original)[:40]!r} is out of range")


def _whole(number: Decimal, name: str, original: Any, hint: str = "") -> int:
    _check_range(number, name, original)
    if number != number.to_integral_value():
        raise InvalidEvent(name, f"{str(original)[:40]!r} is not a whole number{hint}")
    return int(number)


def _parse_datetime(text: str) -> datetime | None:
    """ISO-8601 (datetime.fromisoformat, Python 3.11) or ``... UTC``/``... GMT``; no zone = UTC."""
    upper = text.upper()
    for suffix in _ZONE_SUFFIXES:
        if upper.endswith(suffix):
            text = text[: -len(suffix)].rstrip()
            break
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def derived_event_id(doc: Mapping[str, Any], prefix: str) -> str:
    """A stable id from a normalised document's content: the same row always gets the same id."""
    content = [doc.get(name) for name in ("user_id", "type", "item_id", "query", "ts_ms")]
    digest = hashlib.sha256(json.dumps(content, ensure_ascii=False, default=str).encode("utf-8", "replace"))
    return f"{prefix}-{digest.hexdigest()[:32]}"


def is_normal_v1(doc: Mapping[str, Any], rules: RowRules) -> bool:
    """True when `normalise_v1` would change nothing: replay then forwards the line as it is."""
    if rules.ts_unit != "ms" or "event_id" not in doc:
        return False
    for name in ID_FIELDS:
        value = doc.get(name)
        if value is not None and (
            not isinstance(value, str) or ("." in value and _FLOAT_INTEGER_TEXT.fullmatch(value))
        ):
            return False
    ts = doc.get("ts_ms")
    version = doc.get("v")
    if not (ts is None or type(ts) is int) or not (version is None or type(version) is int):
        return False
    kind = doc.get("type")
    return not isinstance(kind, str) or (kind in _V1_TYPES and rules.type_map.get(kind, kind) == kind)


def normalise_v1(
    doc: Mapping[Any, Any], rules: RowRules, *, empty_is_absent: bool, id_prefix: str = "row"
) -> dict[str, Any]:
    """A v1-named row with the value rules applied; unknown fields are kept for the validator.

    `empty_is_absent`: an empty cell is an absent field (CSV, Parquet); in JSON an empty string is
    a value (and the validator refuses it). Raises InvalidEvent (or UnmappedEventType) naming the
    field for a value no rule can read.
    """
    out: dict[str, Any] = {
        str(name): value
        for name, value in doc.items()
        if name is not None and value is not None and not (empty_is_absent and value == "")
    }
    if "type" in out:
        out["type"] = map_event_type(out["type"], rules.type_map)
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
    if isinstance(query, int | float) and not isinstance(query, bool):
        doc["query"] = str(query)  # a numeric search (a JSONL or Parquet number) is its text
    return normalise_v1(doc, rules, empty_is_absent=True, id_prefix=columns.id_prefix)
