"""Catalogue readers and the item text template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.index.catalog import CatalogItem, SkippedRow, item_text, parse_listish, read_catalog, text_hash
from stream.core.errors import CatalogError


def test_item_text_template_skips_empty_parts_and_truncates_description() -> None:
    item = CatalogItem("1", "Blue Pen", brand="Bic", category="Pens", description="x" * 500)
    assert item_text(item) == "Blue Pen | Bic | Pens | " + "x" * 300
    assert item_text(CatalogItem("2", "Tape")) == "Tape"
    assert text_hash("a") == text_hash("a") != text_hash("b")


def test_jsonl_csv_and_parquet_read_the_same_items(tmp_path: Path) -> None:
    rows = [
        {"item_id": "a", "title": "Pen", "brand": "Bic", "price": "1.5", "in_stock": "true"},
        {"item_id": "b", "title": "Desk", "category": "Furniture", "in_stock": "0"},
    ]
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    csv_path = tmp_path / "items.csv"
    csv_path.write_text(
        "item_id,title,brand,category,description,price,in_stock\na,Pen,Bic,,,1.5,true\nb,Desk,,Furniture,,,0\n"
    )
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    parquet = tmp_path / "items.parquet"
    table = pa.table(
        {
            "item_id": ["a", "b"],
            "title": ["Pen", "Desk"],
            "brand": ["Bic", None],
            "category": [None, "Furniture"],
            "price": [1.5, None],
            "in_stock": [True, False],
        }
    )
    pq.write_table(table, parquet)
    expected = [
        CatalogItem("a", "Pen", brand="Bic", price=1.5, in_stock=True),
        CatalogItem("b", "Desk", category="Furniture", in_stock=False),
    ]
    assert read_catalog(jsonl) == expected
    assert read_catalog(csv_path) == expected
    assert read_catalog(parquet) == expected


def test_later_duplicate_rows_win_and_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"item_id": "a", "title": "Old"}\n{"item_id": "a", "title": "New"}\n')
    assert [item.title for item in read_catalog(path)] == ["New"]
    assert "1 rows repeat an earlier item_id and replace it (first: 'a')" in caplog.text


def test_bad_rows_name_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,title,price\na,Pen,1\nb,,2\n")
    # The bad row is skipped alone, recorded with its line, field and reason; the good one is read.
    skipped: list[SkippedRow] = []
    assert [item.item_id for item in read_catalog(path, skipped=skipped)] == ["a"]
    [skip] = skipped
    assert (skip.where, skip.field) == (f"{path} line 3", "title")
    assert "item_id and title are required" in skip.reason
    # A file of only bad rows is an error naming the first of them.
    path.write_text("item_id,title,price\nb,,2\n")
    with pytest.raises(CatalogError, match=r"items\.csv line 2: item_id and title are required"):
        read_catalog(path)
    # An unreadable price is optional: the item stays, without a price, and the warning is recorded.
    path.write_text("item_id,title,price\na,Pen,cheap\n")
    skipped = []
    assert [(i.item_id, i.price) for i in read_catalog(path, skipped=skipped)] == [("a", None)]
    assert [(s.field, s.kept, "price 'cheap' is not a number" in s.reason) for s in skipped] == [
        ("price", True, True)
    ]
    # So are in_stock (read as in stock, the default) and popularity (read as 0, unknown).
    for column, cell, expected, reason in (
        ("in_stock", "maybe", ("a", True, 0.0), "in_stock 'maybe' is neither a boolean"),
        ("popularity", "lots", ("a", True, 0.0), "popularity 'lots' is not a number"),
        ("popularity", "-3", ("a", True, 0.0), "must be a finite count >= 0"),
        ("popularity", "inf", ("a", True, 0.0), "must be a finite count >= 0"),
    ):
        path.write_text(f"item_id,title,{column}\na,Pen,{cell}\n")
        skipped = []
        assert [(i.item_id, i.in_stock, i.popularity) for i in read_catalog(path, skipped=skipped)] == [
            expected
        ]
        [warning] = skipped
        assert (warning.where, warning.field, warning.kept) == (f"{path} line 2", column, True)
        assert reason in warning.reason and "the item is indexed" in warning.reason
    path.write_text("item_id,title,popularity\na,Pen,nan\n")  # a missing-value marker: silently 0
    skipped = []
    assert [(i.popularity, skipped) for i in read_catalog(path, skipped=skipped)] == [(0.0, [])]


@pytest.mark.parametrize(
    ("cell", "in_stock"),
    [
        ("in stock", True),  # Google Merchant Center's availability values
        ("out of stock", False),
        ("preorder", True),
        ("backorder", True),
        ("InStock", True),  # schema.org's ItemAvailability, bare and as its URL
        ("https://schema.org/OutOfStock", False),
        ("http://schema.org/InStock", True),
        ("SOLD_OUT", False),
        ("12", True),  # a stock count written as text
        ("0.0", False),
        ("N/A", True),  # a missing-value marker: the default
        ("Not in stock", False),
        ("OOS", False),
        ("schema:InStock", True),  # JSON-LD's prefixed name
        ("InStoreOnly", False),  # not to be bought where recommendations are shown
        ("MadeToOrder", True),
        ("-1", False),  # oversold: no stock
    ],
)
def test_in_stock_reads_feed_availability_words_and_stock_counts(
    tmp_path: Path, cell: str, in_stock: bool
) -> None:
    path = tmp_path / "items.csv"
    path.write_text(f'item_id,title,in_stock\na,Pen,"{cell}"\n')
    skipped: list[SkippedRow] = []
    assert [i.in_stock for i in read_catalog(path, skipped=skipped)] == [in_stock]
    assert skipped == []


def test_popularity_is_an_optional_count(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,title,popularity\na,Pen,12\nb,Ink,\nc,Tape,0.5\n")
    assert [item.popularity for item in read_catalog(path)] == [12.0, 0.0, 0.5]
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text('{"item_id": "a", "title": "Pen", "popularity": 3}\n{"item_id": "b", "title": "Ink"}\n')
    assert [item.popularity for item in read_catalog(jsonl)] == [3.0, 0.0]


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot tell the format"):
        read_catalog(tmp_path / "items.xml")
    with pytest.raises(CatalogError, match="does not exist"):
        read_catalog(tmp_path / "nope.csv")


def test_amazon_format_parses_list_descriptions_safely(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    document = {
        "0": {
            "title": "Ink",
            "description": "['Black ink.', '', 'Fits HP.']",
            "brand": "HP",
            "categories": "",
        },
        "1": {"title": "Tape", "description": "[not python", "brand": "", "categories": ["Office", "Tape"]},
        "2": {"title": "", "description": "", "brand": "", "categories": ""},
    }
    path.write_text(json.dumps(document))
    items = read_catalog(path)
    assert items == [
        CatalogItem("0", "Ink", brand="HP", description="Black ink. Fits HP."),
        CatalogItem("1", "Tape", category="Office > Tape", description="[not python"),
    ]


def test_a_json_file_that_is_not_amazon_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"hidden_size": 32}')
    with pytest.raises(CatalogError, match="item 'hidden_size' is not an object"):
        read_catalog(path)


def test_parse_listish_never_evaluates_code() -> None:
    assert parse_listish("__import__('os').system('false')") == "__import__('os').system('false')"
    assert parse_listish("[__import__('os')]") == "[__import__('os')]"
    assert parse_listish(["a", " ", "b"]) == "a b"


def test_catalogue_bom_encoding_float_ids_and_malformed_lines(tmp_path: Path) -> None:
    """The catalogue goes through the shared file reader: the same rules as event files."""
    bom = tmp_path / "items.csv"
    bom.write_bytes(b"\xef\xbb\xbfitem_id,title\r\n17850.0,Pen\r\n17851,Ink\r\n17852\r\n")
    assert [(i.item_id, i.title) for i in read_catalog(bom)] == [("17850", "Pen"), ("17851", "Ink")]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("item_id,title\n1,Café crème\n".encode("cp1252"))
    with pytest.raises(CatalogError, match=r"line 2: .*--encoding"):
        read_catalog(latin)
    assert read_catalog(latin, encoding="cp1252")[0].title == "Café crème"
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text('{"item_id": 17850.0, "title": "Pen"}\n{"item_id": 3, "title"\n')
    assert [i.item_id for i in read_catalog(jsonl)] == ["17850"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": [17850.0, 2.0], "title": ["Pen", "Ink"]}), parquet)
    assert [i.item_id for i in read_catalog(parquet)] == ["17850", "2"]
    pq.write_table(pa.table({"item_id": [1.5], "title": ["Pen"]}), parquet)
    with pytest.raises(CatalogError, match=r"row 1: item_id '1.5' is not a whole number"):
        read_catalog(parquet)
    amazon = tmp_path / "items.json"
    amazon.write_bytes(b"\xef\xbb\xbf" + json.dumps({"7": {"title": "Tape"}}).encode())
    assert [i.item_id for i in read_catalog(amazon)] == ["7"]


@pytest.mark.parametrize(
    ("item_id", "named"),
    [
        ("sku1\u200b", "U+200B"),  # zero-width space at the end: another id that looks like sku1
        ("\ufeffsku1", "U+FEFF"),  # a BOM inside a cell, not at the file's start
        ("sku\u202e1", "U+202E"),  # right-to-left override: displays as another id
        ("sku\u20601", None),  # word joiner inside is fine: not an edge
        ("s" * 129, "over the limit of 128"),
        ("\u200b", "must not be empty"),
    ],
)
def test_item_ids_follow_the_event_id_rule(tmp_path: Path, item_id: str, named: str | None) -> None:
    """A catalogue item whose id no event may carry could never be viewed, clicked or bought."""
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"item_id": item_id, "title": "Pen"}) + "\n", encoding="utf-8")
    if named is None:
        assert [i.item_id for i in read_catalog(path)] == [item_id]
        return
    with pytest.raises(CatalogError, match=r"items\.jsonl line 1: item_id .*fix or drop the row") as info:
        read_catalog(path)
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("header", "cell", "expected"),
    [
        ("availability", "out of stock", False),  # Google Merchant Center's column
        ("stock", "0", False),  # a stock count
        ("Quantity", "12", True),
        ("In Stock", "no", False),
    ],
)
def test_stock_under_the_names_shop_exports_give_it_is_read(
    tmp_path: Path, header: str, cell: str, expected: bool
) -> None:
    path = tmp_path / "items.csv"
    path.write_text(f"item_id,Title,Price,{header}\na,Pen,$3,{cell}\n")
    [item] = read_catalog(path)
    assert (item.title, item.price, item.in_stock) == ("Pen", 3.0, expected)


def test_a_column_under_its_own_name_wins_over_another_spelling(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,title,name,in_stock,availability\na,Pen,Other,false,in stock\n")
    [item] = read_catalog(path)
    assert (item.title, item.in_stock) == ("Pen", False)
