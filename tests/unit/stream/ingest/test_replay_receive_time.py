"""A received_ms a file gives later than the replay's (or loader's) clock plus the collector's
tolerance is set to the clock's now and reported: an event received in the future could outlast
every forget. A copy of the events topic keeps its receivers' times."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from stream.core.events import RECEIVE_TIME_TOLERANCE_MS, EventLimits, decode_event
from stream.core.settings import load_settings
from stream.core.window import Window, WindowConfig, apply_events
from stream.ingest.loaders import write_jsonl
from stream.ingest.receive_time import ReceiveClamps
from stream.ingest.replay import KafkaPythonSink, _replay_items
from tests.support.fakes import FakeProducer

YEAR_MS = 365 * 24 * 3600 * 1000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def line(n: int, received_ms: int | None) -> bytes:
    doc: dict[str, Any] = {
        "event_id": f"e{n}",
        "user_id": "u1",
        "type": "view",
        "item_id": "i",
        "ts_ms": now_ms(),
    }
    if received_ms is not None:
        doc["received_ms"] = received_ms
    return json.dumps(doc).encode()


def replayed(lines: list[bytes], *, from_client: bool) -> tuple[Any, list[int | None]]:
    producer = FakeProducer()
    tally = _replay_items(
        iter([(n + 1, raw, None) for n, raw in enumerate(lines)]),
        limits=EventLimits(),
        sink=KafkaPythonSink(producer, "t"),
        pacer=None,
        shard=(0, 1),
        on_progress=lambda n: None,
        from_client=from_client,
    )
    times = [
        decode_event(v or b"", limits=EventLimits(), now_ms=now_ms()).received_ms for _, _, v in producer.sent
    ]
    return tally, times


def test_a_file_line_received_in_the_future_is_set_to_the_replays_clock_and_counted() -> None:
    start = now_ms()
    near = start + RECEIVE_TIME_TOLERANCE_MS // 2  # another host's clock a little ahead: kept
    lines = [line(1, start + 3 * YEAR_MS), line(2, None), line(3, near), line(4, start + YEAR_MS)]
    tally, times = replayed(lines, from_client=True)
    assert tally.produced == 4 and tally.rejects == []
    first, absent, kept, second = times
    assert first is not None and second is not None
    assert start <= first <= now_ms() and start <= second <= now_ms()
    assert (absent, kept) == (None, near)
    assert tally.received.count == 2
    assert tally.received.first is not None
    assert tally.received.first.to_dict()["position"] == "1"
    assert tally.received.first.to_dict()["original"] == start + 3 * YEAR_MS


def test_a_copy_of_the_events_topic_keeps_its_receive_times() -> None:
    future = now_ms() + 3 * YEAR_MS
    tally, times = replayed([line(1, future)], from_client=False)
    assert times == [future] and tally.received.count == 0


def test_the_replay_report_names_the_count_and_the_first(tmp_path: Path) -> None:
    from stream.cli.replay import replay_command

    path = tmp_path / "received_future.jsonl"
    future = now_ms() + 3 * YEAR_MS
    path.write_bytes(line(1, None) + b"\n" + line(2, future) + b"\n" + line(3, future) + b"\n")
    args = [str(path), "--dry-run", "--json", "--rejects", str(tmp_path / "rejects.jsonl")]
    result = CliRunner().invoke(replay_command, args, obj=load_settings({}), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index('{"source"') :].splitlines()[0])
    assert report["clamped_received"] == 2
    first = report["clamped_received_first"]
    assert (first["position"], first["event_id"], first["field"], first["original"]) == (
        "2",
        "e2",
        "received_ms",
        future,
    )
    assert "RECEIVE_TIME_TOLERANCE_MS" in first["reason"]
    text = CliRunner().invoke(replay_command, [a for a in args if a != "--json"], obj=load_settings({}))
    assert "2 x received_ms past the replay's clock" in text.output


def test_load_sets_a_future_receive_time_to_its_clock_and_reports_it(tmp_path: Path) -> None:
    future = now_ms() + 3 * YEAR_MS
    docs = [json.loads(line(1, future)), json.loads(line(2, None))]
    out = tmp_path / "out.jsonl"
    report = write_jsonl(docs, out)
    written = [json.loads(raw) for raw in out.read_text().splitlines()]
    assert written[0]["received_ms"] <= now_ms() and "received_ms" not in written[1]
    assert report.clamped_received == 1
    assert report.to_dict()["clamped_received_first"]["original"] == future


def test_clamps_of_several_processes_add_up_and_keep_the_first() -> None:
    start = now_ms()
    events = [decode_event(line(n, start + YEAR_MS), limits=EventLimits(), now_ms=start) for n in (1, 2, 3)]
    none, one, two = ReceiveClamps(), ReceiveClamps(), ReceiveClamps()
    one.bound(events[0], 1)
    two.bound(events[1], 2)
    two.bound(events[2], 3)
    total = ReceiveClamps()
    for part in (none, one, two):
        total.merge(part)
    assert total.count == 3
    assert total.first is not None and total.first.event_id == "e1"


def forget_line(n: int, ts_ms: int, received_ms: int | None = None) -> bytes:
    doc: dict[str, Any] = {"event_id": f"f{n}", "user_id": "u1", "type": "forget", "ts_ms": ts_ms}
    if received_ms is not None:
        doc["received_ms"] = received_ms
    return json.dumps(doc).encode()


def test_a_file_forget_without_a_receive_time_is_received_when_replayed() -> None:
    # An erasure request stamped when the user asked, a day before the file is replayed: cut at
    # its ts_ms it would keep everything the collector received since.
    start = now_ms()
    asked_ms = start - 24 * 3600 * 1000
    lines = [forget_line(1, asked_ms), line(2, None), forget_line(3, asked_ms, received_ms=asked_ms + 5)]
    tally, times = replayed(lines, from_client=True)
    stamped, view, given = times
    assert stamped is not None and start <= stamped <= now_ms()
    # The user's later view is received after the stamped forget; a given receive time is kept.
    assert view is not None and view > stamped
    assert given == asked_ms + 5
    assert tally.forgets_stamped == 1


def test_a_copy_of_the_events_topic_keeps_its_forgets_as_they_are() -> None:
    asked_ms = now_ms() - 24 * 3600 * 1000
    tally, times = replayed([forget_line(1, asked_ms)], from_client=False)
    assert times == [None] and tally.forgets_stamped == 0


def test_a_users_later_events_in_the_file_are_received_after_its_stamped_forget() -> None:
    # The user came back after the erasure: the file's events after the forget must survive it.
    start = now_ms()
    asked_ms = start - 24 * 3600 * 1000
    after = json.dumps(
        {"event_id": "a1", "user_id": "u1", "type": "view", "item_id": "i", "ts_ms": asked_ms + 1_000}
    ).encode()
    other = json.dumps(
        {"event_id": "o1", "user_id": "u2", "type": "view", "item_id": "i", "ts_ms": asked_ms + 1_000}
    ).encode()
    again = forget_line(2, asked_ms + 2_000)
    tally, times = replayed([forget_line(1, asked_ms), after, other, again], from_client=True)
    forget_ms, after_ms, other_ms, again_ms = times
    assert forget_ms is not None and after_ms is not None and again_ms is not None
    assert forget_ms < after_ms < again_ms  # in file order: the second forget removes the view
    assert other_ms is None  # other users' events keep their own times
    assert tally.forgets_stamped == 2
    window = Window()
    config = WindowConfig()
    events = [
        decode_event(line, limits=EventLimits(), now_ms=now_ms())
        for line in (forget_line(1, asked_ms), after)
    ]
    stamped = [
        dataclasses.replace(events[0], received_ms=forget_ms),
        dataclasses.replace(events[1], received_ms=after_ms),
    ]
    assert [e.event_id for e in apply_events(window, stamped, config).window.events] == ["a1"]
