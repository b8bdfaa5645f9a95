"""The CSV reader against rows one bad line used to derail: a stray quote, Excel's ``sep=`` line,
cells past the csv module's field limit, UTF-16/UTF-32 text without (or with the other) byte-order
mark. Each bad row is rejected alone, naming its line; every other row is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream.core.errors import SourceError
from stream.core.tabular import MAX_ROW_CHARS, ReadTally, csv_delimiter, read_rows

HEADER = ["event_id", "user_id", "type", "query", "ts_ms"]
TS = 1_796_006_117_042
UNBALANCED = "unbalanced quote"


def good_rows(count: int, delimiter: str = ",") -> list[str]:
    return [delimiter.join([f"r{i}", "u1", "search", f"q{i}", str(TS + i)]) for i in range(count)]


def write(path: Path, lines: list[str], *, delimiter: str = ",", end: str = "\n") -> Path:
    path.write_text(end.join([delimiter.join(HEADER), *lines]) + end, newline="")
    return path


def read(path: Path, **kwargs: Any) -> tuple[list[tuple[int, dict[str, Any]]], ReadTally]:
    tally = ReadTally()
    return [(row.number, row.values) for row in read_rows(path, tally=tally, **kwargs)], tally


# --- one stray quote ----------------------------------------------------------------------------


def _stray(delimiter: str, variant: str) -> tuple[list[str], int]:
    """1000 good rows with row 3 (line 4) broken by a quote that opens and never closes; the line
    that is rejected alone."""
    rows = good_rows(1000, delimiter)
    d = delimiter
    if variant == "middle-column":
        rows[2] = d.join(["r2", "u1", "search", '"27 inch monitor', str(TS)])
    elif variant == "last-column":  # the swallowed lines make one huge last cell: the count is right
        rows[2] = d.join(["r2", "u1", "search", "monitor", f'"{TS}'])
    elif variant == "closed-later":  # a later quoted cell closes it: the quote parity flips
        rows[2] = d.join(["r2", "u1", "search", '"27 inch monitor', str(TS)])
        rows[500] = d.join(["r500", "u1", "search", '"desk, lamp"', str(TS)])
    elif variant == "closed-by-another-stray":  # the closing line is itself unbalanced
        rows[2] = d.join(["r2", "u1", "search", '"27 inch monitor', str(TS)])
        rows[500] = d.join(["r500", "u1", "search", '"desk lamp', str(TS)])
        return rows, -1
    elif variant == "mid-cell":  # a quote in the middle of a cell is text; one at its start opens
        rows[2] = d.join(["r2", "u1", "search", '"24" monitor', str(TS)])
    return rows, 4


VARIANTS = ["middle-column", "last-column", "closed-later", "mid-cell"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_a_stray_quote_rejects_its_line_alone(tmp_path: Path, delimiter: str, variant: str, end: str) -> None:
    lines, bad_line = _stray(delimiter, variant)
    path = write(tmp_path / "e.csv", lines, delimiter=delimiter, end=end)
    found, tally = read(path)
    if variant == "mid-cell":
        # csv reads '"24" monitor' as the cell '24 monitor' (not strict): a whole row, nothing lost.
        assert len(found) == 1000 and tally.malformed == 0
        return
    assert len(found) == 999, tally.first_malformed
    assert [n for n, _ in found] == [n for n in range(2, 1002) if n != bad_line]
    assert tally.malformed == 1
    assert tally.first_malformed[0].startswith(f'line {bad_line}: {UNBALANCED}: an opening "')
    assert "fix the quoting" in tally.first_malformed[0]
    assert found[-1][1] == dict(zip(HEADER, ["r999", "u1", "search", "q999", str(TS + 999)], strict=True))


def test_a_stray_quote_closed_by_another_stray_quote_rejects_both_lines_alone(tmp_path: Path) -> None:
    lines, _ = _stray(",", "closed-by-another-stray")
    found, tally = read(write(tmp_path / "e.csv", lines))
    assert len(found) == 998
    assert tally.first_malformed == [
        f'line 4: {UNBALANCED}: an opening " without its closing one; fix the quoting or remove the quote',
        f'line 502: {UNBALANCED}: an opening " without its closing one; fix the quoting or remove the quote',
    ]


@pytest.mark.parametrize("rows", [3, 1000, 60_000])
def test_a_stray_quote_in_the_last_row_or_before_more_than_the_limit(tmp_path: Path, rows: int) -> None:
    # 60,000 rows after the quote are more than MAX_ROW_CHARS: the swallowed text would pass the
    # csv module's field limit, which used to lose the rest of the file.
    lines = good_rows(rows)
    lines[2] = f'r2,u1,search,"27 inch monitor,{TS}'
    found, tally = read(write(tmp_path / "e.csv", lines))
    assert (len(found), tally.malformed) == (rows - 1, 1)
    assert tally.first_malformed[0].startswith(f"line 4: {UNBALANCED}")
    lines_eof = good_rows(3)
    lines_eof[-1] = 'r2,u1,search,"unclosed at the end,1'
    found_eof, tally_eof = read(write(tmp_path / "end.csv", lines_eof))
    assert [n for n, _ in found_eof] == [2, 3]
    assert tally_eof.first_malformed[0].startswith(f"line 4: {UNBALANCED}")
    assert found[-1][1]["event_id"] == (f"r{rows - 1}" if rows > 3 else "r1")


@pytest.mark.parametrize(
    "cell",
    [
        "A desk lamp.\nWarm light, 40 W.",
        "line one\n\nafter a blank line",
        "ends with a line break\n",
        "\nstarts with one",
        'with ""quotes"" and, commas\r\nand CRLF',
        "\n".join(f"line {i}, of many" for i in range(200)),
        "u1,search\nr9,u1,search",  # lines inside with some of the header's separators
    ],
)
@pytest.mark.parametrize("column", ["query", "ts_ms"])
def test_quoted_cells_holding_line_breaks_keep_working(tmp_path: Path, cell: str, column: str) -> None:
    lines = good_rows(5)
    values = ["r2", "u1", "search", "q2", str(TS)]
    values[HEADER.index(column)] = '"' + cell.replace('"', '""') + '"' if '""' not in cell else f'"{cell}"'
    lines[2] = ",".join(values)
    found, tally = read(write(tmp_path / "e.csv", lines))
    assert tally.malformed == 0, tally.first_malformed
    assert [n for n, _ in found][:3] == [2, 3, 4]
    expected = cell.replace('""', '"') if '""' in cell else cell
    assert found[2][1][column] == expected
    assert found[-1][1]["event_id"] == "r4"


def test_a_header_whose_quote_never_closes_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text('event_id,"user_id,type\n' + "\n".join(good_rows(3)) + "\n")
    with pytest.raises(SourceError, match=r"line 1: the header has an unbalanced quote"):
        read(path)


# --- long cells and rows ------------------------------------------------------------------------


def test_cells_past_the_csv_modules_default_limit_are_read(tmp_path: Path) -> None:
    lines = good_rows(5)
    lines[1] = f"r1,u1,search,{'x' * 200_000},{TS}"
    lines[2] = f'r2,u1,search,"{"y, " * 100_000}",{TS}'
    found, tally = read(write(tmp_path / "e.csv", lines))
    assert tally.malformed == 0
    assert [len(values["query"]) for _, values in found] == [2, 200_000, 300_000, 2, 2]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(f"r1,u1,search,{'x' * (MAX_ROW_CHARS + 10)},{TS}", id="one-line"),
        pytest.param("x" * (3 * MAX_ROW_CHARS), id="no-cells"),
        pytest.param(f'r1,u1,search,"{"z" * (MAX_ROW_CHARS + 10)}",{TS}', id="quoted-one-line"),
        pytest.param('r1,u1,search,"' + "z\n" * MAX_ROW_CHARS + f'",{TS}', id="quoted-many-lines"),
        pytest.param('r1,u1,search,"' + "a, b\n" * 300_000 + f'",{TS}', id="quoted-many-lines-commas"),
    ],
)
def test_a_row_over_the_limit_is_rejected_alone(tmp_path: Path, bad: str) -> None:
    lines = good_rows(4)
    lines[1] = bad
    found, tally = read(write(tmp_path / "e.csv", lines))
    assert [values["event_id"] for _, values in found] == ["r0", "r2", "r3"]
    assert tally.malformed == 1
    assert tally.first_malformed[0].startswith("line 3: ")
    assert f"{MAX_ROW_CHARS:,} characters" in tally.first_malformed[0]


# --- Excel's sep= line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "delimiter"),
    [("sep=;", ";"), ("sep=,", ","), ("sep=\t", "\t"), ("sep=|", "|"), ("SEP=;", ";"), ("\ufeffsep=;", ";")],
)
@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_an_excel_sep_line_names_the_separator_and_is_skipped(
    tmp_path: Path, first: str, delimiter: str, end: str
) -> None:
    path = tmp_path / "e.csv"
    rows = good_rows(3, delimiter)
    path.write_text(end.join([first, delimiter.join(HEADER), *rows]) + end, newline="")
    assert csv_delimiter(path) == delimiter
    for option in (None, "auto", "tab" if delimiter == "\t" else delimiter):
        found, tally = read(path, delimiter=option)
        assert tally.malformed == 0
        assert [n for n, _ in found] == [3, 4, 5]
        assert found[0][1] == dict(zip(HEADER, ["r0", "u1", "search", "q0", str(TS)], strict=True))


def test_a_delimiter_option_against_the_sep_line_is_an_error_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("sep=;\n" + ";".join(HEADER) + "\n" + "\n".join(good_rows(2, ";")) + "\n")
    with pytest.raises(SourceError, match=r"declares the separator ';'.*--delimiter ','"):
        csv_delimiter(path, delimiter=",")
    with pytest.raises(SourceError, match=r"declares the separator ';'.*--delimiter ','"):
        read(path, delimiter=",")


# --- UTF-16 and UTF-32 --------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_wide_text_without_a_byte_order_mark_names_its_encoding(
    tmp_path: Path, codec: str, suffix: str
) -> None:
    path = tmp_path / f"e{suffix}"
    if suffix == ".csv":
        text = ",".join(HEADER) + "\n" + "\n".join(good_rows(3)) + "\n"
    else:
        text = "".join(f'{{"event_id": "r{i}", "query": "café"}}\n' for i in range(3))
    path.write_bytes(text.encode(codec))
    with pytest.raises(SourceError, match=rf"line 1: holds NUL characters.*--encoding {codec}"):
        list(read_rows(path))
    found, tally = read(path, encoding=codec)
    assert (len(found), tally.malformed) == (3, 0)


@pytest.mark.parametrize("codec", ["utf-32", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("given", ["utf-8", "utf-16", "cp1252"])
def test_a_utf32_byte_order_mark_is_told_apart_from_utf16s(tmp_path: Path, codec: str, given: str) -> None:
    path = tmp_path / "e.csv"
    mark = b"" if codec == "utf-32" else ("\ufeff".encode(codec))
    path.write_bytes(mark + (",".join(HEADER) + "\n" + "\n".join(good_rows(3)) + "\n").encode(codec))
    with pytest.raises(SourceError, match=r"starts with a UTF-32 byte-order mark.*--encoding utf-32$"):
        read(path, encoding=given)
    found, tally = read(path, encoding="utf-32")
    assert (len(found), tally.malformed) == (3, 0)
    assert list(found[0][1]) == HEADER


def test_a_utf16_byte_order_mark_still_names_utf16(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes((",".join(HEADER) + "\n" + "\n".join(good_rows(3)) + "\n").encode("utf-16"))
    with pytest.raises(SourceError, match=r"starts with a UTF-16 byte-order mark.*--encoding utf-16$"):
        read(path)
    assert len(read(path, encoding="utf-16")[0]) == 3
