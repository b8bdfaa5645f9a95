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

from stream.core.errors import ConfigError, InvalidEvent, SourceError
from stream.core.events import EventLimits, decode_event
from stream.core.namespace import namespaced
from stream.core.settings import Settings, load_settings
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
    row_to_doc,
    shard_of,
    target_settings,
)

TS = 1_764_000_000_000


class Future:
    def get(self, timeout: float | None = None) -> None:
        return None

    def add_errback(self, f: Any, *args: Any, **kwargs: Any) -> None:
        return None


class RecordingProducer:
    def __init__(self, partitions: int = 4) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self._partitions = set(range(partitions))

    def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None
    ) -> Future:
        self.sent.append((topic, key, value, partition))
        return Future()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None

    def partitions_for(self, topic: str) -> set[int]:
        return self._partitions


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


def run(items: list[Item], producer: RecordingProducer | None, shard: tuple[int, int] = (0, 1)) -> Any:
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
    producer = RecordingProducer()
    tally = run(list(iter_source(SourceSpec(str(path)), settings)), producer)
    assert (tally.read, tally.produced, tally.rejects) == (9, 9, [])
    assert [value for _, _, value, _ in producer.sent] == [line.encode() for line in lines]
    assert [key for _, key, _, _ in producer.sent] == [f"u{n % 3}".encode() for n in range(9)]
    # One partition per user, as the default partitioner would pick it.
    by_user: dict[bytes | None, set[int | None]] = {}
    for _, key, _, partition in producer.sent:
        by_user.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in by_user.values())


def test_invalid_rows_are_counted_with_position_and_field_not_fatal(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(
        "\n".join([json.dumps(doc(1)), "{broken", json.dumps(doc(2, type="like")), json.dumps(doc(3))]) + "\n"
    )
    producer = RecordingProducer()
    tally = run(list(iter_source(SourceSpec(str(path)), settings)), producer)
    assert (tally.read, tally.produced) == (4, 2)
    assert [(r.position, r.field) for r in tally.rejects] == [("2", "$"), ("3", "type")]
    assert tally.rejects[0].raw == "{broken"


def test_dry_run_validates_without_producing(tmp_path: Path, settings: Settings) -> None:
    tally = run([(1, json.dumps(doc(1)).encode(), None), (2, b"[]", None)], None)
    assert (tally.read, tally.produced, len(tally.rejects)) == (2, 0, 1)


def test_shards_split_users_without_overlap_and_keep_each_users_order() -> None:
    items: list[Item] = [(n, json.dumps(doc(n, user=f"u{n % 11}")).encode(), None) for n in range(200)]
    shards = [RecordingProducer(), RecordingProducer(), RecordingProducer()]
    tallies = [run(items, producer, (i, 3)) for i, producer in enumerate(shards)]
    assert sum(t.read for t in tallies) == 200
    users = [{key for _, key, _, _ in p.sent} for p in shards]
    assert not (users[0] & users[1]) and not (users[1] & users[2]) and not (users[0] & users[2])
    for producer in shards:
        for user in {key for _, key, _, _ in producer.sent}:
            ids = [json.loads(v or b"")["event_id"] for _, k, v, _ in producer.sent if k == user]
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
    producer = RecordingProducer()
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
    producer = RecordingProducer()
    tally = run(list(iter_source(SourceSpec(str(parquet_path)), settings)), producer)
    assert (tally.produced, tally.rejects) == (2, [])
    assert json.loads(producer.sent[1][2] or b"")["query"] == "q"


def test_row_to_doc_leaves_unconvertible_cells_for_the_validator() -> None:
    assert row_to_doc({"ts_ms": "12", "v": "1", "context": "{}", "item_id": "", "x": None}) == {
        "ts_ms": 12,
        "v": 1,
        "context": {},
    }
    assert row_to_doc({"ts_ms": "soon", "context": "{bad"}) == {"ts_ms": "soon", "context": "{bad"}


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
        json.dumps(doc(5, query="x" * 20_000)).encode(),  # over the size limit
        json.dumps(doc(6, type="like")).encode(),
        b'{"event_id": "e7", "user_id": "u1", "user_id": "u2", "type": "view", "item_id": "i", '
        b'"ts_ms": 1764000000000}',
        b" \t" + json.dumps(doc(8)).encode() + b"\r ",
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
        assert fast == outcome(functools.partial(decode_event, raw, limits=limits, now_ms=TS)), raw[:80]
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
            loaded = json.loads(raw)
        except (ValueError, RecursionError):
            loaded = None
        if isinstance(loaded, dict) and isinstance(loaded.get("user_id"), str):
            expected = loaded["user_id"]
        assert _user_of(raw, parse_line(raw, limits)) == expected, raw[:80]
