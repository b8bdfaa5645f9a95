"""Loaders: derived times and ids of amazon-office, ml-100k's mapping, the generic column mapping."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from models.data.amazon import AMAZON_BASE_TS_MS, AMAZON_ROW_STEP_MS, amazon_office_docs, load_amazon_office
from stream.cli.load import load_command
from stream.core.errors import InvalidEvent, SourceError
from stream.core.events import EventLimits
from stream.ingest.loaders import (
    ColumnMap,
    RowRules,
    generic_docs,
    load_ml100k,
    ml100k_docs,
    read_table,
    validate_docs,
    write_jsonl,
)
from tests.support.paths import DATA
from tests.support.requirements import in_ci


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_amazon_history_once_then_targets_with_times_from_row_order() -> None:
    valid = [
        {"user_id": "A", "history_item_id": "[1, 2]", "item_id": "3"},
        {"user_id": "B", "history_item_id": "[7]", "item_id": "8"},
        {"user_id": "A", "history_item_id": "[1, 2, 3]", "item_id": "4"},
    ]
    test = [{"user_id": "A", "history_item_id": "[2, 3, 4]", "item_id": "5"}]
    docs = list(amazon_office_docs([("valid", valid), ("test", test)]))
    a = [(d["item_id"], d["event_id"], d["ts_ms"]) for d in docs if d["user_id"] == "A"]
    assert [item for item, _, _ in a] == ["1", "2", "3", "4", "5"]
    assert [eid for _, eid, _ in a] == ["amz-A-0-1", "amz-A-1-2", "amz-A-2-3", "amz-A-3-4", "amz-A-4-5"]
    assert a[2][2] == AMAZON_BASE_TS_MS  # first row's target
    assert a[3][2] == AMAZON_BASE_TS_MS + 2 * AMAZON_ROW_STEP_MS
    assert a[4][2] == AMAZON_BASE_TS_MS + 3 * AMAZON_ROW_STEP_MS
    # Written in global time order, so per-user order is also file order.
    times = [d["ts_ms"] for d in docs]
    assert times == sorted(times)
    assert {d["context"]["split"] for d in docs if d["item_id"] == "5"} == {"test"}


def test_ml100k_mapping_and_time_order() -> None:
    lines = [
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n",
        "1\t10\t5\t900000002\n",
        "1\t11\t2\t900000001\n",
        "2\t10\t4\t900000001\n",
        "broken line\n",
    ]
    docs = ml100k_docs(lines)
    good = [d for d in docs if "type" in d]
    assert [(d["event_id"], d["type"], d["ts_ms"]) for d in good] == [
        ("ml-1-11", "view", 900_000_001_000),
        ("ml-2-10", "purchase", 900_000_001_000),
        ("ml-1-10", "purchase", 900_000_002_000),
    ]
    assert good[0]["context"] == {"rating": 2.0}


def test_generic_mapping_with_seconds_and_invalid_rows_counted(tmp_path: Path) -> None:
    source = tmp_path / "mine.csv"
    source.write_text(
        "customer,sku,when,action\nc1,s1,1764000000,view\nc1,s2,1764000001,like\nc2,,1764000002,view\n"
    )
    columns = ColumnMap(user_col="customer", item_col="sku", ts_col="when", type_col="action")
    out = tmp_path / "out.jsonl"
    report = write_jsonl(generic_docs(read_table(source), columns, RowRules(ts_unit="s")), out)
    assert (report.written, report.skipped) == (1, 2)
    assert report.unmapped_types == {"like": 1}
    assert any(reason.startswith("item_id:") for reason in report.reasons)
    (event,) = read_jsonl(out)
    assert event.pop("event_id").startswith("gen-")
    assert event == {
        "v": 1,
        "user_id": "c1",
        "type": "view",
        "ts_ms": 1_764_000_000_000,
        "item_id": "s1",
    }


def test_generic_jsonl_with_event_ids_and_default_type(tmp_path: Path) -> None:
    source = tmp_path / "mine.jsonl"
    source.write_text(json.dumps({"u": 5, "i": "x", "t": 1764000000000, "id": "k1"}) + "\n")
    docs = list(
        generic_docs(read_table(source), ColumnMap(user_col="u", item_col="i", ts_col="t", event_id_col="id"))
    )
    assert docs == [
        {"user_id": "5", "type": "view", "ts_ms": 1_764_000_000_000, "item_id": "x", "event_id": "k1"}
    ]


def test_load_generic_command_writes_the_file_and_reports(tmp_path: Path) -> None:
    source = tmp_path / "mine.csv"
    source.write_text("u,i,t\nc1,s1,1764000000000\nc1,,1764000000001\n")
    out = tmp_path / "out" / "events.jsonl"
    result = CliRunner().invoke(
        load_command,
        ["generic", str(source), str(out), "--user-col", "u", "--item-col", "i", "--ts-col", "t"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "wrote 1 events" in result.output
    assert "skipped 1 rows" in result.output
    assert "1 x invalid: item_id" in result.output
    assert [e["event_id"][:4] for e in read_jsonl(out)] == ["gen-"]


def test_missing_inputs_say_which_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"valid\.csv"):
        list(load_amazon_office(tmp_path))
    with pytest.raises(SourceError, match=r"ml-100k\.inter"):
        load_ml100k(tmp_path)
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(SourceError, match=r"\.txt"):
        list(read_table(tmp_path / "x.txt"))


@pytest.mark.skipif(
    not (DATA / "amazon-office").is_dir() and not in_ci(), reason="shared data set amazon-office is absent"
)
def test_real_amazon_office_gives_unique_ids_and_per_user_time_order(tmp_path: Path) -> None:
    out = tmp_path / "amazon.jsonl"
    report = write_jsonl(load_amazon_office(DATA / "amazon-office"), out)
    assert report.skipped == 0
    events = read_jsonl(out)
    assert len(events) == report.written > 9_732  # at least one event per row
    assert len({e["event_id"] for e in events}) == len(events)
    last: dict[str, int] = defaultdict(int)
    for event in events:
        assert event["ts_ms"] > last[event["user_id"]]
        last[event["user_id"]] = event["ts_ms"]


@pytest.mark.skipif(
    not (DATA / "ml-100k").is_dir() and not in_ci(), reason="shared data set ml-100k is absent"
)
def test_real_ml100k_loads_all_ratings(tmp_path: Path) -> None:
    out = tmp_path / "ml.jsonl"
    report = write_jsonl(load_ml100k(DATA / "ml-100k"), out)
    assert (report.written, report.skipped) == (100_000, 0)
    events = read_jsonl(out)
    assert len({e["event_id"] for e in events}) == 100_000
    assert [e["ts_ms"] for e in events] == sorted(e["ts_ms"] for e in events)


# --- field cases: one reader for every file (issue 15 part 5) ------------------------------------

FIELD = Path(__file__).parent / "data"


def load(args: list[str]) -> Any:
    result = CliRunner().invoke(load_command, ["generic", *args, "--json"], catch_exceptions=False)
    return result


def report_of(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output.strip().splitlines()[-1]))


RETAILROCKET = [
    "--user-col",
    "visitorid",
    "--ts-col",
    "timestamp",
    "--item-col",
    "itemid",
    "--type-col",
    "event",
]


def test_f06_retailrocket_names_are_mapped_and_duplicate_rows_get_one_id(tmp_path: Path) -> None:
    out = tmp_path / "f06.jsonl"
    report = report_of(load([str(FIELD / "f06-retailrocket-format-events.csv"), str(out), *RETAILROCKET]))
    assert (report["written"], report["skipped"]) == (9, 0)
    events = read_jsonl(out)
    assert [e["type"] for e in events[-3:]] == ["add_to_cart", "purchase", "purchase"]
    # The two identical transaction rows: one id, so the stream keeps one purchase.
    assert events[-1]["event_id"] == events[-2]["event_id"]
    assert len({e["event_id"] for e in events}) == 8
    # Stable across runs: the id comes from the row's content, not its position.
    again = tmp_path / "again.jsonl"
    report_of(load([str(FIELD / "f06-retailrocket-format-events.csv"), str(again), *RETAILROCKET]))
    assert read_jsonl(again) == events


def test_type_map_options_override_the_defaults(tmp_path: Path) -> None:
    source = tmp_path / "events.csv"
    source.write_text("u,i,t,e\nu1,i1,1764000000000,compare\nu1,i2,1764000000001,addtocart\n")
    out = tmp_path / "out.jsonl"
    args = [str(source), str(out), "--user-col", "u", "--ts-col", "t", "--item-col", "i", "--type-col", "e"]
    report = report_of(load(args))
    assert (report["written"], report["unmapped_types"]) == (1, {"compare": 1})
    mapping = tmp_path / "types.json"
    mapping.write_text('{"addtocart": null}')
    report = report_of(load([*args, "--type-map", "compare=click", "--type-map-file", str(mapping)]))
    assert (report["written"], report["unmapped_types"]) == (1, {"addtocart": 1})
    assert [e["type"] for e in read_jsonl(out)] == ["click"]
    bad = CliRunner().invoke(load_command, ["generic", *args, "--type-map", "compare=love"])
    assert bad.exit_code == 2
    assert "not a profilestream type" in bad.output


def test_f07_rees46_text_times_and_cart_names(tmp_path: Path) -> None:
    out = tmp_path / "f07.jsonl"
    args = ["--user-col", "user_id", "--ts-col", "event_time", "--item-col", "product_id"]
    args += ["--type-col", "event_type", "--session-col", "user_session"]
    report = report_of(load([str(FIELD / "f07-rees46-format-events.csv"), str(out), *args]))
    assert (report["written"], report["skipped"]) == (10, 1)
    assert report["unmapped_types"] == {"remove_from_cart": 1}
    events = read_jsonl(out)
    assert events[0]["ts_ms"] == 1_569_888_000_000  # 2019-10-01 00:00:00 UTC
    assert [e["type"] for e in events[-2:]] == ["add_to_cart", "purchase"]


def test_f09_a_bom_does_not_hide_the_first_column(tmp_path: Path) -> None:
    out = tmp_path / "f09.jsonl"
    args = ["--user-col", "user_id", "--ts-col", "ts_ms", "--item-col", "item_id", "--type-col", "type"]
    report = report_of(load([str(FIELD / "f09-utf8-bom.csv"), str(out), *args, "--event-id-col", "event_id"]))
    assert report["written"] == 2
    assert [e["event_id"] for e in read_jsonl(out)] == ["bom-1", "bom-2"]


def test_f10_cp1252_is_a_clear_error_then_loads_with_the_encoding_option(tmp_path: Path) -> None:
    out = tmp_path / "f10.jsonl"
    source = str(FIELD / "f10-cp1252-retail-export.csv")
    args = [
        "--user-col",
        "CustomerID",
        "--ts-col",
        "InvoiceDate",
        "--item-col",
        "StockCode",
        "--type",
        "purchase",
    ]
    failed = CliRunner().invoke(load_command, ["generic", source, str(out), *args])
    assert failed.exit_code == 1
    assert failed.exception is None or isinstance(failed.exception, SystemExit)  # no traceback
    assert "line 5" in failed.output and "--encoding cp1252" in failed.output
    assert not out.exists()  # nothing half-written
    report = report_of(load([source, str(out), *args, "--encoding", "cp1252"]))
    assert report["written"] == 4
    assert read_jsonl(out)[-1]["item_id"] == "POST"


def test_f11_float_written_integers_load_the_same_in_csv_jsonl_and_parquet(tmp_path: Path) -> None:
    rows = [
        {"user": "90001.0", "item": "sku-1", "ts": "1796006133034.0"},
        {"user": "90001", "item": "17850.0", "ts": "1796006134034"},
    ]
    csv_path = tmp_path / "e.csv"
    csv_path.write_text("user,item,ts\n" + "".join(f"{r['user']},{r['item']},{r['ts']}\n" for r in rows))
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text(
        json.dumps({"user": 90001.0, "item": "sku-1", "ts": 1796006133034.0})
        + "\n"
        + json.dumps({"user": 90001, "item": 17850.0, "ts": 1796006134034})
        + "\n"
    )
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    parquet = tmp_path / "e.parquet"
    pq.write_table(
        pa.table(
            {
                "user": [90001.0, 90001.0],
                "item": ["sku-1", "17850.0"],
                "ts": [1796006133034.0, 1796006134034.0],
            }
        ),
        parquet,
    )
    outputs = []
    for source in (csv_path, jsonl, parquet):
        out = tmp_path / f"{source.suffix}.out.jsonl"
        report = report_of(
            load([str(source), str(out), "--user-col", "user", "--ts-col", "ts", "--item-col", "item"])
        )
        assert report["written"] == 2, source
        outputs.append(read_jsonl(out))
    assert outputs[0] == outputs[1] == outputs[2]
    assert [(e["user_id"], e["item_id"], e["ts_ms"]) for e in outputs[0]] == [
        ("90001", "sku-1", 1_796_006_133_034),
        ("90001", "17850", 1_796_006_134_034),
    ]


def test_a_non_integral_number_is_a_reject_naming_the_field(tmp_path: Path) -> None:
    source = tmp_path / "e.jsonl"
    source.write_text(
        json.dumps({"u": 1.5, "i": "x", "t": 1796006133034})
        + "\n"
        + json.dumps({"u": 2, "i": "x", "t": 17.5})
        + "\n"
        # One good row: a load that writes nothing exits 1 (tests/unit/stream/cli/test_csv_recovery.py).
        + json.dumps({"u": 3, "i": "x", "t": 1796006133034})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    report = report_of(load([str(source), str(out), "--user-col", "u", "--ts-col", "t", "--item-col", "i"]))
    assert report["written"] == 1
    assert [reason.split(":")[0] for reason in report["invalid"]] == ["user_id", "ts_ms"]


def test_time_units_and_malformed_lines_in_the_report(tmp_path: Path) -> None:
    source = tmp_path / "e.csv"
    source.write_text("u,i,t\nu1,i1,1796006133\nu1,i2\nu1,i3,1796006135.5\n")
    out = tmp_path / "out.jsonl"
    args = [str(source), str(out), "--user-col", "u", "--ts-col", "t", "--item-col", "i", "--ts-unit", "s"]
    report = report_of(load(args))
    assert (report["written"], report["skipped"], report["malformed"]) == (2, 1, 1)
    assert report["malformed_lines"][0].startswith("line 3:")
    assert [e["ts_ms"] for e in read_jsonl(out)] == [1_796_006_133_000, 1_796_006_135_500]
    micro = tmp_path / "us.csv"
    micro.write_text("u,i,t\nu1,i1,1796006133034123\n")
    report = report_of(
        load([str(micro), str(out), "--user-col", "u", "--ts-col", "t", "--item-col", "i", "--ts-unit", "us"])
    )
    assert report["written"] == 1
    assert read_jsonl(out)[0]["ts_ms"] == 1_796_006_133_034


def test_a_mapped_column_missing_from_the_table_fails_at_once_naming_it(tmp_path: Path) -> None:
    source = tmp_path / "e.csv"
    source.write_text("\ufeffcustomer,sku,when\nc1,s1,1764000000000\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        load_command, ["generic", str(source), str(out), "--user-col", "customer", "--ts-col", "time"]
    )
    assert result.exit_code == 1
    assert "--ts-col 'time' is not a column; the columns are 'customer', 'sku', 'when'" in result.output
    assert not out.exists()
    # A column spelt in another case is named with the option to pass.
    result = CliRunner().invoke(
        load_command, ["generic", str(source), str(out), "--user-col", "Customer", "--ts-col", "when"]
    )
    assert result.exit_code == 1
    assert "the column is spelt 'customer': pass --user-col customer" in result.output


def test_a_utf16_file_read_as_utf8_says_which_encoding(tmp_path: Path) -> None:
    source = tmp_path / "e.csv"
    source.write_bytes("u,i,t\nc1,s1,1764000000000\n".encode("utf-16"))
    out = tmp_path / "out.jsonl"
    args = ["generic", str(source), str(out), "--user-col", "u", "--ts-col", "t", "--item-col", "i"]
    result = CliRunner().invoke(load_command, args)
    assert result.exit_code == 1
    assert "UTF-16 byte-order mark" in result.output and "--encoding utf-16" in result.output
    assert report_of(load([*args[1:], "--encoding", "utf-16"]))["written"] == 1


# 5001 digits: past Python's limit on int-from-text (4300).
BIG = "1" + "0" * 5000


def test_a_number_too_large_to_parse_is_a_reject_naming_the_field(tmp_path: Path) -> None:
    # json.loads raised Python's ValueError: the line was "malformed", with no field and the wrong fix.
    source = tmp_path / "e.jsonl"
    source.write_text(
        json.dumps({"u": "u1", "i": "x", "t": "@"}).replace('"@"', BIG)
        + "\n"
        + json.dumps({"u": "@", "i": "x", "t": 1796006133034}).replace('"@"', BIG)
        + "\n"
        + json.dumps({"u": "u2", "i": "x", "t": 1796006133034})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    report = report_of(load([str(source), str(out), "--user-col", "u", "--ts-col", "t", "--item-col", "i"]))
    assert (report["written"], report["malformed"]) == (1, 0)
    assert sorted(reason.split(":")[0] for reason in report["invalid"]) == ["ts_ms", "user_id"]
    assert any(reason.startswith("ts_ms: number too large (5001 digits)") for reason in report["invalid"])


@pytest.mark.parametrize("ts_text", ["1e400", "1" * 5001], ids=["1e400", "5001-digits"])
def test_an_ml100k_time_past_the_float_range_is_an_invalid_row_not_a_crash(ts_text: str) -> None:
    # int(float("1e400") * 1000) raised OverflowError out of the loader.
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    docs = ml100k_docs([header, f"1\t10\t5\t{ts_text}\n", "1\t11\t2\t900000001\n"])
    assert [d["event_id"] for d in docs if "type" in d] == ["ml-1-11"]
    assert [d["ts_ms"] for d in docs if "type" not in d] == [ts_text]


def test_a_loaded_file_may_not_say_what_only_the_worker_says() -> None:
    docs = [
        {
            "event_id": "a",
            "user_id": "u1",
            "type": "forget",
            "ts_ms": 1_764_000_000_000,
            "context": {"forget_of": "x"},
        },
        {"event_id": "b", "user_id": "u1", "type": "view", "item_id": "i", "ts_ms": 1_764_000_000_000},
    ]
    out = list(validate_docs(docs, EventLimits(), 1_764_000_000_000))
    assert isinstance(out[0], InvalidEvent) and out[0].field == "context.forget_of"
    assert not isinstance(out[1], InvalidEvent)
