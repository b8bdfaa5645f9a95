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
    ],
)
def test_prices_with_a_currency_and_separators_are_read(
    tmp_path: Path, written: object, price: float
) -> None:
    assert one_price(tmp_path, written) == pytest.approx(price)


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("-$5", "is not a number"),
        ("$-5", "is not a number"),
        ("$5.99 - $12.99", "is not a number but a range"),  # a range is no single price
        ("12 pcs", "is not a number"),
        ("cheap", "is not a number"),
        ("$", "is not a number"),
    ],
)
def test_what_is_no_single_price_is_refused(tmp_path: Path, written: str, reason: str) -> None:
    with pytest.raises(CatalogError, match=f"line 1: price .* {reason}"):
        one_price(tmp_path, written)


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


def test_bad_rows_are_skipped_alone_with_line_field_and_reason(tmp_path: Path) -> None:
    path = write_meta(tmp_path / "meta.jsonl")
    skipped: list[SkippedRow] = []
    items = read_catalog(path, skipped=skipped)
    assert [(i.item_id, i.price) for i in items] == [("B00000JBLH", 36.99), ("B00005QGM2", None)]
    assert [(s.where, s.field) for s in skipped] == [
        (f"{path} line 2", "price"),
        (f"{path} line 4", "item_id"),
        (f"{path} line 5", "price"),
    ]
    assert "price '$5.99 - $12.99' is not a number" in skipped[0].reason
    assert "U+200B" in skipped[1].reason
    assert "must be a finite number >= 0" in skipped[2].reason
    rejects = tmp_path / "rejects.jsonl"
    write_skipped(skipped, rejects)
    lines = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [line["position"] for line in lines] == [s.where for s in skipped]
    assert set(lines[0]) == {"position", "field", "reason", "raw"}
    assert json.loads(lines[0]["raw"])["item_id"] == "B00004Z5T8"


def test_the_index_is_built_from_the_valid_rows(tmp_path: Path) -> None:
    path = write_meta(tmp_path / "meta.jsonl")
    encoder = KeywordEncoder()
    skipped: list[SkippedRow] = []
    stats = sync_catalog(tmp_path / "index", path, encoder, skipped=skipped)
    assert stats.added == 2
    assert len(skipped) == 3
    assert load_index(tmp_path / "index", encoder.model_version).ids == ("B00000JBLH", "B00005QGM2")


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
