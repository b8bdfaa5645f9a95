"""`load generic` (and `replay --dry-run`, no Kafka) on public data set exports: a headerless
Taobao file with --columns, Diginetica's "NA" users, same-second rows counted with a warning,
``.json`` event files; and the bounded same-time counter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from stream.cli.main import main
from stream.ingest.loaders import SameTimeTally

TAOBAO = (
    "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,pv,1511561733\n100,1603476,2951233,buy,1511680485\n"
)
TAOBAO_MAP = ["--user-col", "user_id", "--ts-col", "ts", "--item-col", "item_id", "--type-col", "type"]
TAOBAO_OPTIONS = [*TAOBAO_MAP, "--ts-unit", "s", "--type-map", "pv=view"]
DIGINETICA = (
    "sessionId;userId;itemId;timeframe;eventdate\n"
    "1;NA;81766;526309;2016-05-09\n1;NA;31331;1031018;2016-05-09\n3;5;46613;1028983;2016-05-31\n"
)
SAME_SECOND = (
    "user,item,when\nord-u,sku-1,2026-01-30 10:00:00\nord-u,sku-2,2026-01-30 10:00:00\n"
    "ord-u,sku-3,2026-01-30 10:00:00\nother,sku-1,2026-01-30 10:00:00\nord-u,sku-4,2026-01-30 10:00:01\n"
)


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, env={"PROFILESTREAM_LOG_LEVEL": "WARNING"})


def load(source: Path, *options: str) -> tuple[Result, dict[str, Any]]:
    result = invoke(
        ["load", "generic", str(source), str(source.with_suffix(".out.jsonl")), *options, "--json"]
    )
    start = result.output.find('{"out"')
    report = json.loads(result.output[start:].splitlines()[0]) if start >= 0 else {}
    return result, report


def written(source: Path) -> list[dict[str, Any]]:
    lines = source.with_suffix(".out.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_headerless_taobao_with_columns_loads_every_row(tmp_path: Path) -> None:
    source = tmp_path / "UserBehavior.csv"
    source.write_text(TAOBAO, encoding="utf-8")
    result, report = load(source, "--columns", "user_id,item_id,category_id,type,ts", *TAOBAO_OPTIONS)
    assert result.exit_code == 0, result.output
    assert report["written"] == 3 and report["warnings"] == [], report
    assert [doc["item_id"] for doc in written(source)] == ["2268318", "2333346", "1603476"]


def test_headerless_taobao_without_columns_names_the_option(tmp_path: Path) -> None:
    source = tmp_path / "UserBehavior.csv"
    source.write_text(TAOBAO, encoding="utf-8")
    result, _ = load(source, *TAOBAO_OPTIONS)
    assert result.exit_code != 0 and "--columns" in result.output, result.output
    # Mapped by the first row's values, it loads but warns that a row became the header.
    by_values = ["--user-col", "1", "--ts-col", "1511544070", "--item-col", "2268318", "--type-col", "pv"]
    result, report = load(source, *by_values, "--ts-unit", "s", "--type-map", "pv=view")
    assert result.exit_code == 0, result.output
    assert report["written"] == 2 and any("--columns" in w for w in report["warnings"]), report


def test_diginetica_na_users_are_rejected_naming_the_marker(tmp_path: Path) -> None:
    source = tmp_path / "train-item-views.csv"
    source.write_text(DIGINETICA, encoding="utf-8")
    result, report = load(source, "--user-col", "userId", "--ts-col", "eventdate", "--item-col", "itemId")
    assert result.exit_code == 0, result.output
    assert report["written"] == 1, report
    (reason,) = report["invalid"]
    assert reason.startswith("user_id: 'NA' is a missing-value marker") and report["invalid"][reason] == 2
    assert {doc["user_id"] for doc in written(source)} == {"5"}


def test_same_second_rows_are_counted_with_a_warning(tmp_path: Path) -> None:
    source = tmp_path / "clicks.csv"
    source.write_text(SAME_SECOND, encoding="utf-8")
    result, report = load(source, "--user-col", "user", "--ts-col", "when", "--item-col", "item")
    assert result.exit_code == 0, result.output
    assert report["written"] == 5 and report["same_ts_rows"] == 2, report
    assert report["warnings"] == [
        "2 rows share their user's timestamp with another row; their order in a window follows event "
        "ids, not the file: export times with finer resolution (or add the order as milliseconds)"
    ]


def test_distinct_times_give_no_warning(tmp_path: Path) -> None:
    source = tmp_path / "clicks.csv"
    source.write_text("user,item,when\nu,a,2026-01-30 10:00:00.001\nu,b,2026-01-30 10:00:00.002\n")
    _, report = load(source, "--user-col", "user", "--ts-col", "when", "--item-col", "item")
    assert report["same_ts_rows"] == 0 and report["warnings"] == [], report


def test_same_time_tally_is_bounded_and_says_when_it_forgot() -> None:
    tally = SameTimeTally(max_users=2)
    for user in ("a", "b", "c", "a"):
        tally.note(user, 1000)
    assert tally.count == 0 and tally.partial  # "a" was forgotten when "c" came
    assert len(tally._last_ts_ms) == 2
    tally.note("c", 1000)
    assert tally.count == 1
    assert (tally.warning() or "").startswith("at least 1 rows share")


def test_json_array_and_json_lines_files_load(tmp_path: Path) -> None:
    records = tmp_path / "pandas_records.json"
    records.write_text(
        '[{"user_id":"u1","item_id":1,"ts":1569888000000},{"user_id":"u2","item_id":2,"ts":1569974400000}]'
    )
    result, report = load(records, "--user-col", "user_id", "--ts-col", "ts", "--item-col", "item_id")
    assert result.exit_code == 0 and report["written"] == 2, result.output
    reviews = tmp_path / "reviews_Office_Products_5.json"
    reviews.write_text(
        '{"reviewerID": "A1", "asin": "B1", "unixReviewTime": 1094169600}\n'
        '{"reviewerID": "A2", "asin": "B2", "unixReviewTime": 1094169601}\n'
    )
    options = [
        "--user-col",
        "reviewerID",
        "--ts-col",
        "unixReviewTime",
        "--item-col",
        "asin",
        "--ts-unit",
        "s",
    ]
    result, report = load(reviews, *options, "--type", "purchase")
    assert result.exit_code == 0 and report["written"] == 2, result.output


def test_replay_takes_columns_for_a_headerless_file(tmp_path: Path) -> None:
    source = tmp_path / "events.dat"
    source.write_text("e1,u1,view,i1,1763000000034\ne2,u1,view,i2,1763000000035\n", encoding="utf-8")
    rejects = str(tmp_path / "rejects.jsonl")
    args = ["replay", str(source), "--dry-run", "--json", "--rejects", rejects]
    result = invoke([*args, "--columns", "event_id,user_id,type,item_id,ts_ms"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index('{"') :].splitlines()[0])
    assert report["read"] == 2 and report["rejected"] == 0, report
