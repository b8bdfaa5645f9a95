"""`profilestream load segment|ga4|snowplow`: files of a tracking sender's records become v1 events
mapped exactly as the collector's endpoints map the same payloads."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from stream.cli.load import load_command
from stream.core.events import EventLimits, event_from_dict

PAYLOADS = Path(__file__).parent / "adapters" / "payloads"


def _jsonl(tmp_path: Path, name: str, records: list[object], extra: bytes = b"") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(json.dumps(r).encode() for r in records) + b"\n" + extra)
    return path


def _load(source: str, path: Path, out: Path) -> dict[str, object]:
    result = CliRunner().invoke(load_command, [source, str(path), str(out), "--json"])
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.output.strip().splitlines()[-1])
    return report


def _events(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_segment_file_maps_orders_per_product_and_counts_bad_lines(tmp_path: Path) -> None:
    batch = json.loads((PAYLOADS / "segment_batch.json").read_text(encoding="utf-8"))
    path = _jsonl(tmp_path, "segment.jsonl", [batch], extra=b'{"type": "track", "event": \n')
    report = _load("segment", path, tmp_path / "out.jsonl")
    events = _events(tmp_path / "out.jsonl")
    assert report["written"] == len(events) > 0
    assert report["malformed"] == 1
    for doc in events:
        event_from_dict(doc, limits=EventLimits(), now_ms=2_000_000_000_000)
    ids = [str(doc["event_id"]) for doc in events]
    assert len(ids) == len(set(ids))


def test_same_file_loads_to_the_same_events_twice(tmp_path: Path) -> None:
    records = [
        json.loads((PAYLOADS / name).read_text(encoding="utf-8"))
        for name in ("ga4_view_item.json", "ga4_purchase.json")
    ]
    path = _jsonl(tmp_path, "ga4.jsonl", records)
    _load("ga4", path, tmp_path / "a.jsonl")
    _load("ga4", path, tmp_path / "b.jsonl")
    first, second = _events(tmp_path / "a.jsonl"), _events(tmp_path / "b.jsonl")
    assert first and [e["event_id"] for e in first] == [e["event_id"] for e in second]
    # ga4_purchase.json carries a user_id beside its client_id: the login is an identify record.
    assert {e["type"] for e in first} == {"view", "purchase", "identify"}


def test_snowplow_file_and_unknown_names_are_counted_not_fatal(tmp_path: Path) -> None:
    tp2 = json.loads((PAYLOADS / "snowplow_tp2.json").read_text(encoding="utf-8"))
    path = _jsonl(tmp_path, "sp.jsonl", [tp2, {"schema": "x", "data": [{"e": "pp", "eid": "e-9"}]}])
    report = _load("snowplow", path, tmp_path / "out.jsonl")
    assert report["written"] == len(_events(tmp_path / "out.jsonl")) > 0
