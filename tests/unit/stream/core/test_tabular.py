"""The one file reader (BOM, encodings, malformed lines) and its value rules (ids, times, types, ids)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.core.errors import ConfigError, InvalidEvent, ProfilestreamError, SourceError, UnmappedEventType
from stream.core.tabular import (
    DEFAULT_TYPE_MAP,
    ColumnMap,
    ReadTally,
    RowRules,
    TsUnit,
    derived_event_id,
    format_of,
    id_text,
    integer_value,
    map_event_type,
    normalise_v1,
    parse_type_map,
    read_jsonl_lines,
    read_rows,
    time_ms,
    to_v1_doc,
)

TS = 1_796_006_133_034
BOM = b"\xef\xbb\xbf"


def rows(path: Path, **kwargs: Any) -> tuple[list[tuple[int, dict[str, Any]]], ReadTally]:
    tally = ReadTally()
    return [(row.number, row.values) for row in read_rows(path, tally=tally, **kwargs)], tally


# --- reader -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_utf8_bom_is_read_away(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"e{suffix}"
    body = "event_id,user\r\ne1,u1\r\n" if suffix == ".csv" else '{"event_id": "e1", "user": "u1"}\r\n'
    path.write_bytes(BOM + body.encode())
    found, _ = rows(path)
    assert found == [(2 if suffix == ".csv" else 1, {"event_id": "e1", "user": "u1"})]


def test_jsonl_lines_concatenated_with_their_boms_lose_each_bom(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(BOM + b'{"a": 1}\n' + BOM + b'{"a": 2}\n')
    assert list(read_jsonl_lines(path)) == [(1, b'{"a": 1}'), (2, b'{"a": 2}')]


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1252", "POSTAGE £ CHARGE CAFÉ"),
        ("latin-1", "crème brûlée"),
        ("utf-16", "café ünïcödé 😀"),
        ("cp1251", "кофе"),
        ("shift_jis", "コーヒー"),
    ],
)
def test_other_encodings_with_the_encoding_option(tmp_path: Path, encoding: str, text: str) -> None:
    csv_path = tmp_path / "e.csv"
    csv_path.write_bytes(f"id,title\r\n1,{text}\r\n".encode(encoding))
    assert rows(csv_path, encoding=encoding)[0] == [(2, {"id": "1", "title": text})]
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_bytes((json.dumps({"title": text}, ensure_ascii=False) + "\n").encode(encoding))
    assert rows(jsonl, encoding=encoding)[0] == [(1, {"title": text})]
    # JSONL lines come out as UTF-8 whatever the file's encoding.
    assert [raw for _, raw in read_jsonl_lines(jsonl, encoding)] == [
        json.dumps({"title": text}, ensure_ascii=False).encode()
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_undecodable_bytes_name_the_line_and_the_option_before_any_row(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"e{suffix}"
    good = "a,b\n1,2\n3,4\n" if suffix == ".csv" else '{"a": 1}\n{"a": 2}\n{"a": 3}\n'
    path.write_bytes(good.encode() + "caf\xe9\n".encode("cp1252"))
    found: list[object] = []
    with pytest.raises(SourceError, match=r"line 4: bytes E9 are not valid utf-8.*--encoding cp1252"):
        found.extend(read_rows(path))
    assert found == []  # nothing was read before the error: no half-written output


def test_undecodable_line_number_past_the_first_chunk(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"a\n" + b"x" * 100 + b"\n" + (b"1234567\n" * 300_000) + b"\xa3\n")
    with pytest.raises(SourceError, match="line 300003:"):
        list(read_rows(path))


def test_unknown_encoding_and_suffix_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("a\n1\n")
    with pytest.raises(SourceError, match="unknown encoding 'klingon'"):
        list(read_rows(path, encoding="klingon"))
    with pytest.raises(SourceError, match=r"\.txt"):
        format_of(Path("e.txt"))
    with pytest.raises(SourceError, match="no such file"):
        list(read_rows(tmp_path / "missing.csv"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        list(read_rows(tmp_path / "bad.parquet"))


def test_truncated_and_malformed_csv_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        "id,user,ts\n"
        "1,u1,10\n"
        "\n"  # blank: skipped silently
        "2,u2\n"  # truncated
        "3,u3,30,extra\n"  # an extra non-empty cell
        "4,u4,40,\n"  # an extra empty cell (Excel): fine
        ",,\n"  # only empty cells: skipped silently
        '5,"u5\n'  # truncated inside a quoted cell (the last line of a cut file)
    )
    found, tally = rows(path)
    assert found == [(2, {"id": "1", "user": "u1", "ts": "10"}), (6, {"id": "4", "user": "u4", "ts": "40"})]
    assert tally.malformed == 3
    assert [line.split(":")[0] for line in tally.first_malformed] == ["line 4", "line 5", "line 8"]
    assert "truncated" in tally.first_malformed[0]
    assert tally.to_dict()["malformed"] == 3


def test_malformed_jsonl_lines_are_skipped_and_counted_with_the_first_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    lines = ['{"a": 1}', '{"a": 2, "b"', "[1, 2]", "null", "", '{"a": 3}'] + ["{"] * 10
    path.write_text("\n".join(lines) + "\n")
    found, tally = rows(path)
    assert found == [(1, {"a": 1}), (6, {"a": 3})]
    assert tally.malformed == 13
    assert len(tally.first_malformed) == 5
    assert tally.first_malformed[0].startswith("line 2: not valid JSON")
    assert tally.first_malformed[1] == "line 3: a JSON list, not an object"


def test_parquet_rows_are_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"user": ["a", "b"], "ts": [1.0, 2.0]}), path)
    assert rows(path)[0] == [(1, {"user": "a", "ts": 1.0}), (2, {"user": "b", "ts": 2.0})]


# --- values -------------------------------------------------------------------------------------


def test_integers_written_as_floats_become_integers_for_ids_and_times() -> None:
    for value in (17850, 17850.0, "17850.0", "17850.", "17850.000", Decimal("17850.0")):
        assert id_text(value, "user_id") == "17850"
    assert id_text("007", "item_id") == "007"
    assert id_text("sku-1.0", "item_id") == "sku-1.0"  # only a whole number written as a float
    assert id_text("1.5", "item_id") == "1.5"  # text ids are text
    assert id_text("", "item_id") is None
    for value in (
        1_796_006_133_034,
        1_796_006_133_034.0,
        "1796006133034.0",
        "1796006133034",
        " 1796006133034 ",
    ):
        assert time_ms(value) == TS
    assert integer_value("1.0", "v") == integer_value(1.0, "v") == 1


@pytest.mark.parametrize(
    ("value", "field"),
    [(1.5, "user_id"), (float("nan"), "item_id"), (float("inf"), "event_id"), (Decimal("2.5"), "user_id")],
)
def test_a_number_that_is_not_whole_is_a_reject_naming_the_id_field(value: object, field: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        id_text(value, field)
    assert caught.value.field == field


def test_times_in_seconds_and_microseconds_convert_exactly_at_any_length() -> None:
    # Found by the fuzz test below: 1e25 seconds times 1000 has more digits than Decimal's default
    # 28, so the conversion raised InvalidOperation (not InvalidEvent) and stopped the reader.
    # Since the one time rule (stream.core.normalise): a time past a signed 64-bit count of ms is
    # refused, whatever its unit, rather than converted.
    assert time_ms("9223372036854775.807", "s") == 2**63 - 1
    assert time_ms("0.0015", "s") == 2  # half to even, as before
    assert time_ms("9" * 21, "us") == int("9" * 18)
    too_large: list[tuple[str, TsUnit]] = [
        ("1e25", "s"),
        ("123456789012345678901234567.5", "s"),
        ("9" * 29, "us"),
    ]
    for text, unit in too_large:
        with pytest.raises(InvalidEvent, match="number too large"):
            time_ms(text, unit)
    assert time_ms("-1500", "us") == -2  # floor
    assert time_ms("1796006133034.999") == time_ms(1796006133034.5) == 1796006133034  # floor too


@pytest.mark.parametrize(
    "value", ["1796006133.5", 1796006133.5, "46356.4166", "nan", "inf", "1e999999999", "soon", "12:00"]
)
def test_times_that_cannot_be_read_are_rejects_naming_ts_ms(value: object) -> None:
    with pytest.raises(InvalidEvent) as caught:
        time_ms(value)
    assert caught.value.field == "ts_ms"
    with pytest.raises(InvalidEvent, match="'v'"):
        integer_value("1.5", "v")


@pytest.mark.parametrize(
    "text",
    [
        "2019-10-01 00:00:00 UTC",
        "2019-10-01 00:00:00",
        "2019-10-01T00:00:00",
        "2019-10-01T00:00:00Z",
        "2019-10-01T00:00:00.000Z",
        "2019-10-01T02:00:00+02:00",
        "2019-09-30T19:00:00-05:00",
        "2019-10-01 00:00:00 gmt",
        "2019-10-01",
        "20191001T000000Z",
    ],
)
def test_date_time_spellings(text: str) -> None:
    assert time_ms(text) == 1_569_888_000_000


def test_time_units_and_datetime_values() -> None:
    assert time_ms(1_433_221_332, "s") == 1_433_221_332_000
    assert time_ms("1433221332.117", "s") == 1_433_221_332_117
    assert time_ms(1_433_221_332.117, "s") == 1_433_221_332_117
    assert time_ms("1433221332117123", "us") == 1_433_221_332_117
    assert time_ms(1_433_221_332_117_123.0, "us") == 1_433_221_332_117
    assert time_ms("2019-10-01 00:00:00.250 UTC", "s") == 1_569_888_000_250  # text ignores the unit
    assert time_ms(datetime(2019, 10, 1, tzinfo=UTC)) == 1_569_888_000_000
    assert time_ms(datetime(2019, 10, 1)) == 1_569_888_000_000  # naive: UTC
    assert time_ms(date(2019, 10, 1)) == 1_569_888_000_000
    assert time_ms(None) is None
    assert time_ms(" ") is None
    with pytest.raises(InvalidEvent, match="expected a time, got a boolean"):
        time_ms(True)


def test_event_type_map_defaults_and_options() -> None:
    defaults = dict(DEFAULT_TYPE_MAP)
    expected = {
        "addtocart": "add_to_cart",
        "add_to_cart": "add_to_cart",
        "cart": "add_to_cart",
        "transaction": "purchase",
        "purchase": "purchase",
        "view": "view",
        "pageview": "view",
        "detail": "view",
        "click": "click",
        "search": "search",
        "Product Viewed": "view",
        "Order Completed": "purchase",
        "ADD-TO-CART": "add_to_cart",
    }
    for name, target in expected.items():
        assert map_event_type(name, defaults) == target, name
    for name in ("remove_from_cart", "like", "Remove From Cart"):
        with pytest.raises(UnmappedEventType) as caught:
            map_event_type(name, defaults)
        assert caught.value.name == name
        assert caught.value.field == "type"
    custom = parse_type_map(["like=click,cart=-", "remove_from_cart=purchase"])
    assert map_event_type("like", custom) == "click"
    assert map_event_type("remove_from_cart", custom) == "purchase"
    with pytest.raises(UnmappedEventType):
        map_event_type("cart", custom)
    from_file = parse_type_map([], file_text='{"wish": "click", "view": null}')
    assert map_event_type("wish", from_file) == "click"
    with pytest.raises(UnmappedEventType):
        map_event_type("view", from_file)
    with pytest.raises(ConfigError, match="not a profilestream type"):
        parse_type_map(["like=love"])
    with pytest.raises(ConfigError, match="NAME=TYPE"):
        parse_type_map(["like"])
    with pytest.raises(ConfigError, match="JSON object"):
        parse_type_map([], file_text="[1]")


def test_event_ids_derived_from_content_are_stable_and_kept_when_given() -> None:
    columns = ColumnMap(user_col="visitorid", ts_col="timestamp", item_col="itemid", type_col="event")
    row = {"timestamp": "1433227000000", "visitorid": "900001", "event": "transaction", "itemid": "248676"}
    first = to_v1_doc(row, columns, RowRules())
    again = to_v1_doc(dict(row), columns, RowRules())
    other = to_v1_doc({**row, "itemid": "248677"}, columns, RowRules())
    assert first == again != other
    assert first["event_id"] == derived_event_id(first, "gen") != other["event_id"]
    # Float-written ids give the same id as their integer spelling.
    assert to_v1_doc({**row, "visitorid": "900001.0"}, columns, RowRules())["event_id"] == first["event_id"]
    given = to_v1_doc(
        {**row, "id": "t-1"}, ColumnMap(**{**_fields(columns), "event_id_col": "id"}), RowRules()
    )
    assert given["event_id"] == "t-1"


def _fields(columns: ColumnMap) -> dict[str, Any]:
    return {name: getattr(columns, name) for name in columns.__slots__}


def test_normalise_v1_keeps_empty_json_strings_for_the_validator() -> None:
    doc = {"event_id": "e", "user_id": "u", "type": "view", "item_id": "", "ts_ms": TS}
    assert normalise_v1(doc, RowRules(), empty_is_absent=False)["item_id"] == ""
    assert "item_id" not in normalise_v1(doc, RowRules(), empty_is_absent=True)


# --- fuzz ---------------------------------------------------------------------------------------

IDS = st.one_of(
    st.integers(0, 10**12).map(str),
    st.integers(0, 10**12).map(lambda n: f"{n}.0"),
    st.text(alphabet="abcxyz-_0123456789éü", min_size=1, max_size=12).filter(lambda s: s.strip() == s),
)
TIMES = st.sampled_from(
    [
        (str(TS), TS),
        (f"{TS}.0", TS),
        ("2026-11-30 03:00:00 UTC", 1_796_007_600_000),
        ("2026-11-30T03:00:00Z", 1_796_007_600_000),
        ("2026-11-30T04:00:00+01:00", 1_796_007_600_000),
        ("2026-11-30 03:00:00", 1_796_007_600_000),
    ]
)
ROW = st.fixed_dictionaries(
    {
        "user": IDS,
        "item": IDS,
        "event": st.sampled_from(["view", "addtocart", "transaction", "cart", "pageview"]),
        "ts": TIMES,
    }
)


def _render(fmt: str, records: list[dict[str, Any]], bom: bool, encoding: str) -> bytes:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["user", "item", "event", "ts"])
        for record in records:
            writer.writerow([record["user"], record["item"], record["event"], record["ts"][0]])
        text = out.getvalue()
    else:
        text = "".join(
            json.dumps({**record, "ts": record["ts"][0]}, ensure_ascii=False) + "\n" for record in records
        )
    data = text.encode(encoding)
    return (BOM if bom and encoding == "utf-8" else b"") + data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(ROW, min_size=1, max_size=8),
    shape=st.tuples(
        st.sampled_from(["csv", "jsonl"]), st.booleans(), st.sampled_from(["utf-8", "utf-16", "cp1252"])
    ),
    cut=st.integers(1, 40),
)
def test_fuzz_valid_rows_are_never_lost_and_a_truncated_tail_is_only_counted(
    tmp_path: Path, records: list[dict[str, Any]], shape: tuple[str, bool, str], cut: int
) -> None:
    fmt, bom, encoding = shape
    if encoding == "cp1252":
        records = [r for r in records if all(_cp1252(str(v)) for v in (r["user"], r["item"]))]
    path = tmp_path / f"e.{fmt}"
    data = _render(fmt, records, bom, encoding)
    # A last line cut short, as a file copied while it was written.
    last = _render(fmt, [records[-1]] if records else [], False, encoding)
    tail_lines = last.splitlines(keepends=True)
    tail = tail_lines[-1][: min(cut, len(tail_lines[-1]) - 4)] if tail_lines else b""
    if encoding == "utf-16":
        tail = b""  # a cut utf-16 tail is an undecodable file, tested elsewhere
    path.write_bytes(data + tail)
    columns = ColumnMap(user_col="user", ts_col="ts", item_col="item", type_col="event")
    tally = ReadTally()
    docs: list[dict[str, Any]] = []
    rejected = 0
    for row in read_rows(path, encoding=encoding, tally=tally):
        try:
            docs.append(to_v1_doc(row.values, columns, RowRules()))
        except InvalidEvent:
            rejected += 1  # the cut line, when its cells are all there but one is cut short
    got = [(d["user_id"], d["item_id"], d["ts_ms"]) for d in docs[: len(records)]]
    expected = [(_int_text(r["user"]), _int_text(r["item"]), r["ts"][1]) for r in records]
    assert got == expected
    assert len(docs) - len(records) + rejected + tally.malformed <= 1


def _cp1252(text: str) -> bool:
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def _int_text(value: str) -> str:
    return value[:-2] if value.endswith(".0") else value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=300),
    bom=st.booleans(),
    fmt=st.sampled_from(["csv", "jsonl", "parquet"]),
    encoding=st.sampled_from(["utf-8", "cp1252", "utf-16"]),
)
def test_fuzz_random_bytes_raise_only_project_errors(
    tmp_path: Path, data: bytes, bom: bool, fmt: str, encoding: str
) -> None:
    path = tmp_path / f"x.{fmt}"
    path.write_bytes((BOM if bom else b"") + data)
    columns = ColumnMap(user_col="u", ts_col="t", item_col="i", type_col="e")
    try:
        for row in read_rows(path, encoding=encoding):
            with contextlib.suppress(InvalidEvent):  # a per-row reject
                to_v1_doc(row.values, columns, RowRules())
    except ProfilestreamError:
        pass  # a whole-file problem, named


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.text(max_size=30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(),
        st.decimals(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
    ),
    unit=st.sampled_from(["ms", "s", "us"]),
)
def test_fuzz_value_rules_raise_only_invalid_event(value: object, unit: Any) -> None:
    calls: list[Callable[[], object]] = [
        lambda: time_ms(value, unit),
        lambda: id_text(value, "user_id"),
        lambda: integer_value(value, "v"),
        lambda: map_event_type(value, DEFAULT_TYPE_MAP),
    ]
    for call in calls:
        with contextlib.suppress(InvalidEvent):
            call()


def test_a_last_character_cut_by_the_end_of_the_file_is_a_truncated_line_not_an_encoding(
    tmp_path: Path,
) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes("id,title\n1,café\n2,caf".encode() + "é".encode()[:1])
    found, tally = rows(path)
    assert found == [(2, {"id": "1", "title": "café"})]
    assert tally.malformed == 1
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_bytes(b'{"t": "caf\xc3\xa9"}\n{"t": "caf\xc3')
    found, tally = rows(jsonl)
    assert (found, tally.malformed) == ([(1, {"t": "café"})], 1)
