"""Item catalogues: reading JSONL/CSV/Parquet (and the amazon-office benchmark format) and the one
template that turns an item into the text the encoder sees.

Columns: item_id and title are required; brand, category, description, price, in_stock and
popularity are optional (in_stock defaults to true; popularity, a non-negative count of recent
interactions such as purchases in the last 30 days, to 0; it feeds `stream.core.prior`). Reading is
I/O; `item_from_row` and `item_text` are pure.

JSONL, CSV and Parquet are read by the shared reader `stream.core.tabular`, as event files are: a
UTF-8 BOM is read away, ``encoding`` (``profilestream index --encoding``) decodes other text and
undecodable bytes are a CatalogError naming the line; a malformed line (not a JSON object, a
truncated CSV row) is skipped, counted and logged with its line number; an item_id written as a
float (``17850.0``, pandas with gaps) is read as ``17850`` in every format, and an item_id must be
one an event may carry (`stream.core.events.check_id`: at most 128 characters, no invisible edge
or bidirectional control), or no event could ever name the item. A CSV file's column
separator is ``delimiter`` (``profilestream index --delimiter``) or found among ``,`` ``;`` tab ``|``
(``.tsv``/``.tab`` files are tab-separated), and a header that reads as one column but splits at
another separator is a CatalogError naming ``--delimiter``, exactly as for ``load``/``replay``; in a
``;``-separated file a decimal comma (Excel in German or French locales) is read as a point in
``price``, ``popularity`` and a whole ``item_id`` (``12,50`` is 12.5, ``17850,0`` is ``17850``).
Text columns given as a list or object (a category path, description bullets; also a JSON or
Python literal in a CSV cell) are joined as text, and HTML in them is reduced to its text
(`html_text`); an item_id is read by the events' rule (`stream.core.events.valid_id`, Unicode NFC
included). A ``.json`` file is an array of item objects, or amazon's object keyed by item id.
A price may carry a currency symbol or code and thousands separators (``$36.99``, ``36.99 USD``,
``€1.299,00``, ``$1,299.00``: read by the `price-parser` package), by one separator rule for plain
and written prices alike (`_decimal_separator`): the file's decimal separator (``,`` in a
``;``-separated file, else ``.``) is always the decimal one; the other one is a thousands
separator when every group after it has exactly three digits (``1.299`` in a ``;`` file and
``1,299`` elsewhere are 1299), else a decimal separator (``12.5``, ``12,50``); when both appear, the
last is the decimal one. A currency amount with three digits after its one separator (``€1.299``,
``1.299 kr``) groups thousands in any file: no currency but BHD, IQD, JOD, KWD, LYD, OMR and TND
has three decimals. Indian grouping (``₹1,29,999``) and Swiss apostrophes (``CHF 1'299.00``,
typeset as U+2019) group thousands too. ``12,-`` is 12; ``Free`` is 0.0 (what the shop charges).
The price is optional, so a price that is no single amount (``$5.99 - $12.99``: a range is no
price; ``$12.99 $9.99``; ``cheap``; a negative or infinite number) leaves the item without a price
and is a warning, and a missing-value marker (`MISSING_MARKERS`: ``N/A``, ``null``, ``None``,
``NaN``..., any case, or a lone dash) is no price, silently. in_stock (a flag, a stock count or a
feed's availability word: `_flag`) and popularity are optional in the same way: an unreadable one
is read as in stock or 0, with a warning. A row with an invalid required field (no title, an id
no event may carry) is skipped alone.
Each skip and each warning is logged and recorded with its line, field and reason (`SkippedRow`,
``kept`` for a warning; ``profilestream index --rejects PATH`` writes them as JSON lines), and the
read fails only when rows were there and none of them is valid.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from price_parser import Price

from stream.core.errors import CatalogError, InvalidCatalogRow, InvalidEvent, SourceError
from stream.core.events import is_blank, json_type, valid_id
from stream.core.json_numbers import number_text
from stream.core.tabular import (
    DECIMAL_COMMA_DELIMITER,
    MISSING_MARKERS,
    ReadTally,
    TableFormat,
    check_encoding,
    csv_delimiter,
    decimal_point,
    read_rows,
)

log = logging.getLogger(__name__)

CatalogFormat = Literal["auto", "jsonl", "csv", "parquet", "json", "amazon"]
# Long enough for the gist of a product, short enough that title words keep their weight in the
# mean pooling and the text stays well inside the encoder's token limit.
DESCRIPTION_CHARS = 300
SEPARATOR = " | "
# in_stock as flags and as shops' feeds write availability (Google Merchant Center's
# "in stock"/"out of stock"/"preorder"/"backorder", schema.org's ItemAvailability names, with or
# without their URL), compared without case, spaces, "_" or "-": an item that can be ordered is in
# stock for recommendations.
_TRUE = frozenset({"1", "true", "yes", "y", "t"}) | frozenset(
    {
        "instock",
        "available",
        "preorder",
        "presale",
        "backorder",
        "backordered",
        "limitedavailability",
        "onlineonly",
        "madetoorder",
    }
)
# InStoreOnly: not to be bought where the recommendations are shown; Reserved: held for another.
_FALSE = frozenset({"0", "false", "no", "n", "f"}) | frozenset(
    {
        "outofstock",
        "notinstock",
        "oos",
        "soldout",
        "discontinued",
        "unavailable",
        "notavailable",
        "instoreonly",
        "reserved",
    }
)
# schema.org's names as URLs (http or https) or with the JSON-LD prefix ("schema:InStock").
_AVAILABILITY_URL = re.compile(r"^(?:https?://schema\.org/|schema:)", re.IGNORECASE)
_AVAILABILITY_SEPARATORS = re.compile(r"[\s_-]+")
# The columns a decimal comma is read in before they are parsed; text columns (title, description)
# keep their commas, and a price applies its own separator rule (`_decimal_separator`).
_NUMERIC_COLUMNS = ("popularity",)
# A category path given as a list or object ("Office > Paper"), as the amazon layout writes it.
CATEGORY_SEPARATOR = " > "
# Bounds on a list or object in a text column: a category path or a few description bullets,
# not a document; what is beyond is left out (depth) or cut (leaves, cells parsed as literals).
MAX_TEXT_DEPTH = 8
MAX_TEXT_LEAVES = 64
MAX_LITERAL_CHARS = 65_536
# How many skipped rows (and, apart, warnings) the log names one by one; the rest are counted (all
# go to `skipped`).
LOGGED_SKIPS = 5
# Dashes that make "$5.99 - $12.99" a range and "-3" a negative price.
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2212"
# A price cell that means "no price": pandas' and SQL's markers in any case ("n/a", "NONE"), and a
# lone dash, as shops and spreadsheets write an empty price.
_MISSING = frozenset(marker.casefold() for marker in MISSING_MARKERS)
_NO_PRICE = _MISSING | set(_DASHES) | {"--"}
# What a shop writes for a price of nothing; price-parser reads it as 0 too.
_FREE = "free"
# "12,-" / "12.-" (or an en dash): a whole amount (German, Swiss); read as 12.
_WHOLE_AMOUNT = re.compile(rf"(.*[0-9])([.,])[{_DASHES}]{{1,2}}\s*(\S*)")
# One amount as written: digits with separators (',' '.' apostrophes, no-break and thin spaces, or
# a space before a group of three digits: "1 299,00"). Two of them in a price are two amounts.
_AMOUNT = re.compile(r"[0-9](?:[0-9.,'\u2019\u00a0\u202f]|[ ](?=[0-9]{3}(?![0-9])))*")
# Swiss prices group thousands with an apostrophe, typeset as U+2019 as often as ASCII's
# (CHF 1\u2019299.00); price-parser reads only the ASCII one.
_TYPESET_APOSTROPHE = "\u2019"
# Names other exports give the item id (amazon's metadata: asin), named in the error for a row
# without item_id.
_OTHER_ID_NAMES = ("asin", "id", "sku", "product_id", "parent_asin")
# Elements whose content is no text a shopper reads.
_HIDDEN_ELEMENTS = frozenset({"script", "style", "template", "noscript", "iframe", "object"})
# Elements that separate words: "<li>A</li><li>B</li>" is "A B", not "AB".
_BREAKING_ELEMENTS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
        "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main",
        "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot", "th", "thead", "tr",
        "ul",
    }
)  # fmt: skip
# Only these tags are removed: "<10mm>" or "<Blue>" in a title is text, not markup.
_HTML_ELEMENTS = _HIDDEN_ELEMENTS | _BREAKING_ELEMENTS | frozenset(
    {
        "a", "abbr", "b", "bdi", "bdo", "big", "body", "caption", "center", "cite", "code", "col",
        "colgroup", "data", "del", "dfn", "em", "embed", "font", "head", "html", "i", "img", "ins",
        "kbd", "mark", "meta", "picture", "q", "s", "samp", "small", "source", "span", "strike",
        "strong", "sub", "sup", "svg", "time", "tt", "u", "var", "wbr",
    }
)  # fmt: skip


@dataclass(frozen=True)
class CatalogItem:
    """One validated catalogue row: `price` in the catalogue's currency units (None if unknown),
    `popularity` a non-negative count of recent interactions (0 if absent)."""

    item_id: str
    title: str
    brand: str = ""
    category: str = ""
    description: str = ""
    price: float | None = None
    in_stock: bool = True
    popularity: float = 0.0


@dataclass(frozen=True)
class SkippedRow:
    """A catalogue row left out of the build: `where` ("items.jsonl line 7"), the `field` at fault
    (``$``: the row as a whole), the `reason` with its fix, and the row as read (`raw`, JSON)."""

    where: str
    field: str
    reason: str
    raw: str
    # A warning: the row was indexed all the same, this (optional) field read as absent.
    kept: bool = False

    def to_json(self) -> str:
        """One line of the rejects file, in the shape of replay's and load's rejects; a warning
        (`kept`) adds ``"kept": true``."""
        line: dict[str, Any] = {
            "position": self.where,
            "field": self.field,
            "reason": self.reason,
            "raw": self.raw,
        }
        if self.kept:
            line["kept"] = True
        return json.dumps(line, ensure_ascii=False)


def item_text(item: CatalogItem, description_chars: int = DESCRIPTION_CHARS) -> str:
    """The one item template: ``title | brand | category | description[:300]``, empty parts left out."""
    description = item.description.strip()[:description_chars].strip()
    parts = (item.title.strip(), item.brand.strip(), item.category.strip(), description)
    return SEPARATOR.join(part for part in parts if part)


def text_hash(text: str) -> str:
    """Identifies an item's encoder input; `upsert` re-encodes only items whose hash changed."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# The catalogue's columns, and the names shop exports give them (Google Merchant Center's
# `availability`, a stock count's `stock`/`quantity`, WooCommerce's `Name`), matched without case,
# spaces or "-" (`Title`, `In Stock`, `in-stock`). An id column under another name (`id`, `sku`)
# is not guessed: the row's error names it (`_OTHER_ID_NAMES`).
_COLUMNS = ("item_id", "title", "brand", "category", "description", "price", "in_stock", "popularity")
_COLUMN_ALIASES = {
    "item_id": (),
    "title": ("name", "product_name", "product_title"),
    "brand": (),
    "category": (),
    "description": (),
    "price": (),
    "in_stock": ("availability", "stock", "quantity", "stock_quantity", "inventory", "instock"),
    "popularity": (),
}
_COLUMN_OF = {alias: name for name in _COLUMNS for alias in (name, *_COLUMN_ALIASES[name])}


def _column_key(name: object) -> str:
    text = str(name)
    # Every row repeats its file's column names: short ones are cached (a JSON line may bring any
    # name, and the cache must stay small whatever the input).
    return _cached_column_key(text) if len(text) <= 64 else _fold_column(text)


def _fold_column(text: str) -> str:
    return re.sub(r"[\s-]+", "_", text.strip()).casefold()


_cached_column_key = functools.lru_cache(maxsize=1024)(_fold_column)


def canonical_columns(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """`row` with its columns under the catalogue's names (`_COLUMN_OF`); a column already under
    its own name wins over another spelling of it, and other columns are kept as they are.
    Returns `row` itself when every name is already the catalogue's (nearly every file)."""
    if all(name in _COLUMNS or _column_key(name) not in _COLUMN_OF for name in row):
        return row
    out = dict(row)
    for name, value in row.items():
        canonical = _COLUMN_OF.get(_column_key(name))
        if canonical is not None and canonical != name and canonical not in row:
            del out[name]
            out.setdefault(canonical, value)
    return out


def item_from_row(
    row: Mapping[str, Any],
    where: str,
    *,
    decimal_comma: bool = False,
    warnings: list[SkippedRow] | None = None,
) -> CatalogItem:
    """Validate one catalogue row; `where` ("items.csv row 7") goes into the error message.

    `decimal_comma` (a ``;``-separated file): ``12,50`` in price or popularity reads as 12.5 and a
    whole ``17850,0`` item_id as ``17850``. Raises `InvalidCatalogRow` (naming the field) for a
    missing or empty item_id or title. An unreadable price, in_stock or popularity leaves the item
    without a price, in stock or with popularity 0: a warning appended to `warnings` (given; else
    logged).
    """
    row = canonical_columns(row)
    price: float | None = _optional(
        row,
        "price",
        where,
        warnings,
        read=lambda v: _price(v, where, decimal_comma=decimal_comma),
        default=None,
    )
    if decimal_comma:
        row = _decimal_points(row)
    try:
        raw_id = row.get("item_id")
        # Spaces around an id in a cell are padding (the catalogue always read them so).
        raw_id = raw_id.strip(" \t") if isinstance(raw_id, str) else raw_id
        # An id no event may carry ("sku1\u200b", 200 characters) would be an item that no view,
        # click or purchase could ever name: read by the events' rule (NFC included), or refused.
        item_id = "" if raw_id is None or raw_id == "" else valid_id(raw_id, "item_id")
    except InvalidEvent as exc:
        raise InvalidCatalogRow(where, "item_id", f"item_id {exc.reason}; fix or drop the row") from exc
    title = _field_text(row.get("title"), " ")
    # A title of only invisible characters ("\u200b") is as empty to the encoder and to a reader.
    if not item_id or is_blank(title):
        other = next((name for name in _OTHER_ID_NAMES if raw_id is None and row.get(name)), None)
        hint = f" (this row has {other!r}: name that column item_id)" if other else ""
        raise InvalidCatalogRow(
            where,
            "title" if item_id else "item_id",
            "item_id and title are required and non-empty (a title of only whitespace or "
            f"invisible characters is empty){hint}; fix or drop the row",
        )
    return CatalogItem(
        item_id=item_id,
        title=title,
        brand=_field_text(row.get("brand"), ", "),
        category=_field_text(row.get("category"), CATEGORY_SEPARATOR),
        description=_field_text(row.get("description"), " "),
        price=price,
        in_stock=_optional(row, "in_stock", where, warnings, read=lambda v: _flag(v, where), default=True),
        popularity=_optional(
            row, "popularity", where, warnings, read=lambda v: _popularity(v, where), default=0.0
        ),
    )


def _decimal_points(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row` with decimal commas written as points in the numeric columns and a whole item_id."""
    out = dict(row)
    for name in ("item_id", *_NUMERIC_COLUMNS):
        value = out.get(name)
        if isinstance(value, str):
            pointed = decimal_point(value.strip(), whole_only=name == "item_id")
            if pointed is not None:
                out[name] = pointed
    return out


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _field_text(value: Any, joiner: str) -> str:
    """A text column as the encoder should read it: a list or object (``["Office", "Pens"]``,
    ``{"l1": "Office", "l2": "Paper"}``, or either written as a Python literal in a CSV cell) as its
    text leaves joined by `joiner`, never as Python's repr; HTML tags stripped and entities
    unescaped (`html_text`)."""
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
        value = _literal(value)
    if isinstance(value, list | tuple | dict):
        leaves: list[str] = []
        _text_leaves(value, leaves, 0)
        return joiner.join(part for part in (html_text(leaf) for leaf in leaves) if part)
    return html_text(_text(value))


def _literal(text: str) -> Any:
    """A list or dict written as a JSON or Python literal, else `text` unchanged (never run)."""
    if len(text) > MAX_LITERAL_CHARS:
        return text
    try:
        parsed = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            return text
    return parsed if isinstance(parsed, list | tuple | dict) else text


def _text_leaves(value: Any, out: list[str], depth: int) -> None:
    """The text in `value`, depth first, dict keys left out (``l1``, ``id`` say nothing about the
    item) and numbers too (category ids); bounded in depth and in leaves."""
    if len(out) >= MAX_TEXT_LEAVES:
        return
    if isinstance(value, str):
        if value.strip():
            out.append(value.strip())
    elif isinstance(value, list | tuple | dict) and depth < MAX_TEXT_DEPTH:
        for part in value.values() if isinstance(value, dict) else value:
            _text_leaves(part, out, depth + 1)


def html_text(text: str) -> str:
    """`text` with HTML elements reduced to their text: tags of HTML elements removed (block
    elements and ``<br>`` as a space), ``<script>``/``<style>`` content and comments dropped,
    entities (``&amp;``, ``&#233;``) unescaped, runs of whitespace made one space. What is not an
    HTML tag stays (``size <10mm>``, ``AT&T``). Text without ``<`` or ``&`` is returned as it is."""
    if "<" not in text and "&" not in text:
        return text
    parser = _TextOfHtml()
    parser.feed(text)
    parser.close()
    return " ".join("".join(parser.parts).split())


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0  # inside <script> or <style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_ELEMENTS:
            self._hidden += 1
        elif tag not in _HTML_ELEMENTS:
            self.parts.append(self.get_starttag_text() or "")
        elif tag in _BREAKING_ELEMENTS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HTML_ELEMENTS:
            self.parts.append(self.get_starttag_text() or "")
        elif tag in _BREAKING_ELEMENTS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_ELEMENTS:
            self._hidden = max(0, self._hidden - 1)
        elif tag not in _HTML_ELEMENTS:
            self.parts.append(f"</{tag}>")
        elif tag in _BREAKING_ELEMENTS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


T = TypeVar("T")

_KEPT_AS = {
    "price": "the item is indexed without a price",
    "in_stock": "the item is indexed as in stock (the default)",
    "popularity": "the item is indexed with popularity 0 (unknown)",
}


def _optional(
    row: Mapping[str, Any],
    name: str,
    where: str,
    warnings: list[SkippedRow] | None,
    *,
    read: Callable[[Any], T],
    default: T,
) -> T:
    """Column `name` of `row` read by `read`, or `default` where it is unreadable: the column is
    optional, so an unreadable value costs the item that value, never its place in the catalogue
    (a warning appended to `warnings`, given; else logged)."""
    try:
        return read(row.get(name))
    except InvalidCatalogRow as exc:
        reason = f"{exc.reason}; {_KEPT_AS[name]}"
        if warnings is None:
            log.warning("catalogue row %s: %s", where, reason)
        else:
            warnings.append(SkippedRow(where, name, reason, _raw(row), kept=True))
        return default


def _price(value: Any, where: str, *, decimal_comma: bool = False) -> float | None:
    """A price as a number, None for no price (empty, NaN, a missing-value marker); raises
    `InvalidCatalogRow` for a value that is no single amount >= 0."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None  # NaN: pandas' and Parquet's empty price
    if isinstance(value, str):
        text = value.strip()
        if text.casefold() in _NO_PRICE:
            return None
        price = 0.0 if text.casefold() == _FREE else _written_price(text, where, decimal_comma)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidCatalogRow(
            where,
            "price",
            f"price {value!r} is not a number but {json_type(value)}; use one price such as 12.5 or "
            "$12.50, or leave it empty",
        )
    else:
        price = float(value)
    if not math.isfinite(price) or price < 0:
        raise InvalidCatalogRow(
            where,
            "price",
            f"price {value!r} must be a finite number >= 0; use e.g. 12.5 or leave it empty",
        )
    return price


def _written_price(text: str, where: str, decimal_comma: bool) -> float:
    """A price as shops write it (``12.5``, ``$36.99``, ``36.99 USD``, ``€1.299,00``, ``12,-``):
    one amount, with a currency or alone ("12 pcs" is no price). price-parser reads the currency
    and the amount, told the decimal separator by the one rule (`_decimal_separator`); it would
    drop a sign and take the first of two amounts, so those are refused here first."""
    text = text.replace(_TYPESET_APOSTROPHE, "'")
    whole = _WHOLE_AMOUNT.fullmatch(text)
    # "1.299,-": the separator before the dash is the decimal one, whatever the file's.
    decimal_mark = whole.group(2) if whole else None
    if whole:
        text = f"{whole.group(1)} {whole.group(3)}".strip()
    amounts = list(_AMOUNT.finditer(text))
    if len(amounts) > 1:
        between = text[amounts[0].end() : amounts[1].start()]
        kind = "a range, not one price" if any(d in between for d in _DASHES) else "more than one amount"
        raise InvalidCatalogRow(
            where,
            "price",
            f"price {text!r} is {kind}; write one price such as 12.5 or $12.50, or leave it empty",
        )
    if amounts and any(dash in text[: amounts[0].start()] for dash in _DASHES):
        raise InvalidCatalogRow(
            where, "price", f"price {text!r} must be a finite number >= 0; use e.g. 12.5 or leave it empty"
        )
    if amounts and decimal_mark is None and _three_decimals(amounts[0].group()):
        currency = Price.fromstring(text).currency
        if currency is not None and currency.upper() not in _THREE_DECIMAL_CURRENCIES:
            # "€1.299", "1.299 kr": a currency amount with three digits after its one separator is
            # thousands (no such currency has three decimals); a bare "1.299" keeps the one rule.
            decimal_mark = "," if "." in amounts[0].group() else "."
    parsed = (
        Price.fromstring(
            text, decimal_separator=decimal_mark or _decimal_separator(amounts[0].group(), decimal_comma)
        )
        if amounts
        else None
    )
    rest = text[amounts[0].end() :] if amounts else text
    if (
        parsed is None
        or parsed.amount_float is None
        or any(dash in rest for dash in _DASHES)
        or (parsed.currency is None and (text[: amounts[0].start()] + rest).strip())
    ):
        raise InvalidCatalogRow(
            where,
            "price",
            f"price {text!r} is not a number; use one price such as 12.5 or $12.50, or leave it empty",
        )
    return parsed.amount_float


# ISO 4217 currencies with three minor digits: there "1.299" may be one unit and 299 fils.
_THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})


def _three_decimals(amount: str) -> bool:
    """Whether `amount` has exactly one separator ("." or ","), followed by exactly three digits."""
    separators = [char for char in amount if char in ".,"]
    return len(separators) == 1 and len(amount.rstrip(".,").rsplit(separators[0], 1)[1]) == 3


def _decimal_separator(amount: str, decimal_comma: bool) -> str:
    """The decimal separator of `amount` ("1.299,00"), by one rule for every price of a file: both
    ``.`` and ``,`` there: the last; else the file's own (``,`` in a ``;``-separated file with
    decimal commas, ``.`` elsewhere) is decimal, and the other is a thousands separator when every
    group after it has exactly three digits (``1.299`` in a ``;`` file, ``1,299`` elsewhere), else
    decimal (``12.5``, ``12,50``). Indian grouping (lakh and crore: ``1,29,999``, ``1,00,00,000``:
    groups of two, then a last group of three) is thousands separators too."""
    own, other = (",", ".") if decimal_comma else (".", ",")
    point, comma = amount.rfind("."), amount.rfind(",")
    if point >= 0 and comma >= 0:
        return "." if point > comma else ","
    groups = amount.rstrip(".,").split(other)[1:]
    if groups and not (_thousands_groups(groups) or _indian_groups(groups)):
        return other
    return own


def _thousands_groups(groups: list[str]) -> bool:
    return all(len(group) == 3 and group.isdigit() for group in groups)


def _indian_groups(groups: list[str]) -> bool:
    """Whether the groups after the first separator are Indian digit grouping's: twos, then three."""
    *twos, last = groups
    return bool(twos) and _thousands_groups([last]) and all(len(g) == 2 and g.isdigit() for g in twos)


def _popularity(value: Any, where: str) -> float:
    """popularity as a count >= 0; empty or a missing-value marker is 0 (unknown). Raises
    InvalidCatalogRow for anything else."""
    if value is None or (
        isinstance(value, str) and (not value.strip() or value.strip().casefold() in _MISSING)
    ):
        return 0.0
    if isinstance(value, float) and math.isnan(value):
        return 0.0  # pandas' and Parquet's empty cell
    try:
        count = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidCatalogRow(
            where,
            "popularity",
            f"popularity {value!r} is not a number; use a count of recent interactions such as "
            "42, or leave it empty",
        ) from exc
    if not math.isfinite(count) or count < 0:
        raise InvalidCatalogRow(
            where,
            "popularity",
            f"popularity {value!r} must be a finite count >= 0; fix or leave it empty",
        )
    return count


def _flag(value: Any, where: str) -> bool:
    """in_stock as a boolean, a stock count (0 is out of stock) or an availability word (`_TRUE`,
    `_FALSE`); empty is the default, in stock. Raises InvalidCatalogRow for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return value > 0  # a stock count: none, or oversold (negative), is out of stock
    text = _text(value)
    if not text or text.casefold() in _MISSING:
        return True  # an empty cell means the default: in stock
    count = number_text(text)
    if isinstance(count, Decimal) and count.is_finite():
        return count > 0  # a stock count written as text ("12", "0.0", "-1")
    word = _AVAILABILITY_SEPARATORS.sub("", _AVAILABILITY_URL.sub("", text)).casefold()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise InvalidCatalogRow(
        where,
        "in_stock",
        f"in_stock {value!r} is neither a boolean, a stock count nor an availability; use true/false, "
        "1/0, a count, or 'in stock'/'out of stock'",
    )


def detect_format(path: Path) -> CatalogFormat:
    """The catalogue format from the file suffix; `CatalogError` for a suffix it does not know."""
    suffix = path.suffix.lower()
    formats: dict[str, CatalogFormat] = {
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".csv": "csv",
        ".tsv": "csv",
        ".tab": "csv",
        ".parquet": "parquet",
        ".pq": "parquet",
        ".json": "json",
    }
    if suffix not in formats:
        raise CatalogError(
            f"catalogue {path}: cannot tell the format from {suffix!r}; use .jsonl, .csv (.tsv, .tab), "
            ".parquet or .json (an array of items, or amazon's object keyed by item id), or pass the "
            "format explicitly (--format)"
        )
    return formats[suffix]


def read_catalog(
    path: Path,
    fmt: CatalogFormat = "auto",
    *,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    skipped: list[SkippedRow] | None = None,
) -> list[CatalogItem]:
    """All valid items of a catalogue file; a duplicate item_id keeps the last row (later rows win,
    logged).

    `delimiter`: a CSV file's column separator as ``--delimiter`` takes it (``auto`` or None:
    found; ``tab``; one character), see `stream.core.tabular.parse_delimiter`; other formats
    ignore it. A ``;``-separated file reads decimal commas in price, popularity and item_id.
    An invalid row is skipped alone, logged and appended to `skipped` (given) with its line, field
    and reason. Raises `CatalogError` (naming the file, and the line or row where there is one) for
    a missing file, an unknown format, a bad delimiter, a header that reads as one column but splits
    at another separator, undecodable text, or rows none of which is valid (naming the first
    reasons); malformed lines are skipped and logged.
    """
    chosen = detect_format(path) if fmt == "auto" else fmt
    if not path.is_file():
        raise CatalogError(f"catalogue {path} does not exist; pass the path of an existing file")
    tally = ReadTally()
    skips: list[SkippedRow] = []
    try:
        if chosen == "amazon":
            items = list(read_amazon_items(path, encoding=encoding, skipped=skips))
        elif chosen == "json":
            items = read_json_items(path, encoding=encoding, skipped=skips)
        else:
            where = "row" if chosen == "parquet" else "line"
            separator = (
                csv_delimiter(path, encoding=encoding, delimiter=delimiter) if chosen == "csv" else None
            )
            rows = read_rows(
                path, encoding=encoding, fmt=cast(TableFormat, chosen), tally=tally, delimiter=separator
            )
            decimal_comma = separator == DECIMAL_COMMA_DELIMITER
            items = _valid_items(
                ((f"{path} {where} {row.number}", row.values, decimal_comma) for row in rows),
                skips,
            )
    except SourceError as exc:
        raise CatalogError(f"catalogue {exc}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"catalogue {path} cannot be read as {chosen} ({exc}); check the file") from exc
    finally:
        if skipped is not None:
            skipped.extend(skips)
    if tally.malformed:
        log.warning(
            "catalogue %s: skipped %d malformed lines (%s)",
            path,
            tally.malformed,
            "; ".join(tally.first_malformed),
        )
    dropped = [skip for skip in skips if not skip.kept]
    if skips:
        _log_skips(path, skips, indexed=len(items))
    if dropped and not items:
        # Every row is wrong: the same mistake throughout (a renamed column, another file).
        raise CatalogError(
            f"catalogue {path}: none of its {len(dropped)} rows is valid; first: "
            + "; ".join(f"{skip.where}: {skip.reason}" for skip in dropped[:3])
        )
    kept = {item.item_id: item for item in items}
    if len(kept) < len(items):
        # Later rows win (an update appended to an export); said, so that a mis-keyed export shows.
        repeated = [item_id for item_id, rows in Counter(i.item_id for i in items).items() if rows > 1]
        log.warning(
            "catalogue %s: %d rows repeat an earlier item_id and replace it (first: %s)",
            path,
            len(items) - len(kept),
            ", ".join(repr(i) for i in repeated[:3]),
        )
    return list(kept.values())


def write_skipped(skipped: Iterable[SkippedRow], path: Path) -> None:
    """The skipped rows as JSON lines at `path` (``profilestream index --rejects``)."""
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(skip.to_json() + "\n" for skip in skipped)


def _valid_items(rows: Iterable[tuple[str, Any, bool]], skipped: list[SkippedRow]) -> list[CatalogItem]:
    """The items of (where, row, decimal_comma) triples; each invalid row goes to `skipped`, and
    each warning (`SkippedRow.kept`: a row indexed with an unreadable price) too."""
    items = []
    for where, row, decimal_comma in rows:
        try:
            if not isinstance(row, Mapping):
                raise InvalidCatalogRow(
                    where,
                    "$",
                    f"expected an object with item_id and title, got {json_type(row)}; fix or drop "
                    "the element",
                )
            items.append(item_from_row(row, where, decimal_comma=decimal_comma, warnings=skipped))
        except InvalidCatalogRow as exc:
            skipped.append(SkippedRow(exc.where, exc.field, exc.reason, _raw(row)))
    return items


def _raw(row: Any) -> str:
    """The row as read, for the rejects file: JSON where it is JSON-able, cut to 2000 characters."""
    try:
        text = json.dumps(row, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(row)
    return text[:2000]


def _log_skips(path: Path, skips: list[SkippedRow], *, indexed: int) -> None:
    """The first `LOGGED_SKIPS` skipped rows and warnings, then one summary line of each."""
    dropped = [skip for skip in skips if not skip.kept]
    warned = [skip for skip in skips if skip.kept]
    for skip in dropped[:LOGGED_SKIPS]:
        log.warning("catalogue row skipped: %s: %s", skip.where, skip.reason)
    for skip in warned[:LOGGED_SKIPS]:
        log.warning("catalogue row %s: %s", skip.where, skip.reason)
    if dropped:
        log.warning(
            "catalogue %s: skipped %d invalid rows (%d more than logged), read %d",
            path,
            len(dropped),
            max(0, len(dropped) - LOGGED_SKIPS),
            indexed,
        )
    if warned:
        fields = Counter(skip.field for skip in warned)
        log.warning(
            "catalogue %s: %d rows indexed with an unreadable optional value read as absent (%s; %d "
            "more than logged)",
            path,
            len(warned),
            ", ".join(f"{name}: {count}" for name, count in sorted(fields.items())),
            max(0, len(warned) - LOGGED_SKIPS),
        )


def read_json_items(
    path: Path, *, encoding: str = "utf-8", skipped: list[SkippedRow] | None = None
) -> list[CatalogItem]:
    """A ``.json`` catalogue: an array of item objects with the JSONL columns (what a shop's
    ``products.json`` export holds), each validated as a JSONL row (`item_from_row`, named
    "item N", 1-based), or amazon's object keyed by item id (`read_amazon_items`).

    An element that is no object or no valid item is skipped and appended to `skipped` (given).
    Raises `CatalogError` for undecodable text or any other top-level value.
    """
    skips = [] if skipped is None else skipped
    document = _json_document(path, encoding)
    if isinstance(document, dict):
        return list(_amazon_items(path, document, skips))
    if not isinstance(document, list):
        raise CatalogError(
            f"catalogue {path}: expected an array of item objects or an object keyed by item id "
            f"(amazon format), got {json_type(document)}; or write one item object per line as .jsonl"
        )
    return _valid_items(
        ((f"{path} item {number}", row, False) for number, row in enumerate(document, start=1)), skips
    )


def read_amazon_items(
    path: Path, *, encoding: str = "utf-8", skipped: list[SkippedRow] | None = None
) -> Iterable[CatalogItem]:
    """The amazon-office benchmark layout.

    ``{"<item_id>": {"title", "description", "brand", "categories"}}``; benchmark data only. Its
    text is kept as the benchmark has it (no HTML stripping), so that published results and
    indexes built from it stay reproducible. An entry that is no object is skipped and appended to
    `skipped` (given).
    """
    document = _json_document(path, encoding)
    if not isinstance(document, dict):
        raise CatalogError(
            f"catalogue {path}: expected an object keyed by item id (amazon format); an array of item "
            "objects is read with --format json"
        )
    return _amazon_items(path, document, [] if skipped is None else skipped)


def _json_document(path: Path, encoding: str) -> Any:
    try:
        return json.loads(path.read_text(encoding=check_encoding(encoding)))
    except UnicodeDecodeError as exc:
        raise CatalogError(
            f"catalogue {path}: not {encoding} text ({exc.reason} at byte {exc.start}); pass the "
            "file's encoding with --encoding"
        ) from exc


def _amazon_items(path: Path, document: dict[str, Any], skipped: list[SkippedRow]) -> Iterable[CatalogItem]:
    for item_id, fields in document.items():
        if not isinstance(fields, dict):
            skipped.append(
                SkippedRow(
                    f"{path} item {item_id!r}",
                    "$",
                    f"item {item_id!r} is not an object; an amazon-format items.json maps item ids to "
                    "{title, description, brand, categories} (other catalogues: .jsonl/.csv/.parquet)",
                    _raw(fields),
                )
            )
            log.warning("catalogue %s: skipped item %r: not an object", path, item_id)
            continue
        if is_blank(_text(fields.get("title"))):
            continue  # untitled items carry no text to encode
        yield CatalogItem(
            item_id=str(item_id),
            title=_text(fields.get("title")),
            brand=_text(fields.get("brand")),
            category=_categories(fields.get("categories")),
            description=parse_listish(fields.get("description")),
        )


def parse_listish(value: Any) -> str:
    """The amazon descriptions are Python list literals as strings; parse safely, else keep raw."""
    if isinstance(value, list):
        return " ".join(_text(part) for part in value if _text(part))
    text = _text(value)
    if text.startswith("["):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
        if isinstance(parsed, list):
            return " ".join(_text(part) for part in parsed if _text(part))
    return text


def _categories(value: Any) -> str:
    if isinstance(value, list):
        return " > ".join(_text(part) for part in value if _text(part))
    return parse_listish(value)
