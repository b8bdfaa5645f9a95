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
A row that is well formed but invalid (no title, a bad price) stops the read with its line: a
catalogue is small and curated, and an item silently missing from search is worse than a clear
error.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from stream.core.errors import CatalogError, InvalidEvent, SourceError
from stream.core.events import check_id, is_blank
from stream.core.tabular import (
    DECIMAL_COMMA_DELIMITER,
    ReadTally,
    TableFormat,
    check_encoding,
    csv_delimiter,
    decimal_point,
    id_text,
    read_rows,
)

log = logging.getLogger(__name__)

CatalogFormat = Literal["auto", "jsonl", "csv", "parquet", "amazon"]
# Long enough for the gist of a product, short enough that title words keep their weight in the
# mean pooling and the text stays well inside the encoder's token limit.
DESCRIPTION_CHARS = 300
SEPARATOR = " | "
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}
# The columns a decimal comma is read in; text columns (title, description) keep their commas.
_NUMERIC_COLUMNS = ("price", "popularity")


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


def item_text(item: CatalogItem, description_chars: int = DESCRIPTION_CHARS) -> str:
    """The one item template: ``title | brand | category | description[:300]``, empty parts left out."""
    description = item.description.strip()[:description_chars].strip()
    parts = (item.title.strip(), item.brand.strip(), item.category.strip(), description)
    return SEPARATOR.join(part for part in parts if part)


def text_hash(text: str) -> str:
    """Identifies an item's encoder input; `upsert` re-encodes only items whose hash changed."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def item_from_row(row: Mapping[str, Any], where: str, *, decimal_comma: bool = False) -> CatalogItem:
    """Validate one catalogue row; `where` ("items.csv row 7") goes into the error message.

    `decimal_comma` (a ``;``-separated file): ``12,50`` in price or popularity reads as 12.5 and a
    whole ``17850,0`` item_id as ``17850``. Raises `CatalogError` for a missing or empty item_id or
    title, or an invalid price, popularity or in_stock value.
    """
    if decimal_comma:
        row = _decimal_points(row)
    try:
        item_id = _text(id_text(row.get("item_id"), "item_id"))
        if item_id:
            # An id no event may carry ("sku1\u200b", 200 characters) would be an item that no
            # view, click or purchase could ever name: refused here with the events' rule.
            check_id(item_id, "item_id")
    except InvalidEvent as exc:
        raise CatalogError(f"{where}: item_id {exc.reason}; fix or drop the row") from exc
    title = _text(row.get("title"))
    # A title of only invisible characters ("\u200b") is as empty to the encoder and to a reader.
    if not item_id or is_blank(title):
        raise CatalogError(
            f"{where}: item_id and title are required and non-empty (a title of only whitespace or "
            "invisible characters is empty); fix or drop the row"
        )
    return CatalogItem(
        item_id=item_id,
        title=title,
        brand=_text(row.get("brand")),
        category=_text(row.get("category")),
        description=_text(row.get("description")),
        price=_price(row.get("price"), where),
        in_stock=_flag(row.get("in_stock"), where),
        popularity=_popularity(row.get("popularity"), where),
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


def _price(value: Any, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise CatalogError(
            f"{where}: price {value!r} is not a number; use e.g. 12.5 or leave it empty"
        ) from exc


def _popularity(value: Any, where: str) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0.0
    try:
        count = float(value)
    except (TypeError, ValueError) as exc:
        raise CatalogError(
            f"{where}: popularity {value!r} is not a number; use a count of recent interactions such as "
            "42, or leave it empty"
        ) from exc
    if not math.isfinite(count) or count < 0:
        raise CatalogError(
            f"{where}: popularity {value!r} must be a finite count >= 0; fix or leave it empty"
        )
    return count


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    text = _text(value).lower()
    if not text:
        return True  # an empty cell means the default: in stock
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CatalogError(f"{where}: in_stock {value!r} is not a boolean; use true/false or 1/0")


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
        ".json": "amazon",
    }
    if suffix not in formats:
        raise CatalogError(
            f"catalogue {path}: cannot tell the format from {suffix!r}; use .jsonl, .csv (.tsv, .tab), "
            ".parquet or items.json (amazon format), or pass the format explicitly (--format)"
        )
    return formats[suffix]


def read_catalog(
    path: Path, fmt: CatalogFormat = "auto", *, encoding: str = "utf-8", delimiter: str | None = None
) -> list[CatalogItem]:
    """All items of a catalogue file; a duplicate item_id keeps the last row (later rows win, logged).

    `delimiter`: a CSV file's column separator as ``--delimiter`` takes it (``auto`` or None:
    found; ``tab``; one character), see `stream.core.tabular.parse_delimiter`; other formats
    ignore it. A ``;``-separated file reads decimal commas in price, popularity and item_id.
    Raises `CatalogError` (naming the file, and the line or row where there is one) for a missing
    file, an unknown format, a bad delimiter, a header that reads as one column but splits at
    another separator, undecodable text or an invalid row; malformed lines are skipped and logged.
    """
    chosen = detect_format(path) if fmt == "auto" else fmt
    if not path.is_file():
        raise CatalogError(f"catalogue {path} does not exist; pass the path of an existing file")
    tally = ReadTally()
    try:
        if chosen == "amazon":
            items = list(read_amazon_items(path, encoding=encoding))
        else:
            where = "row" if chosen == "parquet" else "line"
            separator = (
                csv_delimiter(path, encoding=encoding, delimiter=delimiter) if chosen == "csv" else None
            )
            rows = read_rows(
                path, encoding=encoding, fmt=cast(TableFormat, chosen), tally=tally, delimiter=separator
            )
            decimal_comma = separator == DECIMAL_COMMA_DELIMITER
            items = [
                item_from_row(row.values, f"{path} {where} {row.number}", decimal_comma=decimal_comma)
                for row in rows
            ]
    except SourceError as exc:
        raise CatalogError(f"catalogue {exc}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"catalogue {path} cannot be read as {chosen} ({exc}); check the file") from exc
    if tally.malformed:
        log.warning(
            "catalogue %s: skipped %d malformed lines (%s)",
            path,
            tally.malformed,
            "; ".join(tally.first_malformed),
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


def read_amazon_items(path: Path, *, encoding: str = "utf-8") -> Iterable[CatalogItem]:
    """The amazon-office benchmark layout.

    ``{"<item_id>": {"title", "description", "brand", "categories"}}``; benchmark data only.
    """
    try:
        document = json.loads(path.read_text(encoding=check_encoding(encoding)))
    except UnicodeDecodeError as exc:
        raise CatalogError(
            f"catalogue {path}: not {encoding} text ({exc.reason} at byte {exc.start}); pass the "
            "file's encoding with --encoding"
        ) from exc
    if not isinstance(document, dict):
        raise CatalogError(f"catalogue {path}: expected an object keyed by item id (amazon format)")
    for item_id, fields in document.items():
        if not isinstance(fields, dict):
            raise CatalogError(
                f"catalogue {path}: item {item_id!r} is not an object; an amazon-format items.json maps "
                "item ids to {title, description, brand, categories} (other catalogues: .jsonl/.csv/.parquet)"
            )
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
