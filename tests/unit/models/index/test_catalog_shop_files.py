"""Catalogues as real shops export them: nested categories, list-valued text, HTML, bad prices,
a JSON array, and item ids by the events' rule (breaker report 12)."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from models.index.catalog import SkippedRow, html_text, item_text, read_catalog
from stream.core.errors import CatalogError


def one_item_text(tmp_path: Path, **fields: Any) -> str:
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"item_id": "sku-1", "title": "Pens", **fields}) + "\n")
    [item] = read_catalog(path)
    return item_text(item)


@pytest.mark.parametrize(
    ("category", "text"),
    [
        (["Office", "Writing", "Pens"], "Office > Writing > Pens"),
        ({"l1": "Office", "l2": "Paper"}, "Office > Paper"),
        ({"l1": "Office", "l2": {"name": "Paper", "id": 17}}, "Office > Paper"),  # ids left out
        ([{"name": "Office"}, {"name": "Paper"}], "Office > Paper"),
        ([["Office", "Paper"]], "Office > Paper"),  # amazon's list of paths
        ("['Office', 'Paper']", "Office > Paper"),  # a list pandas wrote into a cell
        ('{"l1": "Office", "l2": "Paper"}', "Office > Paper"),
        (["Office", "", "  ", None, "Paper"], "Office > Paper"),
        ("[Sale] Office", "[Sale] Office"),  # not a literal: kept as text
        ([], ""),
    ],
)
def test_nested_categories_read_as_a_path_not_as_python_repr(
    tmp_path: Path, category: object, text: str
) -> None:
    got = one_item_text(tmp_path, category=category)
    assert got == ("Pens | " + text if text else "Pens")
    assert "{" not in got and "'" not in got


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"brand": ["Bic", "Pilot"]}, "Pens | Bic, Pilot"),
        ({"description": ["Blue ink.", "Pack of 10."]}, "Pens | Blue ink. Pack of 10."),
        ({"description": "['Blue ink.', 'Pack of 10.']"}, "Pens | Blue ink. Pack of 10."),
        ({"brand": {"name": "Bic"}}, "Pens | Bic"),
        ({"title": ["Blue", "pens"]}, "Blue pens"),
    ],
)
def test_list_valued_text_columns_are_joined(tmp_path: Path, fields: dict[str, Any], text: str) -> None:
    assert one_item_text(tmp_path, **fields) == text


def test_nested_text_is_bounded(tmp_path: Path) -> None:
    deep: object = "hidden"
    for _ in range(50):
        deep = [deep]
    assert one_item_text(tmp_path, category=["Office", deep]) == "Pens | Office"
    many = one_item_text(tmp_path, category=[f"c{n}" for n in range(1000)])
    assert many.count(" > ") == 63


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<b>Blue</b> pens &amp; <script>x</script>", "Blue pens &"),
        ("<p>One</p><p>two</p>", "One two"),
        ("<ul><li>a</li><li>b</li></ul>", "a b"),
        ("Line<br>break<br/>here", "Line break here"),
        ("caf&eacute; &#233; &#x00e9;", "café é é"),
        ("&lt;b&gt; is markup", "<b> is markup"),
        ("<style>p {color: red}</style>Red", "Red"),
        ("<!-- note -->Pens", "Pens"),
        ('<a href="/x">Link</a> text', "Link text"),
        ("Size <10mm> & AT&T", "Size <10mm> & AT&T"),  # not tags, not entities: kept
        ("Pens <Blue> 3 < 5", "Pens <Blue> 3 < 5"),
        ("plain text", "plain text"),
    ],
)
def test_html_is_reduced_to_its_text(tmp_path: Path, html: str, text: str) -> None:
    assert html_text(html) == text
    assert one_item_text(tmp_path, title=html) == text
    assert one_item_text(tmp_path, description=html) == f"Pens | {text}"


@pytest.mark.parametrize("price", ["NaN", "Infinity", "-Infinity", "-1", "-0.01", "true"])
def test_prices_that_are_no_price_cost_the_item_its_price_only(tmp_path: Path, price: str) -> None:
    path = tmp_path / "items.jsonl"
    # Raw JSON: NaN and Infinity are what Python's json.dumps writes for float('nan') / inf.
    path.write_text(
        '{"item_id": "a", "title": "Ok", "price": 1}\n{"item_id": "b", "title": "Pen", "price": '
        + price
        + "}\n"
    )
    skipped: list[SkippedRow] = []
    assert [(i.item_id, i.price) for i in read_catalog(path, skipped=skipped)] == [("a", 1.0), ("b", None)]
    if price == "NaN":
        assert skipped == []  # pandas' and json's missing value: no price, no warning
        return
    [warning] = skipped
    assert (warning.where, warning.field, warning.kept) == (f"{path} line 2", "price", True)
    assert re.match(r"price .* (must be a finite number >= 0|is not a number)", warning.reason)


@pytest.mark.parametrize(("price", "reason"), [("nan", None), ("inf", "is not a number"), ("-3", ">= 0")])
def test_csv_prices_follow_the_same_rule(tmp_path: Path, price: str, reason: str | None) -> None:
    path = tmp_path / "items.csv"
    path.write_text(f"item_id,title,price\na,Pen,{price}\n")
    skipped: list[SkippedRow] = []
    # The item stays without a price; NaN is pandas' empty cell (no warning), the others are warned.
    assert [(i.item_id, i.price) for i in read_catalog(path, skipped=skipped)] == [("a", None)]
    assert [(s.where, s.kept) for s in skipped] == ([] if reason is None else [(f"{path} line 2", True)])
    assert all(reason and reason in s.reason for s in skipped)


def test_valid_prices_still_read(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(
        '{"item_id": "a", "title": "Pen", "price": 0}\n{"item_id": "b", "title": "Ink", "price": "12.5"}\n'
    )
    assert [item.price for item in read_catalog(path)] == [0.0, 12.5]


def test_a_json_array_of_items_is_a_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    rows = [
        {"item_id": "sku-c1", "title": "<b>A</b>", "category": ["Office", "Pens"], "price": 2},
        {"item_id": 42, "title": "B", "in_stock": False},
    ]
    path.write_text(json.dumps(rows))
    items = read_catalog(path)
    assert [(i.item_id, i.title, i.category, i.price, i.in_stock) for i in items] == [
        ("sku-c1", "A", "Office > Pens", 2.0, True),
        ("42", "B", "", None, False),
    ]
    assert read_catalog(path, "json") == items


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            [{"item_id": "b"}],
            r"products\.json item 1: item_id and title are required",
        ),
        (
            ["b"],
            r"products\.json item 1: expected an object with item_id and title, got a string",
        ),
        (
            "just text",
            r"expected an array of item objects or an object keyed by item id .*got a string.*\.jsonl",
        ),
        (7, "got a number"),
    ],
)
def test_a_bad_json_catalogue_stops_with_the_element(tmp_path: Path, document: object, message: str) -> None:
    path = tmp_path / "products.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CatalogError, match=message):
        read_catalog(path)


@pytest.mark.parametrize(
    ("bad", "field", "reason"),
    [
        ({"item_id": "b"}, "title", "item_id and title are required"),
        ("b", "$", "expected an object with item_id and title, got a string"),
    ],
)
def test_a_bad_json_element_is_skipped_beside_good_ones(
    tmp_path: Path, bad: object, field: str, reason: str
) -> None:
    path = tmp_path / "products.json"
    path.write_text(json.dumps([{"item_id": "a", "title": "A"}, bad]))
    skipped: list[SkippedRow] = []
    assert [item.item_id for item in read_catalog(path, skipped=skipped)] == ["a"]
    [skip] = skipped
    assert (skip.where, skip.field) == (f"{path} item 2", field)
    assert reason in skip.reason
    assert json.loads(skip.raw) == bad


def test_the_amazon_object_still_reads_and_an_array_says_to_use_json(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"B001": {"title": "Pens", "categories": ["Office", "Pens"]}}))
    [item] = read_catalog(path)
    assert (item.item_id, item.category) == ("B001", "Office > Pens")
    path.write_text(json.dumps([{"item_id": "a", "title": "A"}]))
    with pytest.raises(CatalogError, match="--format json"):
        read_catalog(path, "amazon")


@pytest.mark.parametrize(
    ("item_id", "fragment"),
    [
        ("\u200bsku-a2", "begins with the invisible character U+200B"),
        ("sku-a2\ufeff", "ends with the invisible character U+FEFF"),
        ("sku\u202e-1", "bidirectional control U+202E"),
        ("x" * 129, "129 characters, over the limit of 128"),
        ("sku\n1", "control characters"),
    ],
)
def test_item_ids_no_event_can_carry_stop_the_build(tmp_path: Path, item_id: str, fragment: str) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"item_id": item_id, "title": "T"}) + "\n")
    with pytest.raises(CatalogError, match=f"line 1: item_id .*{re.escape(fragment)}"):
        read_catalog(path)


def test_item_ids_are_read_in_nfc_as_events_read_them(tmp_path: Path) -> None:
    nfd = unicodedata.normalize("NFD", "café-1")
    path = tmp_path / "items.jsonl"
    path.write_text(
        json.dumps({"item_id": nfd, "title": "Old"})
        + "\n"
        + json.dumps({"item_id": "café-1", "title": "New"})
        + "\n"
    )
    [item] = read_catalog(path)  # one item: the two spellings are one id
    assert (item.item_id, item.title) == ("café-1", "New")
    assert item.item_id == unicodedata.normalize("NFC", nfd) != nfd
