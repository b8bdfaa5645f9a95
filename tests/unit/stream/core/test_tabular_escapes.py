"""CSV files whose quoted cells escape a quote with a backslash (\\", Spark's, Hive's and MySQL's
default) instead of doubling it (""): read so when the file shows it, never silently misread.
Before, ``"gel \\"pro\\" pens"`` was read as ``gel \\pro\\" pens"``."""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from stream.cli.main import main
from stream.core.tabular import ReadTally, read_rows
from stream.core.tabular.reader import (
    ESCAPE_SAMPLE_CHARS,
    ESCAPED_IN_CSV,
    ESCAPED_OUTSIDE_QUOTES,
    MAX_ROW_CHARS,
    doubled_quotes,
)
from tests.unit.stream.entry_points import _replayed

TS = "1764000000000"
HEADER = "event_id,user_id,type,query,ts_ms\n"


def spark_cell(value: str) -> str:
    """A quoted cell as Spark's CSV writer spells it (escape and charToEscapeQuoteEscaping both a
    backslash): a quote escaped, a backslash before a quote or at the cell's end escaped too."""
    body = re.sub(r'(\\*)"', lambda run: run[1] * 2 + '\\"', value)
    body = re.sub(r"(\\+)\Z", lambda run: run[1] * 2, body)
    return f'"{body}"'


MONITOR = spark_cell('27" monitor, curved')
TV = spark_cell('27" tv')


def read(path: Path) -> tuple[list[dict[str, str]], ReadTally]:
    tally = ReadTally()
    return [row.values for row in read_rows(path, tally=tally)], tally


QUERIES = [
    '27" monitor, curved',
    '"quoted" start',
    "ends with a backslash \\",
    'two\nlines "x"',
    'a backslash before a quote \\"',
    "C:\\temp\\file",
]


def test_a_file_that_escapes_quotes_with_a_backslash_is_read_so(tmp_path: Path) -> None:
    path = tmp_path / "spark.csv"
    lines = [f"e{i},u1,search,{spark_cell(q)},{TS}\n" for i, q in enumerate(QUERIES)]
    path.write_text(HEADER + "".join(lines) + f"e9,u1,search,C:\\plain\\cell,{TS}\n", encoding="utf-8")
    got, tally = read(path)
    assert [row["query"] for row in got] == [*QUERIES, "C:\\plain\\cell"]
    assert tally.malformed == 0
    assert any("escaped with a backslash" in warning for warning in tally.warnings)


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_other_separators_too(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "spark.csv"
    cells = [
        ["event_id", "user_id", "type", "query", "ts_ms"],
        ["e1", "u1", "search", spark_cell('27" tv'), TS],
    ]
    path.write_text("".join(delimiter.join(row) + "\n" for row in cells), encoding="utf-8")
    got, _ = read(path)
    assert got[0]["query"] == '27" tv'


def test_a_csv_file_keeps_csv_rules_where_a_backslash_ends_a_cell(tmp_path: Path) -> None:
    # RFC 4180: a backslash is an ordinary character, here ending a quoted cell before its
    # separator; a doubled quote inside a cell settles the question.
    path = tmp_path / "rfc.csv"
    path.write_text(HEADER + f'e1,u1,search,"C:\\",{TS}\ne2,u1,search,"say ""hi""",{TS}\n', encoding="utf-8")
    got, tally = read(path)
    assert [row["query"] for row in got] == ["C:\\", 'say "hi"']
    assert tally.warnings == []


def test_through_replay_from_a_compressed_file_the_query_keeps_its_quotes(tmp_path: Path) -> None:
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write(f"{HEADER}e1,u1,search,{MONITOR},{TS}\n")
    outcome = _replayed(path)
    assert outcome.accepted, outcome
    assert isinstance(outcome.value, dict)
    assert outcome.value["query"] == '27" monitor, curved'


def test_an_over_long_escaped_row_is_skipped_alone(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    long_cell = spark_cell('x"' * (MAX_ROW_CHARS // 2 + 10))
    path.write_text(HEADER + f"e1,u1,search,{long_cell},{TS}\ne2,u1,search,{TV},{TS}\n", encoding="utf-8")
    got, tally = read(path)
    assert [row["query"] for row in got] == ['27" tv']
    assert tally.malformed == 1


def test_skipping_an_over_long_line_inside_a_quoted_cell_counts_escaped_quotes_as_one(tmp_path: Path) -> None:
    # The cell opens on line 2 and closes on line 4; line 3 is over the limit with an odd number of
    # escaped quotes. Counted as raw quote characters, line 3 would seem to close the cell and
    # line 4's quote would open one that swallows the next row.
    path = tmp_path / "long.csv"
    odd = MAX_ROW_CHARS // 3 + 1
    odd += 1 - odd % 2
    over_long = 'x\\"' * odd
    path.write_text(
        HEADER + f'e1,u1,search,"start\n{over_long}\nend",{TS}\ne2,u1,search,{TV},{TS}\n', encoding="utf-8"
    )
    got, tally = read(path)
    assert [row["query"] for row in got] == ['27" tv']
    assert tally.malformed == 1


@given(st.text(alphabet=st.sampled_from(['"', "\\", "a", ",", "\n", " "]), max_size=30))
def test_any_spark_cell_reads_back_as_written(value: str) -> None:
    text = f"{spark_cell(value)},end\n"
    lines = [doubled_quotes(line) for line in text.splitlines(keepends=True)]
    assert next(csv.reader(lines)) == [value, "end"]


def test_an_escaped_quote_after_the_first_mib_rejects_its_row_alone(tmp_path: Path) -> None:
    # The file was read as CSV: a later row that escapes with a backslash cannot be read right.
    path = tmp_path / "late.csv"
    plain = "".join(f"p{i},u1,search,plain query {i},{TS}\n" for i in range(ESCAPE_SAMPLE_CHARS // 30))
    path.write_text(HEADER + plain + f"x1,u1,search,{TV},{TS}\nx2,u1,search,after,{TS}\n", encoding="utf-8")
    got, tally = read(path)
    assert [row["query"] for row in got[-1:]] == ["after"]
    assert not any(row["event_id"] == "x1" for row in got)
    assert tally.malformed == 1 and ESCAPED_IN_CSV in tally.first_malformed[0]


def test_in_a_file_that_doubles_quotes_a_backslash_escaped_row_is_rejected_alone(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        HEADER + f'e1,u1,search,"the ""best"" tv",{TS}\ne2,u1,search,{TV},{TS}\n', encoding="utf-8"
    )
    got, tally = read(path)
    assert [row["query"] for row in got] == ['the "best" tv']
    assert tally.malformed == 1 and ESCAPED_IN_CSV in tally.first_malformed[0]


def test_a_backslash_before_a_doubled_quote_is_csv(tmp_path: Path) -> None:
    # What csv.writer writes for the value 5\" screen: a backslash, then a doubled quote.
    path = tmp_path / "rfc.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([HEADER.strip().split(","), ["e1", "u1", "search", '5\\" screen', TS]])
    got, tally = read(path)
    assert [row["query"] for row in got] == ['5\\" screen']
    assert tally.warnings == [] and tally.malformed == 0


def test_replay_prints_the_readers_warning(tmp_path: Path) -> None:
    path = tmp_path / "spark.csv"
    path.write_text(HEADER + f"e1,u1,search,{TV},{TS}\n", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["replay", str(path), "--dry-run", "--rejects", str(tmp_path / "r.jsonl")],
        env={"PROFILESTREAM_LOG_LEVEL": "WARNING"},
    )
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "escaped with a backslash" in result.output


def test_in_a_backslash_file_a_row_that_cannot_be_read_for_sure_is_rejected_alone(tmp_path: Path) -> None:
    # An escaped quote outside a quoted cell (27\\" tv), and a CSV-style \\"" among escaped rows
    # (text after the closing quote), were read as 27"" tv and 5" tv".
    path = tmp_path / "spark.csv"
    path.write_text(
        HEADER + f'e1,u1,search,{TV},{TS}\ne2,u1,search,27\\" tv,{TS}\n'
        f'e3,u1,search,"5\\"" tv",{TS}\ne4,u1,search,ok,{TS}\n',
        encoding="utf-8",
    )
    got, tally = read(path)
    assert [row["query"] for row in got] == ['27" tv', "ok"]
    assert tally.malformed == 2
    assert ESCAPED_OUTSIDE_QUOTES[:60] in tally.first_malformed[0]
    assert "line 4: not valid CSV" in tally.first_malformed[1]


def test_escaped_quotes_only_at_the_ends_of_cells_are_read_and_rows_never_merge(tmp_path: Path) -> None:
    # "TV 55\\"": an inch mark ending the cell. Taken for CSV, its quote stayed open and the
    # next row was read into this one's query (a third fresh-eyes pass).
    path = tmp_path / "inches.csv"
    path.write_text(
        HEADER + f'e1,u1,search,"Samsung TV 55\\"",{TS}\ne2,u2,search,"LG OLED 65\\"",{TS}\n',
        encoding="utf-8",
    )
    got, tally = read(path)
    assert [row["query"] for row in got] == ['Samsung TV 55"', 'LG OLED 65"']
    assert tally.malformed == 0
