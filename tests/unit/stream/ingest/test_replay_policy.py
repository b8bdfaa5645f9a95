"""Replay applies the collector's event policy: an over-long query is cut the same way and counted,
an event still over PROFILESTREAM_EVENT_MAX_BYTES is rejected alone naming its largest field."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from stream.core.events import EventLimits, truncate_query
from stream.core.settings import load_settings
from stream.ingest.body import Batch, parse_batch
from stream.ingest.replay import KafkaPythonSink, ReplayReport, SourceSpec, _replay_items, iter_source
from tests.support.fakes import FakeProducer

TS = 1_764_000_000_000
LIMITS = EventLimits()


def doc(n: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"e{n}",
        "user_id": "u1",
        "type": "view",
        "item_id": "i",
        "ts_ms": TS,
    }
    event.update(changes)
    return {name: value for name, value in event.items() if value is not None}


def search(n: int, query: str) -> dict[str, Any]:
    return doc(n, type="search", item_id=None, query=query)


def replay_file(path: Path) -> tuple[Any, list[dict[str, Any]]]:
    producer = FakeProducer()
    tally = _replay_items(
        iter_source(SourceSpec(str(path)), load_settings({})),
        limits=LIMITS,
        sink=KafkaPythonSink(producer, "t"),
        pacer=None,
        shard=(0, 1),
        on_progress=lambda n: None,
    )
    return tally, [json.loads(value or b"") for _, _, value in producer.sent]


def collector(docs: list[dict[str, Any]]) -> Batch:
    outcome = parse_batch(json.dumps(docs).encode(), limits=LIMITS, max_events=100, received_ms=TS)
    assert isinstance(outcome, Batch)
    return outcome


QUERIES = [
    pytest.param("q" * 600, id="600-chars"),
    pytest.param("  pasted text " + "w " * 700, id="padded-paste"),
    pytest.param("x" * 40_000, id="over-the-byte-limit-as-written"),
    pytest.param("\U0001f600" * 6_000, id="24KB-of-emoji"),
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_replayed_over_long_query_is_cut_and_counted_as_the_collector_does(
    tmp_path: Path, query: str, suffix: str
) -> None:
    docs = [doc(1), search(2, query), search(3, "gel pens")]
    path = tmp_path / f"events{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    else:
        columns = ["event_id", "user_id", "type", "item_id", "query", "ts_ms"]
        with path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, columns)
            writer.writeheader()
            writer.writerows(docs)
    tally, sent = replay_file(path)
    accepted = collector(docs)
    assert (tally.produced, tally.rejects, tally.truncated) == (3, [], accepted.truncated) == (3, [], 1)
    assert [e.get("query") for e in sent] == [e.query for e in accepted.events]
    assert sent[1]["query"] == truncate_query(query)
    assert all(len(json.dumps(e, ensure_ascii=False).encode()) <= LIMITS.max_bytes for e in sent)


def _unsized(reason: str) -> str:
    return re.sub(r"\d+ bytes", "N bytes", reason)


@pytest.mark.parametrize(
    ("document", "field_name"),
    [
        (doc(9, context={"blob": "x" * 20_000}), "context"),
        (doc(9, context={"a": list(range(4_000))}), "context"),
        (doc(9, context={"blob": "y" * 2_000_000}), "context"),  # too large to parse at all
    ],
)
def test_an_oversized_replayed_event_is_rejected_alone_naming_its_largest_field(
    tmp_path: Path, document: dict[str, Any], field_name: str
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in [doc(1), document, doc(2)]) + "\n")
    tally, sent = replay_file(path)
    assert [e["event_id"] for e in sent] == ["e1", "e2"]
    [reject] = tally.rejects
    assert reject.field == field_name
    assert "PROFILESTREAM_EVENT_MAX_BYTES" in reject.reason or "shorten it" in reject.reason
    assert len(reject.raw) <= 2_000
    if len(json.dumps(document)) < LIMITS.max_raw_bytes:
        # The collector's rejection of the same event: the same field and reason (its size
        # includes the receive time the collector stamps).
        [rejected] = collector([doc(1), document]).rejected
        assert (rejected.field, _unsized(rejected.reason)) == (reject.field, _unsized(reject.reason))


def test_the_replay_report_says_how_many_queries_were_cut() -> None:
    report = ReplayReport(source="f", topic="t", read=3, produced=3, rejected=0, elapsed_s=1.0, truncated=2)
    assert report.to_dict()["truncated"] == 2


def test_the_summary_line_counts_cut_queries(capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli.replay import echo_replay_report

    echo_replay_report(
        ReplayReport(source="f", topic="t", read=3, produced=3, rejected=0, elapsed_s=1.0, truncated=2)
    )
    assert "2 x query over 512 characters, cut to them" in capsys.readouterr().out
