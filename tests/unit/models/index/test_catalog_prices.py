"""Prices as shops write them, and a catalogue build that skips a bad row alone: an Amazon metadata
row with ``"price": "$36.99"`` once stopped the whole `profilestream index`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.index.catalog import SkippedRow, read_catalog, write_skipped
from models.index.item_index import load_index, sync_catalog
from stream.core.errors import CatalogError
from tests.unit.models.index.test_item_index import KeywordEncoder


def one_price(tmp_path: Path, price: object) -> float | None:
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"item_id": "a", "title": "Pen", "price": price}) + "\n", encoding="utf-8")
    return read_catalog(path)[0].price


@pytest.mark.parametrize(
    ("written", "price"),
    [
        ("$36.99", 36.99),
        ("36.99 USD", 36.99),
        ("€1.299,00", 1299.0),
        ("$1,299.00", 1299.0),
        ("£ 0.99", 0.99),
        ("EUR 12,50", 12.5),
        ("1,299.00", 1299.0),
        ("12.5", 12.5),
        (7, 7.0),
        ("CHF 1'299.00", 1299.0),  # Swiss thousands: an apostrophe, ASCII or typeset
        ("CHF 1\u2019299.00", 1299.0),
        ("\u20b91,29,999", 129999.0),  # Indian grouping (lakh, crore)
        ("Rs. 1,00,00,000.50", 10000000.5),
        ("1.299,-", 1299.0),
        ("\u20ac1.299", 1299.0),  # a currency amount with three digits after its one separator
        ("1.299 kr", 1299.0),
        ("BHD 1.299", 1.299),  # ... unless the currency has three decimals
        (
            "1.299",
            1.299,
        ),  # a bare number keeps the file's rule  # ",-": the comma is the decimal mark, whatever the file's
        ("€ 1.299,\u2013", 1299.0),  # an en dash
    ],
)
def test_prices_with_a_currency_and_separators_are_read(
    tmp_path: Path, written: object, price: float
) -> None:
    assert one_price(tmp_path, written) == pytest.approx(price)


def price_and_warnings(tmp_path: Path, price: object) -> tuple[list[float | None], list[SkippedRow]]:
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"item_id": "a", "title": "Pen", "price": price}) + "\n", encoding="utf-8")
    skipped: list[SkippedRow] = []
    return [item.price for item in read_catalog(path, skipped=skipped)], skipped


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("-$5", "must be a finite number >= 0"),
        ("$-5", "must be a finite number >= 0"),
        ("$5.99 - $12.99", "is a range, not one price"),  # amazon metadata: a product with variants
        ("$12.99 $9.99", "is more than one amount"),  # price-parser would take the first
        ("12 pcs", "is not a number"),
        ("cheap", "is not a number"),
        ("$", "is not a number"),
        (True, "is not a number but a boolean"),
    ],
)
def test_a_price_that_is_no_single_amount_is_a_warning_and_the_item_stays(
    tmp_path: Path, written: object, reason: str
) -> None:
    prices, warnings = price_and_warnings(tmp_path, written)
    assert prices == [None]
    [warning] = warnings
    assert (warning.where, warning.field, warning.kept) == (
        f"{tmp_path / 'items.jsonl'} line 1",
        "price",
        True,
    )
    assert f"price {written!r} {reason}" in warning.reason
    assert "the item is indexed without a price" in warning.reason
    assert json.loads(warning.to_json())["kept"] is True


@pytest.mark.parametrize(
    "written", ["N/A", "NA", "n/a", "null", "NULL", "None", "none", "nan", "-", "\u2013", "", " ", None]
)
def test_a_missing_value_marker_is_no_price_silently(tmp_path: Path, written: object) -> None:
    assert price_and_warnings(tmp_path, written) == ([None], [])


@pytest.mark.parametrize(
    ("written", "price"),
    [
        ("Free", 0.0),
        ("FREE", 0.0),
        ("€ 12,-", 12.0),
        ("12.-", 12.0),
        ("CHF 12.\u2013", 12.0),
        ("12,- EUR", 12.0),
    ],
)
def test_free_is_nothing_and_a_dash_after_the_comma_is_a_whole_amount(
    tmp_path: Path, written: str, price: float
) -> None:
    assert price_and_warnings(tmp_path, written) == ([price], [])


@pytest.mark.parametrize(
    ("written", "semicolon", "comma"),
    [
        # The file's own decimal separator is decimal in a bare number...
        ("1.299", 1299.0, 1.299),
        ("1,299", 1.299, 1299.0),
        # ... but no currency amount has three decimals (but BHD, KWD...): there it groups thousands.
        ("€1.299", 1299.0, 1299.0),
        ("$1,299", 1299.0, 1299.0),
        # The other one is decimal unless it is followed by groups of exactly three digits.
        ("12.5", 12.5, 12.5),
        ("€12.50", 12.5, 12.5),
        ("12,50", 12.5, 12.5),
        ("1.299.000", 1299000.0, None),
        # Both: the last one is decimal, in every file.
        ("1.299,50", 1299.5, 1299.5),
        ("€1.299,50", 1299.5, 1299.5),
        ("1,299.50", 1299.5, 1299.5),
        ("$1,299.50", 1299.5, 1299.5),
    ],
)
def test_one_separator_rule_for_plain_and_written_prices(
    tmp_path: Path, written: str, semicolon: float, comma: float | None
) -> None:
    for delimiter, expected in ((";", semicolon), (",", comma)):
        path = tmp_path / "items.csv"
        path.write_text(f'item_id{delimiter}title{delimiter}price\na{delimiter}Pen{delimiter}"{written}"\n')
        skipped: list[SkippedRow] = []
        [item] = read_catalog(path, skipped=skipped)
        assert (delimiter, item.price) == (delimiter, pytest.approx(expected) if expected else None)


AMAZON_META = [
    {"item_id": "B00000JBLH", "title": "HP 12C Financial Calculator", "price": "$36.99"},
    {"item_id": "B00004Z5T8", "title": "Avery Shipping Labels", "price": "$5.99 - $12.99"},
    {"item_id": "B00005QGM2", "title": "Pilot G2 Pens", "price": ""},
    {"item_id": "B0000\u200b", "title": "Stapler", "price": "$3"},
    {"item_id": "B0006", "title": "Ink", "price": float("nan")},
]


def write_meta(path: Path) -> Path:
    # allow_nan: NaN is what pandas and Python's json write for a missing price.
    path.write_text("".join(json.dumps(row) + "\n" for row in AMAZON_META), encoding="utf-8")
    return path


def test_bad_rows_are_skipped_alone_and_bad_prices_only_cost_the_price(tmp_path: Path) -> None:
    path = write_meta(tmp_path / "meta.jsonl")
    skipped: list[SkippedRow] = []
    items = read_catalog(path, skipped=skipped)
    assert [(i.item_id, i.price) for i in items] == [
        ("B00000JBLH", 36.99),
        ("B00004Z5T8", None),  # a range: indexed without a price
        ("B00005QGM2", None),
        ("B0006", None),  # NaN: no price, silently
    ]
    assert [(s.where, s.field, s.kept) for s in skipped] == [
        (f"{path} line 2", "price", True),
        (f"{path} line 4", "item_id", False),
    ]
    assert "price '$5.99 - $12.99' is a range, not one price" in skipped[0].reason
    assert "U+200B" in skipped[1].reason
    rejects = tmp_path / "rejects.jsonl"
    write_skipped(skipped, rejects)
    lines = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [line["position"] for line in lines] == [s.where for s in skipped]
    assert set(lines[0]) == {"position", "field", "reason", "raw", "kept"}
    assert set(lines[1]) == {"position", "field", "reason", "raw"}  # replay's and load's shape
    assert json.loads(lines[0]["raw"])["item_id"] == "B00004Z5T8"


def test_the_index_is_built_from_the_valid_rows(tmp_path: Path) -> None:
    path = write_meta(tmp_path / "meta.jsonl")
    encoder = KeywordEncoder()
    skipped: list[SkippedRow] = []
    stats = sync_catalog(tmp_path / "index", path, encoder, skipped=skipped)
    assert stats.added == 4
    assert [s.kept for s in skipped] == [True, False]
    assert load_index(tmp_path / "index", encoder.model_version).ids == (
        "B00000JBLH",
        "B00004Z5T8",
        "B00005QGM2",
        "B0006",
    )


def test_a_catalogue_whose_prices_are_all_unreadable_is_indexed(tmp_path: Path) -> None:
    path = tmp_path / "meta.jsonl"
    path.write_text(
        "".join(json.dumps({"item_id": f"B{n}", "title": "Pen", "price": "cheap"}) + "\n" for n in range(7))
    )
    skipped: list[SkippedRow] = []
    assert len(read_catalog(path, skipped=skipped)) == 7
    assert [s.kept for s in skipped] == [True] * 7


def test_only_a_catalogue_with_no_valid_row_fails(tmp_path: Path) -> None:
    path = tmp_path / "meta.jsonl"
    # Amazon's own column name: no row has an item_id.
    path.write_text(json.dumps({"asin": "B1", "title": "Pen"}) + "\n" + json.dumps({"asin": "B2"}) + "\n")
    skipped: list[SkippedRow] = []
    with pytest.raises(
        CatalogError, match=r"none of its 2 rows is valid; first: .* line 1: item_id and title"
    ) as info:
        sync_catalog(tmp_path / "index", path, KeywordEncoder(), skipped=skipped)
    assert "(this row has 'asin': name that column item_id)" in str(info.value)
    assert len(skipped) == 2  # recorded all the same, for the rejects file
    assert not (tmp_path / "index").exists()


def test_an_amazon_entry_that_is_no_object_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"B1": {"title": "Pens"}, "B2": "oops"}))
    skipped: list[SkippedRow] = []
    assert [i.item_id for i in read_catalog(path, "amazon", skipped=skipped)] == ["B1"]
    assert [(s.field, "is not an object" in s.reason) for s in skipped] == [("$", True)]
