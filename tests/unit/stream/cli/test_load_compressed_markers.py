"""`load generic` and `replay --dry-run` (no Kafka) on gzipped files as REES46 and Amazon ship
them, and on marker text: a search log's queries, `--na-markers none`, JSON text."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from stream.cli.main import main

SEARCHES = (
    "user,q,ts\nu1,nan,2026-11-30 10:00:00\nu2,NA,2026-11-30 10:00:01\nu3,None,2026-11-30 10:00:02\n"
    "u4,null,2026-11-30 10:00:03\nu5,N/A,2026-11-30 10:00:04\nu6,red shoes,2026-11-30 10:00:05\n"
)
SEARCH_MAP = ["--user-col", "user", "--ts-col", "ts", "--query-col", "q", "--type", "search"]
V1_MARKERS = "event_id,user_id,type,item_id,query,ts_ms\nc1,NA,view,NA,,1796032800000\n"


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, env={"PROFILESTREAM_LOG_LEVEL": "WARNING"})


def load(source: Path, *options: str) -> tuple[Result, dict[str, Any], list[dict[str, Any]]]:
    out = source.parent / "out.jsonl"
    result = invoke(["load", "generic", str(source), str(out), *options, "--json"])
    start = result.output.find('{"out"')
    report = json.loads(result.output[start:].splitlines()[0]) if start >= 0 else {}
    docs = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return result, report, docs


def replay(source: Path, *options: str) -> dict[str, Any]:
    rejects = str(source.parent / "rejects.jsonl")
    result = invoke(["replay", str(source), "--dry-run", "--json", "--rejects", rejects, *options])
    assert '{"' in result.output, result.output
    report: dict[str, Any] = json.loads(result.output[result.output.index('{"') :].splitlines()[0])
    return report


def test_load_generic_reads_a_gzipped_rees46_style_csv(tmp_path: Path) -> None:
    source = tmp_path / "2019-Oct.csv.gz"
    text = "event_time,event_type,product_id,user_id\n2019-10-01 00:00:00 UTC,view,44600062,541312140\n"
    source.write_bytes(gzip.compress(text.encode()))
    options = ["--user-col", "user_id", "--ts-col", "event_time", "--item-col", "product_id"]
    result, report, docs = load(source, *options, "--type-col", "event_type")
    assert result.exit_code == 0, result.output
    assert report["written"] == 1 and [doc["item_id"] for doc in docs] == ["44600062"]


def test_replay_reads_a_gzipped_jsonl(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl.gz"
    line = {"event_id": "e1", "user_id": "u1", "type": "view", "item_id": "i", "ts_ms": 1796032800000}
    source.write_bytes(gzip.compress(json.dumps(line).encode() + b"\n"))
    report = replay(source)
    assert report["read"] == 1 and report["rejected"] == 0, report


def test_a_search_logs_marker_queries_are_loaded_as_queries(tmp_path: Path) -> None:
    source = tmp_path / "search_markers.csv"
    source.write_text(SEARCHES)
    result, report, docs = load(source, *SEARCH_MAP)
    assert result.exit_code == 0, result.output
    assert report["written"] == 6 and report["skipped"] == 0, report
    assert [doc["query"] for doc in docs] == ["nan", "NA", "None", "null", "N/A", "red shoes"]


def test_load_na_markers_none_keeps_a_user_named_na(tmp_path: Path) -> None:
    # ("None" itself is refused as a user id at every entry point: Python's str(None).)
    source = tmp_path / "users.csv"
    source.write_text("user,item,ts\nNA,NA,1796032800000\n")
    options = ["--user-col", "user", "--ts-col", "ts", "--item-col", "item"]
    _, report, _ = load(source, *options)
    assert report["written"] == 0, report
    result, report, docs = load(source, *options, "--na-markers", "none")
    assert result.exit_code == 0, result.output
    assert [(doc["user_id"], doc["item_id"]) for doc in docs] == [("NA", "NA")]


def test_replay_na_markers_none_reads_a_v1_csv_as_its_jsonl_twin_is_read(tmp_path: Path) -> None:
    source = tmp_path / "v1_markers.csv"
    source.write_text(V1_MARKERS)
    assert replay(source)["rejected"] == 1
    assert replay(source, "--na-markers", "none")["rejected"] == 0


def test_load_generic_reads_json_text_na_as_text(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text('{"user": "NA", "item": "i1", "ts": 1796032800000}\n')
    result, _, docs = load(source, "--user-col", "user", "--ts-col", "ts", "--item-col", "item")
    assert result.exit_code == 0, result.output
    assert [doc["user_id"] for doc in docs] == ["NA"]
