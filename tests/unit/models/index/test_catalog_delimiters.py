"""Catalogue column separators, as event files have them: ``.tsv``/``.tab`` suffixes, a `delimiter`
through `read_catalog` and `sync_catalog`, decimal commas in ``;``-separated files, and the one
error for a header that reads as one column."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from models.index.catalog import CatalogItem, SkippedRow, read_catalog
from models.index.item_index import load_index, sync_catalog
from stream.core.errors import CatalogError
from tests.unit.models.index.test_item_index import KeywordEncoder

HEADER = ["item_id", "title", "brand", "price", "popularity", "in_stock"]
ROWS = [
    ["17850", "Blue pen, fine", "Bic", "1.5", "12", "true"],
    ["17851", "Desk lamp", "", "24.90", "0.5", "0"],
    ["sku-3", "Clear tape", "Tesa", "", "", ""],
]
EXPECTED = [
    CatalogItem("17850", "Blue pen, fine", brand="Bic", price=1.5, popularity=12.0),
    CatalogItem("17851", "Desk lamp", price=24.9, popularity=0.5, in_stock=False),
    CatalogItem("sku-3", "Clear tape", brand="Tesa"),
]


def write(path: Path, delimiter: str, rows: list[list[str]] = ROWS, header: list[str] = HEADER) -> Path:
    """The rows written as a spreadsheet export does: CRLF, cells with the separator quoted."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerows([header, *rows])
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def decimal_commas(rows: list[list[str]]) -> list[list[str]]:
    """Excel in a German or French locale: 1,5 for 1.5 in the numeric cells (the title keeps its)."""
    return [[cell if i == 1 else cell.replace(".", ",") for i, cell in enumerate(row)] for row in rows]


SEPARATORS = [
    pytest.param(",", ".csv", id="comma"),
    pytest.param(";", ".csv", id="semicolon"),
    pytest.param("\t", ".csv", id="tab-in-csv"),
    pytest.param("\t", ".tsv", id="tsv"),
    pytest.param("\t", ".tab", id="tab-suffix"),
    pytest.param("|", ".csv", id="pipe"),
    pytest.param("|", ".TSV", id="upper-case-suffix-pipe-given"),
]


@pytest.mark.parametrize(("delimiter", "suffix"), SEPARATORS)
def test_every_separator_reads_the_same_items(tmp_path: Path, delimiter: str, suffix: str) -> None:
    path = write(tmp_path / f"items{suffix}", delimiter)
    given = "|" if suffix == ".TSV" else None  # a .tsv suffix says tab: another separator is given
    assert read_catalog(path, delimiter=given) == EXPECTED
    # The separator given outright (as --delimiter passes it) reads the same.
    named = {"\t": "tab", "|": "|", ",": ",", ";": ";"}[delimiter]
    assert read_catalog(path, delimiter=named) == EXPECTED


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(decimal_commas(ROWS), id="decimal-commas"),
        pytest.param(ROWS, id="decimal-points"),
        pytest.param(
            [["17850,0", *decimal_commas(ROWS)[0][1:]], *decimal_commas(ROWS)[1:]], id="id-as-float"
        ),
    ],
)
@pytest.mark.parametrize("given", [None, "auto", ";"])
def test_a_semicolon_export_reads_decimal_commas(
    tmp_path: Path, rows: list[list[str]], given: str | None
) -> None:
    path = write(tmp_path / "items.csv", ";", rows)
    assert read_catalog(path, delimiter=given) == EXPECTED


def test_decimal_commas_are_read_only_in_a_semicolon_file_and_only_in_numbers(tmp_path: Path) -> None:
    # A comma-separated file's "1,5" is a quoted cell: no number for popularity; a price is read as
    # shops write prices (price-parser: decimal comma or thousands separators).
    path = write(tmp_path / "items.csv", ",", [["a", "Pen", "", "1,5", "", ""]])
    assert read_catalog(path)[0].price == 1.5
    # A tab file with decimal commas is not guessed at either.
    path = write(tmp_path / "items.tsv", "\t", [["a", "Pen", "", "", "3,5", ""]])
    skipped: list[SkippedRow] = []
    assert read_catalog(path, skipped=skipped)[0].popularity == 0.0
    assert [(s.field, "popularity '3,5' is not a number" in s.reason) for s in skipped] == [
        ("popularity", True)
    ]
    # An id that is not whole stays text, and a thousands separator is no decimal comma.
    path = write(tmp_path / "items.csv", ";", [["12,5", "Pen", "", "", "", ""]])
    assert read_catalog(path)[0].item_id == "12,5"
    path = write(tmp_path / "items.csv", ";", [["a", "Pen", "", "1.234,50", "", ""]])
    assert read_catalog(path)[0].price == 1234.5


@pytest.mark.parametrize(
    ("written", "suffix", "given", "fix"),
    [
        pytest.param(";", ".tsv", None, "--delimiter ';'", id="semicolons-in-a-tsv"),
        pytest.param("|", ".tab", None, "--delimiter '|'", id="pipes-in-a-tab-file"),
        pytest.param(";", ".csv", ",", "--delimiter ';'", id="semicolons-read-as-commas"),
        pytest.param("\t", ".csv", ";", "--delimiter tab", id="tabs-read-as-semicolons"),
    ],
)
def test_a_one_column_header_names_the_delimiter_to_pass(
    tmp_path: Path, written: str, suffix: str, given: str | None, fix: str
) -> None:
    path = write(tmp_path / f"items{suffix}", written)
    with pytest.raises(CatalogError, match=rf"line 1: the header reads as one column.*pass {fix}$"):
        read_catalog(path, delimiter=given)


@pytest.mark.parametrize("bad", ["::", "semicolon", '"', "\n"])
def test_a_bad_delimiter_is_named(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path / "items.csv", ",")
    with pytest.raises(CatalogError, match=r"--delimiter .*: not a column separator"):
        read_catalog(path, delimiter=bad)


def test_an_explicit_csv_format_detects_the_separator_whatever_the_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "items.txt", ";", decimal_commas(ROWS))
    with pytest.raises(CatalogError, match=r"use \.jsonl, \.csv \(\.tsv, \.tab\)"):
        read_catalog(path)
    assert read_catalog(path, "csv") == EXPECTED


def test_other_formats_ignore_the_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"item_id": "a", "title": "Pen", "price": 1.5}\n')
    assert read_catalog(path, delimiter=";") == [CatalogItem("a", "Pen", price=1.5)]


@pytest.mark.parametrize(
    ("delimiter", "suffix", "given"), [(";", ".csv", None), ("\t", ".tab", None), ("|", ".csv", "|")]
)
def test_sync_catalog_takes_the_delimiter(
    tmp_path: Path, delimiter: str, suffix: str, given: str | None
) -> None:
    rows = decimal_commas(ROWS) if delimiter == ";" else ROWS
    catalog = write(tmp_path / f"items{suffix}", delimiter, rows)
    encoder = KeywordEncoder()
    stats = sync_catalog(tmp_path / "index", catalog, encoder, delimiter=given)
    assert stats.added == 3
    index = load_index(tmp_path / "index", encoder.model_version)
    assert index.ids == ("17850", "17851", "sku-3")
    assert index.popularity.tolist() == [12.0, 0.5, 0.0]
    assert index.in_stock.tolist() == [True, False, True]
    wrong = ";" if delimiter != ";" else ","
    with pytest.raises(CatalogError, match="the header reads as one column"):
        sync_catalog(tmp_path / "index", catalog, encoder, delimiter=wrong)
