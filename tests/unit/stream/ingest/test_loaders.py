"""Loaders: derived times and ids of amazon-office, ml-100k's mapping, the generic column mapping."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from models.data.amazon import AMAZON_BASE_TS_MS, AMAZON_ROW_STEP_MS, amazon_office_docs, load_amazon_office
from stream.core.errors import SourceError
from stream.ingest.loaders import (
    ColumnMap,
    generic_docs,
    load_command,
    load_ml100k,
    ml100k_docs,
    read_table,
    write_jsonl,
)
from tests.support.paths import DATA


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
    columns = ColumnMap(user_col="customer", item_col="sku", ts_col="when", type_col="action", ts_unit="s")
    out = tmp_path / "out.jsonl"
    report = write_jsonl(generic_docs(read_table(source), columns), out)
    assert (report.written, report.skipped) == (1, 2)
    assert any(reason.startswith("type:") for reason in report.reasons)
    assert any(reason.startswith("item_id:") for reason in report.reasons)
    (event,) = read_jsonl(out)
    assert event == {
        "v": 1,
        "event_id": "gen-0",
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
    assert "skipped 1 invalid rows" in result.output
    assert [e["event_id"] for e in read_jsonl(out)] == ["gen-0"]


def test_missing_inputs_say_which_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"valid\.csv"):
        list(load_amazon_office(tmp_path))
    with pytest.raises(SourceError, match=r"ml-100k\.inter"):
        load_ml100k(tmp_path)
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(SourceError, match=r"\.txt"):
        list(read_table(tmp_path / "x.txt"))


@pytest.mark.skipif(not (DATA / "amazon-office").is_dir(), reason="shared data set amazon-office is absent")
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


@pytest.mark.skipif(not (DATA / "ml-100k").is_dir(), reason="shared data set ml-100k is absent")
def test_real_ml100k_loads_all_ratings(tmp_path: Path) -> None:
    out = tmp_path / "ml.jsonl"
    report = write_jsonl(load_ml100k(DATA / "ml-100k"), out)
    assert (report.written, report.skipped) == (100_000, 0)
    events = read_jsonl(out)
    assert len({e["event_id"] for e in events}) == 100_000
    assert [e["ts_ms"] for e in events] == sorted(e["ts_ms"] for e in events)
