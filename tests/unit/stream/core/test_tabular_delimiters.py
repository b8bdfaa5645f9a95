"""Column separators of CSV files: detection, the --delimiter value, the one-column header error,
and decimal commas of ';'-separated exports, through the real reader."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.core.errors import InvalidEvent, SourceError
from stream.core.tabular import (
    DELIMITERS,
    SNIFF_CHARS,
    ReadTally,
    RowRules,
    csv_delimiter,
    csv_options,
    detect_delimiter,
    normalise_v1,
    parse_delimiter,
    read_rows,
)

TS = 1_796_006_133_034
NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
OPTION = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
HEADER = ["event_id", "user_id", "type", "query", "ts_ms"]
# Every query holds the other separators (and quotes): quoted where the file's own separator
# or a quote is inside, bare otherwise.
QUERIES = ["red, blue; green | tab\there", 'a "quoted" word', "plain", "semi;colon", "pipe|d", "com,ma"]


def table(delimiter: str, *, header: list[str] = HEADER) -> tuple[str, list[dict[str, str]]]:
    rows = [
        {"event_id": f"e{n}", "user_id": "u1", "type": "search", "query": query, "ts_ms": str(TS + n)}
        for n, query in enumerate(QUERIES)
    ]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([[row[name] for name in HEADER] for row in rows])
    return out.getvalue(), [dict(zip(header, row.values(), strict=True)) for row in rows]


def read(path: Path, **kwargs: Any) -> list[dict[str, Any]]:
    return [row.values for row in read_rows(path, **kwargs)]


# --- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", DELIMITERS, ids=NAMES.get)
def test_each_separator_is_detected_and_quoted_cells_keep_the_others(tmp_path: Path, delimiter: str) -> None:
    text, expected = table(delimiter)
    path = tmp_path / "e.csv"
    path.write_text(text, newline="")
    assert csv_delimiter(path) == delimiter
    assert read(path) == expected
    assert read(path, delimiter="auto") == expected


@pytest.mark.parametrize("delimiter", DELIMITERS, ids=NAMES.get)
@pytest.mark.parametrize(
    ("encoding", "query"),
    [
        ("utf-8-sig", "café crème"),  # Excel's "CSV UTF-8": a byte-order mark before the header
        ("cp1252", "POSTAGE £ CHARGE CAFÉ"),  # Excel's plain "CSV" on Windows
        ("latin-1", "crème brûlée"),
        ("utf-16", "café ünïcödé"),  # Excel's "Unicode text" (tab-separated)
    ],
)
def test_separators_with_a_bom_and_other_encodings(
    tmp_path: Path, delimiter: str, encoding: str, query: str
) -> None:
    text, expected = table(delimiter)
    text = text.replace("plain", query)
    path = tmp_path / "e.csv"
    path.write_bytes(text.encode(encoding))
    option = "utf-8" if encoding == "utf-8-sig" else encoding
    found = read(path, encoding=option)
    assert list(found[0]) == HEADER  # the BOM does not stick to the first column's name
    assert [row["query"] for row in found] == [row["query"].replace("plain", query) for row in expected]


@pytest.mark.parametrize("suffix", [".tsv", ".tab", ".TSV"])
def test_tsv_and_tab_suffixes_are_tab_separated_whatever_the_cells_hold(tmp_path: Path, suffix: str) -> None:
    # A comma in the header and on every line: sniffed, ',' would win the tie with tab.
    text = "user,name\tts\nu1,x\t1\nu2,y\t2\n"
    tsv = tmp_path / f"e{suffix}"
    tsv.write_text(text)
    assert read(tsv) == [{"user,name": "u1,x", "ts": "1"}, {"user,name": "u2,y", "ts": "2"}]
    same_as_csv = tmp_path / "e.csv"
    same_as_csv.write_text(text)
    assert read(same_as_csv) == [{"user": "u1", "name\tts": "x\t1"}, {"user": "u2", "name\tts": "y\t2"}]


@pytest.mark.parametrize(
    ("text", "option", "expected"),
    [
        # Detection reads ',' (a tie with '|', which goes to ','); the option says '|'.
        ("name,size|weight\nshirt,M|200g\n", "|", [{"name,size": "shirt,M", "weight": "200g"}]),
        # Detection reads tab (the only one on every line); the option says ','.
        ("a\tb,c\n1\t2,3\n4\t5\n", ",", [{"a\tb": "1\t2", "c": "3"}]),
        # A .tsv file read with ';' because the option says so.
        ("a;b\tc\n1;2\t3\n", ";", [{"a": "1", "b\tc": "2\t3"}]),
        # Detection reads ',' (a tie with tab); the option says tab, by either name.
        ("a\tb,c\n1\t2,3\n", "tab", [{"a": "1", "b,c": "2,3"}]),
        ("a\tb,c\n1\t2,3\n", "\\t", [{"a": "1", "b,c": "2,3"}]),
    ],
)
def test_the_option_overrides_detection_and_the_suffix(
    tmp_path: Path, text: str, option: str, expected: list[dict[str, str]]
) -> None:
    path = tmp_path / ("e.tsv" if option == ";" else "e.csv")
    path.write_text(text)
    assert read(path, delimiter=option) == expected
    assert read(path) != expected


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("", ","),
        ("\n\n", ","),
        ("item_id\n1\n2\n", ","),  # one column: nothing to split, the default
        ("a;b;c", ";"),  # the header alone
        ("\ufeffa|b|c\n1|2|3\n", "|"),
        ("a,b\n1,2\n", ","),
        ("a\tb\n1\t2\n", "\t"),
        # Decimal commas on every row, never in the header: ';' is the one on every line.
        ("id;ts_ms;v\n" + "".join(f"e{n};1796006133034,{n};1,0\n" for n in range(12)), ";"),
        # A comma file whose every row quotes a ';': the quotes show the separator.
        ("id,query\n" + "".join(f'e{n},"a;b;c"\n' for n in range(5)), ","),
        # A ';' file whose every row quotes a ','.
        ("id;query\n" + "".join(f'e{n};"a,b,c"\n' for n in range(5)), ";"),
        # Unquoted commas in the query of a '|' file, none in the header.
        ("id|query|ts\n" + "".join(f"e{n}|red, blue|{n}\n" for n in range(5)), "|"),
        # Apostrophes look like quotes to the sniffer; the header decides.
        ("id;q\n" + "".join(f"e{n};kids', 'toys',\n" for n in range(5)), ";"),
        # A separator the sniffer would pick that does not split the header is not taken.
        ("a;b\n" + "".join(f"1,{n};2,{n}\n" for n in range(5)), ";"),
    ],
)
def test_detect_delimiter(sample: str, expected: str) -> None:
    assert detect_delimiter(sample) == expected
    assert detect_delimiter(sample) == expected  # deterministic


def test_detection_reads_a_bounded_sample(tmp_path: Path) -> None:
    # The sniffer's quote patterns are quadratic: 1 MB of them would take hours if all were read.
    path = tmp_path / "e.csv"
    path.write_text("a;b\n" + ';"x' * 400_000 + "\n")
    started = time.perf_counter()
    assert csv_delimiter(path) == ";"
    assert time.perf_counter() - started < 5
    assert SNIFF_CHARS <= 8192


headers = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True), min_size=2, max_size=6, unique=True)
cells = st.text(alphabet=st.sampled_from(list("ab1 ,;\t|\"'.-")), max_size=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    delimiter=st.sampled_from(DELIMITERS),
    header=headers,
    data=st.data(),
    line_end=st.sampled_from(["\n", "\r\n"]),
)
def test_fuzz_any_table_written_with_any_separator_reads_back(
    tmp_path: Path, delimiter: str, header: list[str], data: st.DataObject, line_end: str
) -> None:
    body = data.draw(st.lists(st.lists(cells, min_size=len(header), max_size=len(header)), max_size=15))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=line_end)
    writer.writerow(header)
    writer.writerows(body)
    path = tmp_path / "fuzz.csv"
    path.write_text(out.getvalue(), newline="")
    tally = ReadTally()
    found = [row.values for row in read_rows(path, tally=tally)]

    # Rows of blank cells are skipped by rule; every other row comes back as written, but for the
    # spaces that begin an unquoted cell ("a, b": skipinitialspace reads them away).
    def read_back(cell: str) -> str:
        quoted = any(char in cell for char in (delimiter, '"', "\r", "\n"))
        return cell if quoted else cell.lstrip(" ")

    assert found == [
        dict(zip(header, map(read_back, row), strict=True))
        for row in body
        if any(cell.strip() for cell in row)
    ]
    assert tally.malformed == 0


# --- the option's values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("auto", None), ("AUTO", None), ("tab", "\t"), ("TAB", "\t"), ("\\t", "\t"), ("\t", "\t")]
    + [(d, d) for d in (",", ";", "|", ":", " ")],
)
def test_delimiter_values(text: str, expected: str | None) -> None:
    assert parse_delimiter(text) == expected


@pytest.mark.parametrize("text", ["", ";;", "comma", '"', "\n", "\r", "\\n"])
def test_bad_delimiter_values_name_the_option_and_what_it_takes(tmp_path: Path, text: str) -> None:
    with pytest.raises(SourceError, match=r"--delimiter .*auto.*tab.*one character"):
        parse_delimiter(text)
    path = tmp_path / "e.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match="--delimiter"):
        list(read_rows(path, delimiter=text))


def test_the_option_is_ignored_by_jsonl_and_parquet(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"a": "1;2", "b": 2}\n')
    assert read(path, delimiter=";") == [{"a": "1;2", "b": 2}]
    assert csv_options(path, RowRules(), delimiter=";") == (";", RowRules())


# --- a header that reads as one column ----------------------------------------------------------


@pytest.mark.parametrize(
    ("real", "given"),
    [(real, given) for real in DELIMITERS for given in DELIMITERS if real != given],
    ids=lambda d: NAMES[d],
)
def test_a_header_read_as_one_column_names_the_separator_and_the_option(
    tmp_path: Path, real: str, given: str
) -> None:
    text, _ = table(real)
    path = tmp_path / "e.csv"
    path.write_text("\n" + text, newline="")  # a blank line first: the header is line 2
    rows = read_rows(path, delimiter=given)
    with pytest.raises(SourceError) as raised:
        next(rows)  # before any row: nothing is half-loaded
    message = str(raised.value)
    assert message.startswith(f"{path} line 2: the header reads as one column")
    assert message.endswith(f"pass --delimiter {OPTION[real]}")
    assert f"into {len(HEADER)} columns" in message


def test_a_real_one_column_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("item_id\nsku-1\nsku-2\n")
    assert read(path) == [{"item_id": "sku-1"}, {"item_id": "sku-2"}]
    assert read(path, delimiter=";") == [{"item_id": "sku-1"}, {"item_id": "sku-2"}]


# --- decimal commas ('; '-separated exports) ------------------------------------------------------


def test_a_semicolon_file_reads_decimal_commas_and_others_do_not(tmp_path: Path) -> None:
    for delimiter in DELIMITERS:
        path = tmp_path / f"{NAMES[delimiter]}.csv"
        path.write_text(f"a{delimiter}b\n1{delimiter}2\n")
        chosen, rules = csv_options(path, RowRules())
        assert (chosen, rules.decimal_comma) == (delimiter, delimiter == ";")
    # The option's separator counts, not the detected one.
    path = tmp_path / "comma.csv"
    assert csv_options(path, RowRules(), delimiter=";")[1].decimal_comma
    assert not csv_options(tmp_path / "semicolon.csv", RowRules(), delimiter=",")[1].decimal_comma


DECIMAL = RowRules(decimal_comma=True)


@pytest.mark.parametrize(
    ("field", "cell", "expected"),
    [
        ("user_id", "90001,0", "90001"),
        ("user_id", "90001,000", "90001"),
        ("item_id", "-17850,0", "-17850"),
        ("session_id", "7,0", "7"),
        ("event_id", "12,0", "12"),
        ("user_id", "12,5", "12,5"),  # not a whole number: text, as "12.5" is
        ("user_id", "90001", "90001"),
        ("user_id", "90001.0", "90001"),  # a point still reads as a point
        ("ts_ms", "1796006133034,0", TS),
        ("ts_ms", "1796006133034,000", TS),
        ("ts_ms", "1796006133034.0", TS),
        ("v", "1,0", 1),
        ("query", "3,5", "3,5"),  # text fields keep their text
    ],
)
def test_decimal_commas_read_as_points_in_number_fields(field: str, cell: str, expected: object) -> None:
    doc = {"event_id": "e", "user_id": "u", "type": "search", "query": "q", "ts_ms": str(TS)} | {field: cell}
    assert normalise_v1(doc, DECIMAL, empty_is_absent=True)[field] == expected


def test_decimal_comma_times_follow_the_unit_and_fractions_are_rejects_naming_the_field() -> None:
    doc = {"event_id": "e", "user_id": "u", "type": "view", "item_id": "i"}
    seconds = RowRules(ts_unit="s", decimal_comma=True)
    assert (
        normalise_v1(doc | {"ts_ms": "1796006133,5"}, seconds, empty_is_absent=True)["ts_ms"]
        == 1_796_006_133_500
    )
    assert (
        normalise_v1(doc | {"ts_ms": "1796006133034,5"}, DECIMAL, empty_is_absent=True)["ts_ms"]
        == 1_796_006_133_034  # a fraction of a ms floored, as everywhere
    )
    for name, cell in (("ts_ms", "1796006133,5"), ("v", "1,5")):
        with pytest.raises(InvalidEvent) as raised:
            normalise_v1(doc | {"ts_ms": str(TS), name: cell}, DECIMAL, empty_is_absent=True)
        assert raised.value.field == name
        assert "whole" in raised.value.reason


def test_without_a_semicolon_a_decimal_comma_is_not_a_number() -> None:
    # In a comma, tab or pipe file (or JSON) "1,000" may be a thousands separator: no guessing.
    doc = {"event_id": "e", "user_id": "90001,0", "type": "view", "item_id": "i", "ts_ms": str(TS)}
    assert normalise_v1(doc, RowRules(), empty_is_absent=True)["user_id"] == "90001,0"
    with pytest.raises(InvalidEvent) as raised:
        normalise_v1(doc | {"ts_ms": "1796006133034,0"}, RowRules(), empty_is_absent=True)
    assert raised.value.field == "ts_ms"
