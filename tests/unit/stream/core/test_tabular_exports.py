"""Public data set exports the tabular reader and value rules used to misread: headerless files
(Taobao's UserBehavior.csv, YOOCHOOSE's .dat), missing-value markers (Diginetica's userId "NA",
pandas' and SQL's NULL spellings) and ``.json`` event files (JSON lines or one array)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.core.errors import InvalidEvent, SourceError
from stream.core.tabular import (
    MISSING_MARKERS,
    ColumnMap,
    ReadTally,
    RowRules,
    format_of,
    parse_columns,
    read_rows,
    to_v1_doc,
)
from stream.core.tabular import reader as reader_module

TAOBAO = (
    "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,pv,1511561733\n100,1603476,2951233,buy,1511680485\n"
)
TAOBAO_NAMES = ("user_id", "item_id", "category_id", "type", "ts")
# pandas' default na_values, plus MySQL's and Hive's \N (the empty cell is absent already).
PANDAS_NA_VALUES = [
    "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
    "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null", "\\N",
]  # fmt: skip
COLUMNS = ColumnMap(
    user_col="user", ts_col="ts", item_col="item", type_col="type", query_col="q", session_col="s"
)


def row(**cells: str) -> dict[str, str]:
    base = {"user": "u1", "ts": "2016-05-09", "item": "i1", "type": "view", "q": "", "s": ""}
    return {**base, **cells}


def test_headerless_csv_read_with_column_names_keeps_its_first_row(tmp_path: Path) -> None:
    path = tmp_path / "UserBehavior.csv"
    path.write_text(TAOBAO, encoding="utf-8")
    tally = ReadTally()
    rows = list(read_rows(path, columns=TAOBAO_NAMES, tally=tally))
    assert [r.number for r in rows] == [1, 2, 3]
    assert rows[0].values == dict(
        zip(TAOBAO_NAMES, ["1", "2268318", "2520377", "pv", "1511544070"], strict=True)
    )
    assert tally.warnings == []


def test_header_that_looks_like_data_is_a_warning_naming_columns(tmp_path: Path) -> None:
    path = tmp_path / "UserBehavior.csv"
    path.write_text(TAOBAO, encoding="utf-8")
    tally = ReadTally()
    assert len(list(read_rows(path, tally=tally))) == 2  # the first row went into the header
    assert len(tally.warnings) == 1 and "--columns" in tally.warnings[0], tally.warnings
    assert "'2268318'" in tally.warnings[0]


def test_yoochoose_dat_is_csv_and_its_time_header_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "yoochoose-clicks.dat"
    path.write_text("1,2014-04-07T10:51:09.277Z,214536502,0\n2,2014-04-07T13:56:37.614Z,214662742,S\n")
    assert format_of(path) == "csv"
    tally = ReadTally()
    rows = list(read_rows(path, columns=("session", "ts", "item", "category"), tally=tally))
    assert [r.values["item"] for r in rows] == ["214536502", "214662742"]
    list(read_rows(path, tally=tally))
    assert any("--columns" in warning for warning in tally.warnings)


def test_a_named_header_is_no_warning_and_a_header_matching_columns_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "named.csv"
    path.write_text("user_id,item_id,ts\nu1,i1,2016-05-09\n", encoding="utf-8")
    tally = ReadTally()
    assert [r.number for r in read_rows(path, tally=tally)] == [2]
    assert tally.warnings == []
    assert [r.values for r in read_rows(path, columns=("user_id", "item_id", "ts"))] == [
        {"user_id": "u1", "item_id": "i1", "ts": "2016-05-09"}
    ]


@pytest.mark.parametrize("text", ["user_id,,ts", "user_id,ts,user_id", ""])
def test_bad_column_names_are_refused_naming_the_option(text: str) -> None:
    with pytest.raises(SourceError, match="--columns"):
        parse_columns(text)


def test_column_names_for_a_jsonl_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"user_id": "u1"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match="--columns"):
        list(read_rows(path, columns=("user_id",)))


def test_marker_list_is_pandas_default_na_values_plus_backslash_n() -> None:
    assert set(PANDAS_NA_VALUES) <= MISSING_MARKERS


@pytest.mark.parametrize("marker", PANDAS_NA_VALUES)
def test_a_marker_in_the_user_column_rejects_the_row_naming_the_field(marker: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        to_v1_doc(row(user=marker), COLUMNS, RowRules())
    assert caught.value.field == "user_id"
    assert "missing-value marker" in caught.value.reason and repr(marker) in caught.value.reason


@pytest.mark.parametrize("marker", ["NA", "nan", "\\N", "NULL"])
def test_a_marker_in_an_optional_column_is_absent(marker: str) -> None:
    doc = to_v1_doc(row(s=marker, q=marker), COLUMNS, RowRules())
    assert "session_id" not in doc and "query" not in doc
    assert doc["user_id"] == "u1"


def test_a_marker_item_rejects_a_view_but_not_a_search() -> None:
    with pytest.raises(InvalidEvent) as caught:
        to_v1_doc(row(item="nan"), COLUMNS, RowRules())
    assert caught.value.field == "item_id" and "missing-value marker" in caught.value.reason
    doc = to_v1_doc(row(item="NA", type="search", q="lamp"), COLUMNS, RowRules())
    assert "item_id" not in doc and doc["query"] == "lamp"
    # A search's query is read as written: "None" is what was searched for.
    assert to_v1_doc(row(type="search", q="None"), COLUMNS, RowRules())["query"] == "None"


def test_a_marker_time_rejects_the_row_naming_ts_ms() -> None:
    with pytest.raises(InvalidEvent) as caught:
        to_v1_doc(row(ts="NaN"), COLUMNS, RowRules())
    assert caught.value.field == "ts_ms" and "missing-value marker" in caught.value.reason


def test_json_array_file_is_read_element_by_element(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    path.write_text(' \n[{"user_id":"u1","ts":1},{"user_id":"u2","ts":2}, 3]', encoding="utf-8")
    tally = ReadTally()
    rows = list(read_rows(path, tally=tally))
    assert [(r.number, r.values["user_id"]) for r in rows] == [(1, "u1"), (2, "u2")]
    assert tally.malformed == 1 and "element 3" in tally.first_malformed[0]


def test_json_file_of_json_lines_is_read_as_lines(tmp_path: Path) -> None:
    path = tmp_path / "reviews_Office_Products_5.json"
    path.write_text('{"reviewerID": "A1", "asin": "B1"}\n{\'reviewerID\': \'A2\'}\n{"reviewerID": "A3"}\n')
    tally = ReadTally()
    assert [r.values["reviewerID"] for r in read_rows(path, tally=tally)] == ["A1", "A3"]
    assert tally.malformed == 1 and "Python dict" in tally.first_malformed[0]


def test_json_array_over_the_limit_is_refused_with_the_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "MAX_JSON_ARRAY_BYTES", 16)
    path = tmp_path / "records.json"
    path.write_text('[{"user_id":"u1","ts":1},{"user_id":"u2","ts":2}]', encoding="utf-8")
    with pytest.raises(SourceError, match="JSON lines"):
        list(read_rows(path))


def test_broken_json_array_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    path.write_text('[{"user_id":"u1"},', encoding="utf-8")
    with pytest.raises(SourceError, match="JSON array"):
        list(read_rows(path))


def test_a_float_nan_from_parquet_is_a_missing_value() -> None:
    with pytest.raises(InvalidEvent) as caught:
        to_v1_doc({**row(), "user": float("nan")}, COLUMNS, RowRules())
    assert caught.value.field == "user_id" and "missing-value marker" in caught.value.reason
    assert "session_id" not in to_v1_doc({**row(), "s": float("nan")}, COLUMNS, RowRules())


def test_parquet_text_written_as_binary_without_utf8_annotation_is_read_as_text(tmp_path: Path) -> None:
    # Hive, Impala and Spark write string columns as BINARY without the UTF8 annotation.
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    path = tmp_path / "hive.parquet"
    table = pa.table(
        {
            "user_id": pa.array([b"u1", "caf\u00e9".encode(), b"u3"], type=pa.binary()),
            "type": pa.array([b"view", b"view", b"view"], type=pa.large_binary()),
            "item_id": pa.array([b"sku-1", b"sku-2", b"sku-\xe9"], type=pa.binary()),
            "ts_ms": [1_764_000_000_000] * 3,
        }
    )
    pq.write_table(table, path)
    rows = [row.values for row in read_rows(path)]
    assert [(r["user_id"], r["type"], r["item_id"]) for r in rows[:2]] == [
        ("u1", "view", "sku-1"),
        ("caf\u00e9", "view", "sku-2"),
    ]
    # Bytes that are not UTF-8 stay bytes: the value rules reject that row alone, naming the field.
    assert rows[2]["item_id"] == b"sku-\xe9"
