"""Replay's pure parts: sources, speed, pacing, validation loop, sharding, namespaces."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import click
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from stream.core import json_numbers
from stream.core.errors import ConfigError, InvalidEvent, SourceError
from stream.core.events import EventLimits, decode_event, decode_event_noted
from stream.core.namespace import namespaced
from stream.core.settings import Settings, load_settings
from stream.core.tabular import ReadTally, RowRules, normalise_v1
from stream.ingest.replay import (
    UNPARSED,
    Item,
    KafkaPythonSink,
    Pacer,
    SourceSpec,
    _replay_items,
    _user_of,
    decode_parsed,
    file_format,
    iter_source,
    parse_line,
    parse_speed,
    shard_of,
    target_settings,
)
from tests.support.fakes import FakeProducer

TS = 1_764_000_000_000


def doc(n: int, user: str = "u1", **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"e{n}",
        "user_id": user,
        "type": "view",
        "item_id": "i",
        "ts_ms": TS + n,
    }
    event.update(changes)
    return event


def run(items: list[Item], producer: FakeProducer | None, shard: tuple[int, int] = (0, 1)) -> Any:
    return _replay_items(
        iter(items),
        limits=EventLimits(),
        sink=KafkaPythonSink(producer, "t") if producer is not None else None,
        pacer=None,
        shard=shard,
        on_progress=lambda n: None,
    )


@pytest.fixture
def settings() -> Settings:
    return load_settings({})


def test_valid_json_lines_are_forwarded_unchanged_in_order_and_keyed(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "e.jsonl"
    lines = [json.dumps(doc(n, user=f"u{n % 3}"), indent=None) for n in range(9)]
    path.write_text("\n".join(lines[:5]) + "\n\n" + "\n".join(lines[5:]) + "\n")
    producer = FakeProducer(partitions=4)
    tally = run(list(iter_source(SourceSpec(str(path)), settings)), producer)
    assert (tally.read, tally.produced, tally.rejects) == (9, 9, [])
    assert [value for _, _, value in producer.sent] == [line.encode() for line in lines]
    assert [key for _, key, _ in producer.sent] == [f"u{n % 3}".encode() for n in range(9)]
    # One partition per user, as the default partitioner would pick it.
    by_user: dict[bytes | None, set[int | None]] = {}
    for (_, key, _), partition in zip(producer.sent, producer.sent_partitions, strict=True):
        by_user.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in by_user.values())


def test_invalid_rows_are_counted_with_position_and_field_not_fatal(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(
        "\n".join([json.dumps(doc(1)), "{broken", json.dumps(doc(2, type="like")), json.dumps(doc(3))]) + "\n"
    )
    producer = FakeProducer(partitions=4)
    reader = ReadTally()
    tally = run(list(iter_source(SourceSpec(str(path)), settings, reader)), producer)
    # The broken line is malformed (skipped and counted by the reader); the unknown type is
    # skipped and counted by name.
    assert (tally.read, tally.produced) == (3, 2)
    assert (reader.malformed, reader.first_malformed[0][:7]) == (1, "line 2:")
    assert dict(tally.unmapped) == {"like": 1}
    assert tally.rejects == []


def test_dry_run_validates_without_producing(tmp_path: Path, settings: Settings) -> None:
    tally = run([(1, json.dumps(doc(1)).encode(), None), (2, b"[]", None)], None)
    assert (tally.read, tally.produced, len(tally.rejects)) == (2, 0, 1)


def test_shards_split_users_without_overlap_and_keep_each_users_order() -> None:
    items: list[Item] = [(n, json.dumps(doc(n, user=f"u{n % 11}")).encode(), None) for n in range(200)]
    shards = [FakeProducer(partitions=4), FakeProducer(partitions=4), FakeProducer(partitions=4)]
    tallies = [run(items, producer, (i, 3)) for i, producer in enumerate(shards)]
    assert sum(t.read for t in tallies) == 200
    users = [{key for _, key, _ in p.sent} for p in shards]
    assert not (users[0] & users[1]) and not (users[1] & users[2]) and not (users[0] & users[2])
    for producer in shards:
        for user in {key for _, key, _ in producer.sent}:
            ids = [json.loads(v or b"")["event_id"] for _, k, v in producer.sent if k == user]
            assert ids == sorted(ids, key=lambda e: int(e[1:]))
    assert shard_of("u1", 1) == 0


def test_csv_and_parquet_rows_become_v1_documents(tmp_path: Path, settings: Settings) -> None:
    csv_path = tmp_path / "e.csv"
    csv_path.write_text(
        "event_id,user_id,type,item_id,query,ts_ms,context\n"
        f'e1,u1,view,i1,,{TS},"{{""page"": ""home""}}"\n'
        f"e2,u1,search,,pens,{TS + 1},\n"
        "e3,u1,view,i1,,yesterday,\n"
    )
    producer = FakeProducer(partitions=4)
    tally = run(list(iter_source(SourceSpec(str(csv_path)), settings)), producer)
    assert tally.produced == 2
    assert json.loads(producer.sent[0][2] or b"")["context"] == {"page": "home"}
    assert [(r.position, r.field) for r in tally.rejects] == [("4", "ts_ms")]

    parquet_path = tmp_path / "e.parquet"
    columns = {
        "event_id": ["e1", "e2"],
        "user_id": ["u1", "u1"],
        "type": ["view", "search"],
        "item_id": ["i1", None],
        "query": [None, "q"],
        "ts_ms": [TS, TS + 1],
    }
    pq.write_table(pa.Table.from_pydict(columns), parquet_path)
    producer = FakeProducer(partitions=4)
    tally = run(list(iter_source(SourceSpec(str(parquet_path)), settings)), producer)
    assert (tally.produced, tally.rejects) == (2, [])
    assert json.loads(producer.sent[1][2] or b"")["query"] == "q"


def test_table_rows_normalised_and_unreadable_cells_named() -> None:
    rules = RowRules()
    doc = normalise_v1(
        {"event_id": "e", "ts_ms": "12", "v": "1", "context": "{}", "item_id": "", "x": None},
        rules,
        empty_is_absent=True,
    )
    assert doc == {"event_id": "e", "ts_ms": 12, "v": 1, "context": {}}
    assert normalise_v1({"event_id": "e", "context": "{bad"}, rules, empty_is_absent=True) == {
        "event_id": "e",
        "context": "{bad",
    }
    with pytest.raises(InvalidEvent, match="ts_ms"):
        normalise_v1({"ts_ms": "soon"}, rules, empty_is_absent=True)


def test_file_format_comes_from_the_suffix(tmp_path: Path, settings: Settings) -> None:
    assert file_format(Path("a.JSONL")) == "jsonl"
    assert file_format(Path("a.ndjson")) == "jsonl"
    with pytest.raises(SourceError, match=r"\.txt"):
        file_format(Path("a.txt"))
    with pytest.raises(SourceError, match="no such file"):
        iter_source(SourceSpec(str(tmp_path / "missing.jsonl")), settings)
    assert SourceSpec("kafka://events").topic == "events"
    assert SourceSpec("events.jsonl").topic is None


def test_parse_speed() -> None:
    assert parse_speed("max") is None
    assert parse_speed("10") == 10.0
    for bad in ("0", "-1", "fast", "inf", "nan"):
        with pytest.raises(click.BadParameter):
            parse_speed(bad)


def test_pacer_keeps_original_gaps_divided_by_speed() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
    pacer.wait(TS)
    pacer.wait(TS + 5_000)  # 5 s of event time at 10x: 0.5 s
    pacer.wait(TS + 4_000)  # backwards in time: at once
    now[0] += 2.0  # the producer fell behind: no sleep to catch up
    pacer.wait(TS + 20_000)
    assert slept == pytest.approx([0.5])
    assert pacer.delay_s(TS + 40_000) == pytest.approx(4.0 - 2.5)


def test_pacer_cuts_gaps_over_max_gap_s_and_keeps_the_rest_of_the_schedule() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(1000.0, clock=lambda: now[0], sleep=sleep, max_gap_s=5.0)
    pacer.wait(TS)
    pacer.wait(TS + 2_000)  # 2 ms at 1000x
    year_ms = 365 * 24 * 3_600_000
    pacer.wait(TS + year_ms)  # 8.8 h at 1000x, cut to 5 s
    pacer.wait(TS + year_ms + 3_000)  # the gaps after the outlier keep their length
    assert slept == pytest.approx([0.002, 5.0, 0.003])
    assert pacer.capped_gaps == 1


def test_pacer_keeps_the_gaps_after_one_outlier_time() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(1.0, clock=lambda: now[0], sleep=sleep, max_gap_s=3.0)
    year_ms = 365 * 24 * 3_600_000
    for ts_ms in (TS, TS + 2_000, TS + 4_000, TS + year_ms, TS + 6_000, TS + 8_000, TS + 10_000):
        pacer.wait(ts_ms)
    # 2 s apart, the outlier after the 3 s cut, then back at once and 2 s apart again.
    assert slept == pytest.approx([2.0, 2.0, 3.0, 2.0, 2.0])
    assert pacer.capped_gaps == 2


def test_pacer_says_when_it_waits_long(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = Pacer(1000.0, clock=lambda: now[0], sleep=sleep)
    pacer.wait(TS)
    with caplog.at_level("WARNING"):
        pacer.wait(TS + 365 * 24 * 3_600_000)
    assert "--max-gap-s" in caplog.text
    assert now[0] == pytest.approx(100.0 + 365 * 24 * 3.6)


def test_namespaced_settings_share_no_name_with_the_default(settings: Settings) -> None:
    shadow = namespaced(settings, "model-v2")
    for name in ("events_topic", "dead_letter_topic", "consumer_group", "redis_key_prefix"):
        assert getattr(shadow, name) != getattr(settings, name)
        assert "model-v2" in getattr(shadow, name)
    # A scan of the default prefix must not see the shadow's keys.
    assert not shadow.redis_key("recent", "u1").startswith(settings.redis_key_prefix + ":")
    assert shadow.kafka_bootstrap_servers == settings.kafka_bootstrap_servers
    for bad in ("", "Model", "a_b", "x" * 33, "a.b"):
        with pytest.raises(ConfigError, match="namespace"):
            namespaced(settings, bad)
    long_prefix = settings.model_copy(update={"redis_key_prefix": "p" * 60})
    with pytest.raises(ConfigError, match="redis_key_prefix"):
        namespaced(long_prefix, "model-v2")


def test_target_settings(settings: Settings) -> None:
    assert target_settings(settings, None, None) is settings
    assert target_settings(settings, None, "other").events_topic == "other"
    assert target_settings(settings, "ns", None).events_topic.endswith("ns-ns")
    with pytest.raises(ConfigError):
        target_settings(settings, "ns", "other")
    with pytest.raises(ConfigError, match="--to"):
        target_settings(settings, None, "bad topic!")


# 5001 digits: past Python's limit on int-from-text (4300).
BIG = "1" + "0" * 5000


def tricky_lines() -> list[bytes]:
    valid = json.dumps(doc(1, context={"page": "ü"}), ensure_ascii=False)
    return [
        valid.encode(),
        json.dumps(doc(2)).encode(),
        b"\xef\xbb\xbf" + valid.encode(),  # UTF-8 BOM: json.loads accepts it
        valid.encode("utf-16"),  # json.loads detects UTF-16
        valid.encode("utf-16-le"),
        json.dumps(doc(3, context={"x": float("nan")})).encode(),  # NaN
        json.dumps(doc(4, context={"x": float("inf")})).encode(),
        b'{"event_id": "e\\ud800", "user_id": "u1", "type": "view", "item_id": "i", "ts_ms": 1764000000000}',
        '{"event_id": "e", "user_id": "u\udfff"}'.encode("utf-8", "surrogatepass"),
        b"\xff\xfe{}",
        b"{broken",
        b"[]",
        b"null",
        b"1e400",
        b"[" * 5_000 + b"]" * 5_000,  # nested too deeply, within the size limit
        json.dumps(doc(5, type="search", item_id=None, query="x" * 20_000)).encode(),  # cut to fit
        json.dumps(doc(12, context={"blob": "x" * 20_000})).encode(),  # over the size limit
        json.dumps(doc(6, type="like")).encode(),
        b'{"event_id": "e7", "user_id": "u1", "user_id": "u2", "type": "view", "item_id": "i", '
        b'"ts_ms": 1764000000000}',
        b" \t" + json.dumps(doc(8)).encode() + b"\r ",
        # Numbers too large to parse: json.loads raised ValueError (Python's digit limit).
        json.dumps(doc(9, ts_ms="@")).replace('"@"', BIG).encode(),
        json.dumps(doc(10, context={"price": "@"})).replace('"@"', "-" + BIG).encode(),
        json.dumps(doc(11, context={"x": "@"})).replace('"@"', "1e400").encode(),
    ]


def outcome(call: Any) -> object:
    try:
        return call()
    except InvalidEvent as exc:
        return ("invalid", exc.field, exc.reason)


def test_fast_line_decoding_gives_exactly_what_decode_event_gives() -> None:
    limits = EventLimits(max_bytes=16_384)
    for raw in tricky_lines():
        parsed = parse_line(raw, limits)
        fast = outcome(functools.partial(decode_parsed, raw, parsed, limits=limits, now_ms=TS))
        assert fast == outcome(functools.partial(decode_event_noted, raw, limits=limits, now_ms=TS)), raw[:80]
    accepted = [
        raw
        for raw in tricky_lines()
        if not isinstance(outcome(functools.partial(decode_event, raw, limits=limits, now_ms=TS)), tuple)
    ]
    # Valid lines the fast parser leaves to decode_event: the BOM and UTF-16 ones.
    assert sum(parse_line(raw, limits) is UNPARSED for raw in accepted) == 3
    assert parse_line(b"\xef\xbb\xbf{}", limits) is UNPARSED
    assert parse_line(b'{"a": NaN}', limits) is UNPARSED


def test_lines_the_fast_parser_leaves_alone_still_shard_by_their_user() -> None:
    limits = EventLimits()
    for raw in tricky_lines():
        expected = None
        try:
            loaded = json_numbers.loads(raw)  # as decode_event parses it
        except (ValueError, RecursionError):
            loaded = None
        if isinstance(loaded, dict) and isinstance(loaded.get("user_id"), str):
            expected = loaded["user_id"]
        assert _user_of(raw, parse_line(raw, limits)) == expected, raw[:80]


# --- field cases: the shared file reader in replay (issue 15 part 5) -----------------------------

FIELD = Path(__file__).parent / "data"


def replayed(path: Path, settings: Settings, **spec: Any) -> tuple[Any, ReadTally, list[dict[str, Any]]]:
    producer = FakeProducer(partitions=4)
    reader = ReadTally()
    tally = run(list(iter_source(SourceSpec(str(path), **spec), settings, reader)), producer)
    return tally, reader, [json.loads(value or b"") for _, _, value in producer.sent]


def test_f09_a_bom_before_the_header_keeps_the_event_ids(settings: Settings) -> None:
    tally, _, events = replayed(FIELD / "f09-utf8-bom.csv", settings)
    assert (tally.produced, tally.rejects) == (2, [])
    assert [e["event_id"] for e in events] == ["bom-1", "bom-2"]


def test_f10b_cp1252_is_a_clear_error_before_any_event_then_replays_with_the_encoding(
    settings: Settings,
) -> None:
    path = FIELD / "f10b-cp1252-v1-events.csv"
    producer = FakeProducer(partitions=4)
    with pytest.raises(SourceError, match=r"line 2: .*--encoding cp1252"):
        run(list(iter_source(SourceSpec(str(path)), settings)), producer)
    assert producer.sent == []
    tally, _, events = replayed(path, settings, encoding="cp1252")
    assert tally.produced == 1
    assert events[0]["query"] == "café crème mug"


def test_f11_float_written_integers_replay_the_same_from_csv_jsonl_and_parquet(
    tmp_path: Path, settings: Settings
) -> None:
    tally, _, from_csv = replayed(FIELD / "f11-float-formatted-integers.csv", settings)
    assert (tally.produced, tally.rejects) == (3, [])
    assert {e["user_id"] for e in from_csv} == {"90001"}
    assert [e["ts_ms"] for e in from_csv] == [1_796_006_133_034, 1_796_006_134_034, 1_796_006_135_034]
    jsonl = tmp_path / "f11.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(
                {k: v for k, v in e.items() if k != "v"} | {"user_id": 90001.0, "ts_ms": float(e["ts_ms"])}
            )
            for e in from_csv
        )
    )
    _, _, from_jsonl = replayed(jsonl, settings)
    parquet = tmp_path / "f11.parquet"
    pq.write_table(
        pa.table(
            {
                "event_id": [e["event_id"] for e in from_csv],
                "user_id": [90001.0] * 3,
                "type": [e["type"] for e in from_csv],
                "item_id": [e.get("item_id") for e in from_csv],
                "query": [e.get("query") for e in from_csv],
                "ts_ms": [float(e["ts_ms"]) for e in from_csv],
            }
        ),
        parquet,
    )
    _, _, from_parquet = replayed(parquet, settings)
    strip = [{k: v for k, v in e.items() if k != "v"} for e in from_csv]
    assert [{k: v for k, v in e.items() if k != "v"} for e in from_jsonl] == strip
    assert [{k: v for k, v in e.items() if k != "v"} for e in from_parquet] == strip


def test_json_lines_the_rules_change_are_re_encoded_and_others_forwarded_as_they_are(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "e.jsonl"
    plain = json.dumps(doc(1))
    no_id = {k: v for k, v in doc(2, type="addtocart").items() if k != "event_id"}
    path.write_bytes(
        b"\xef\xbb\xbf"
        + plain.encode()
        + b"\n"
        + json.dumps(no_id).encode()
        + b"\n"
        + json.dumps(no_id).encode()  # a duplicated line: the same derived id
        + b"\n"
        + json.dumps(doc(3, type="remove_from_cart")).encode()
        + b"\n"
        + json.dumps(doc(4, ts_ms="2025-11-24T16:00:00Z")).encode()
        + b'\n{"event_id": "cut", "user_id": "u1", "ty'
    )
    producer = FakeProducer(partitions=4)
    reader = ReadTally()
    tally = run(list(iter_source(SourceSpec(str(path)), settings, reader)), producer)
    values = [value for _, _, value in producer.sent]
    assert values[0] == plain.encode()  # BOM read away, the line forwarded byte for byte
    derived = [json.loads(v or b"") for v in values[1:3]]
    assert derived[0]["type"] == "add_to_cart"
    assert derived[0]["event_id"] == derived[1]["event_id"]
    assert derived[0]["event_id"].startswith("row-")
    assert json.loads(values[3] or b"")["ts_ms"] == 1_764_000_000_000
    assert dict(tally.unmapped) == {"remove_from_cart": 1}
    assert (reader.malformed, reader.first_malformed[0][:7]) == (1, "line 6:")


def test_ts_unit_and_type_map_apply_to_replayed_files(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "e.csv"
    path.write_text("event_id,user_id,type,item_id,ts_ms\ne1,u1,wish,i1,1764000000\ne2,u1,view,i1,1.5\n")
    rules = RowRules(ts_unit="s", type_map={"wish": "click", "view": "view"})
    tally, _, events = replayed(path, settings, rules=rules)
    assert [(e["type"], e["ts_ms"]) for e in events] == [("click", 1_764_000_000_000)]
    # In seconds 1.5 is 1500 ms, a time before the oldest accepted one.
    assert [(r.position, r.field) for r in tally.rejects] == [("3", "ts_ms")]
    assert "before the oldest" in tally.rejects[0].reason
    tally, _, _ = replayed(path, settings, rules=RowRules(type_map={"wish": "click", "view": "view"}))
    assert [(r.position, r.field) for r in tally.rejects] == [("2", "ts_ms"), ("3", "ts_ms")]
    assert "before the oldest" in tally.rejects[1].reason  # 1.5 ms, floored to 1 ms since 1970


def test_replay_command_reports_rejects_unmapped_types_and_malformed_lines(
    tmp_path: Path, settings: Settings
) -> None:
    from click.testing import CliRunner

    from stream.cli.replay import replay_command

    path = tmp_path / "e.csv"
    path.write_text(
        "event_id,user_id,type,item_id,ts_ms\n"
        "e1,u1,cart,i1,2025-11-24 16:00:00 UTC\n"
        "e2,u1,remove_from_cart,i1,1764000000000\n"
        "e3,u1,view,,1764000000000\n"
        "e4,u1\n"
    )
    args = [str(path), "--dry-run", "--json", "--rejects", str(tmp_path / "rejects.jsonl")]
    result = CliRunner().invoke(replay_command, args, obj=settings, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # The progress bar shares the output: the report is the JSON object in it.
    report = json.loads(result.output[result.output.index('{"source"') :].splitlines()[0])
    assert (report["read"], report["rejected"]) == (3, 1)
    assert report["reasons"] == {"item_id: required for type 'view'": 1}
    assert report["unmapped_types"] == {"remove_from_cart": 1}
    assert (report["malformed"], report["malformed_lines"][0][:7]) == (1, "line 5:")
    failed = CliRunner().invoke(
        replay_command, [str(FIELD / "f10b-cp1252-v1-events.csv"), "--dry-run"], obj=settings
    )
    assert failed.exit_code == 1
    assert "--encoding" in failed.output and "Traceback" not in failed.output


def test_json_lines_that_are_not_objects_are_malformed(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(["[]", "null", "7", json.dumps(doc(1))]) + "\n")
    tally, reader, events = replayed(path, settings)
    assert (tally.read, len(events), tally.rejects) == (1, 1, [])
    assert reader.malformed == 3
    assert reader.first_malformed[0] == "line 1: a JSON list, not an object"


def test_a_number_too_large_to_parse_is_a_reject_naming_the_field_not_a_malformed_line(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "e.jsonl"
    lines = [
        json.dumps(doc(1)),
        json.dumps(doc(2, ts_ms="@")).replace('"@"', BIG),
        json.dumps(doc(3, context={"quantity": "@"})).replace('"@"', BIG),
        json.dumps(doc(4)),
    ]
    path.write_text("\n".join(lines) + "\n")
    tally, reader, events = replayed(path, settings)
    assert [e["event_id"] for e in events] == ["e1", "e4"]
    assert reader.malformed == 0
    assert [(r.position, r.field) for r in tally.rejects] == [("2", "ts_ms"), ("3", "context")]
    assert tally.rejects[0].reason.startswith("number too large (5001 digits); send ms since the epoch")
    assert tally.rejects[1].reason.startswith("context.quantity: number too large (5001 digits)")


def test_a_csv_context_cell_with_a_number_too_large_is_a_reject_naming_the_context(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        "event_id,user_id,type,item_id,ts_ms,context\n"
        f'e1,u1,view,i1,{TS},"{{""price"": {BIG}}}"\n'
        f'e2,u1,view,i1,{TS},"{{""price"": 3}}"\n'
    )
    tally, _, events = replayed(path, settings)
    assert [(e["event_id"], e["context"]) for e in events] == [("e2", {"price": 3})]
    assert [(r.position, r.field) for r in tally.rejects] == [("2", "context")]
    assert tally.rejects[0].reason.startswith("context.price: number too large (5001 digits)")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"type": "forget", "item_id": None, "context": {"forget_of": "someone"}}, "context.forget_of"),
        ({"context": {"merged_from": "anon-1"}}, "context.merged_from"),
        ({"type": "identify", "item_id": None, "known_user_id": "u1"}, "known_user_id"),
    ],
)
def test_a_file_may_not_say_what_only_the_worker_says(changes: dict[str, Any], field: str) -> None:
    """Replayed files come from outside (stream.core.reserved); a copy of the events topic
    carries the worker's own records and keeps them."""
    line = json.dumps({k: v for k, v in doc(1, **changes).items() if v is not None}).encode()
    producer = FakeProducer(partitions=4)
    tally = _replay_items(
        iter([(1, line, None)]),
        limits=EventLimits(),
        sink=KafkaPythonSink(producer, "t"),
        pacer=None,
        shard=(0, 1),
        on_progress=lambda n: None,
    )
    assert tally.produced == 0 and [r.field for r in tally.rejects] == [field]
    if field.startswith("context."):
        copied = _replay_items(
            iter([(1, line, None)]),
            limits=EventLimits(),
            sink=KafkaPythonSink(producer, "t"),
            pacer=None,
            shard=(0, 1),
            on_progress=lambda n: None,
            from_client=False,
        )
        assert copied.produced == 1 and copied.rejects == []


def test_columns_for_a_jsonl_file_is_refused_as_for_every_format_that_names_its_fields(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(
        '{"event_id": "e1", "user_id": "u1", "type": "view", "item_id": "i1", "ts_ms": 1764000000000}\n'
    )
    with pytest.raises(SourceError, match="a jsonl file names its own fields: leave --columns out"):
        iter_source(SourceSpec(str(path), columns=("user_id", "item_id")), settings)
