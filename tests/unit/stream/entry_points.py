"""Every way an event gets in, driven with one field's value: what each entry point makes of it.

Used by test_one_normalisation.py (the parity guarantee) and to print the table of the field rules.
Each `via_*` function takes v1 field overrides of a valid `view` event and returns an `Outcome`:
the value the produced event holds for the field, or the field and reason of its rejection. The
collector and the standard routes run as ASGI apps with a fake producer; replay and load run on
temporary files through their real readers.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from stream.core.errors import InvalidEvent
from stream.core.events import EventLimits, decode_event
from stream.core.settings import load_settings
from stream.core.tabular import V1_COLUMNS
from stream.ingest.collector import create_collector_app
from stream.ingest.gateway import CollectorConfig
from stream.ingest.loaders import load_generic
from stream.ingest.replay import KafkaPythonSink, SourceSpec, _replay_items, iter_source
from stream.ingest.sdk import ProfilestreamProducer
from tests.support.fakes import FakeProducer

# The injected clock of the collector, the SDK and the worker; replay and load read the real one,
# which is later.
NOW_MS = 1_764_000_000_000
TS_MS = 1_763_000_000_034  # 2025-11-13T02:13:20.034Z


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    value: object = None  # the produced event's value of the field, when accepted
    field: str | None = None  # the field a rejection names
    reason: str | None = None

    def short(self) -> str:
        if self.accepted:
            return f"ok {self.value!r}"
        return f"REJECT {self.field}: {self.reason}"


def base(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "e-1",
        "user_id": "u1",
        "type": "view",
        "item_id": "sku-1",
        "ts_ms": TS_MS,
    }
    doc.update(overrides)
    return doc


def _settings() -> Any:
    return load_settings({}, events_topic="t.events")


def _post(
    path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any, list[dict[str, Any]]]:
    producer = FakeProducer()
    app = create_collector_app(
        _settings(), producer_factory=lambda _: producer, config=CollectorConfig(), clock_ms=lambda: NOW_MS
    )

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            return await client.post(
                path, content=body, headers={"content-type": "application/json", **(headers or {})}
            )

    response = asyncio.run(call())
    sent = [json.loads(v or b"") for _, _, v in producer.sent]
    return response.status_code, response.json(), sent


def _from_answer(name: str, status: int, answer: Any, sent: list[dict[str, Any]], key: str) -> Outcome:
    events = [e for e in sent if e.get("type") != "identify"]
    if events:
        return Outcome(True, events[0].get(key))
    problems = answer.get("rejected") or answer.get("errors") or []
    if not problems:
        return Outcome(False, field="?", reason=f"HTTP {status}: {answer}")
    return Outcome(False, field=problems[0]["field"], reason=problems[0]["reason"])


def via_collector(field: str, value: object) -> Outcome:
    status, answer, sent = _post("/v1/events", json.dumps(base(**{field: value})).encode())
    return _from_answer(field, status, answer, sent, field)


def via_worker(field: str, value: object) -> Outcome:
    doc = base(**{field: value})
    try:
        event = decode_event(json.dumps(doc).encode(), limits=EventLimits(), now_ms=NOW_MS)
    except InvalidEvent as exc:
        return Outcome(False, field=exc.field, reason=exc.reason)
    return Outcome(True, event.to_dict().get(field))


def via_sdk(field: str, value: object) -> Outcome:
    doc = base(**{field: value})
    producer = ProfilestreamProducer(
        _settings(), producer_factory=lambda _: FakeProducer(), clock_ms=lambda: NOW_MS
    )
    try:
        event = producer.track(
            doc["user_id"],
            doc["type"],
            item_id=doc.get("item_id"),
            ts_ms=doc.get("ts_ms"),
            event_id=doc.get("event_id"),
            query=doc.get("query"),
            session_id=doc.get("session_id"),
        )
    except InvalidEvent as exc:
        return Outcome(False, field=exc.field, reason=exc.reason)
    return Outcome(True, event.to_dict().get(field))


def _replayed(path: Path) -> Outcome:
    producer = FakeProducer()
    tally = _replay_items(
        iter(list(iter_source(SourceSpec(str(path)), _settings()))),
        limits=EventLimits(),
        sink=KafkaPythonSink(producer, "t"),
        pacer=None,
        shard=(0, 1),
        on_progress=lambda n: None,
    )
    if producer.sent:
        return Outcome(True, json.loads(producer.sent[0][2] or b""))
    if tally.unmapped:
        name = next(iter(tally.unmapped))
        return Outcome(False, field="type", reason=f"unmapped type {name!r} (skipped and counted)")
    if tally.rejects:
        return Outcome(False, field=tally.rejects[0].field, reason=tally.rejects[0].reason)
    return Outcome(False, field="?", reason="nothing produced, nothing rejected (a malformed line)")


def _field_of(outcome: Outcome, field: str) -> Outcome:
    if outcome.accepted:
        assert isinstance(outcome.value, dict)
        return Outcome(True, outcome.value.get(field))
    return outcome


def via_replay_jsonl(field: str, value: object, tmp: Path) -> Outcome:
    path = tmp / "events.jsonl"
    path.write_text(json.dumps(base(**{field: value})) + "\n", encoding="utf-8")
    return _field_of(_replayed(path), field)


def cell(value: object) -> str:
    """How a CSV writer spells a JSON value: text as it is, other values as JSON."""
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)


def via_replay_csv(field: str, value: object, tmp: Path) -> Outcome:
    path = tmp / "events.csv"
    doc = base(**{field: value})
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(list(doc))
        writer.writerow([cell(v) for v in doc.values()])
    return _field_of(_replayed(path), field)


def via_load(field: str, value: object, tmp: Path) -> Outcome:
    source, out = tmp / "table.jsonl", tmp / "out.jsonl"
    source.write_text(json.dumps(base(**{field: value})) + "\n", encoding="utf-8")
    report = load_generic(source, out, V1_COLUMNS)
    if report.written:
        return Outcome(True, json.loads(out.read_text(encoding="utf-8").splitlines()[0]).get(field))
    if report.unmapped_types:
        name = next(iter(report.unmapped_types))
        return Outcome(False, field="type", reason=f"unmapped type {name!r} (skipped and counted)")
    reason = next(iter(report.reasons), "?: nothing written")
    name, _, why = reason.partition(": ")
    return Outcome(False, field=name, reason=why)


# --- standard routes: the sender's field that carries the v1 field ------------------------------

SEGMENT_FIELDS = {"user_id": "userId", "item_id": "properties.product_id", "ts_ms": "originalTimestamp"}
SNOWPLOW_FIELDS = {"user_id": "uid", "item_id": "co.data[0].data.id", "ts_ms": "dtm"}
GA4_FIELDS = {
    "user_id": "client_id",
    "item_id": "events[0].params.items[0].item_id",
    "ts_ms": "events[0].timestamp_micros",
}


def via_segment(field: str, value: object) -> Outcome:
    message: dict[str, Any] = {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "m-1",
        "userId": "u1",
        "properties": {"product_id": "sku-1"},
        "originalTimestamp": "2025-11-13T02:13:20.034Z",
    }
    if field == "user_id":
        message["userId"] = value
    elif field == "item_id":
        message["properties"]["product_id"] = value
    elif field == "ts_ms":
        message["originalTimestamp"] = value
    status, answer, sent = _post("/v1/track", json.dumps(message).encode())
    return _from_answer(field, status, answer, sent, field)


def via_snowplow(field: str, value: object) -> Outcome:
    event: dict[str, Any] = {
        "e": "ue",
        "eid": "e-1",
        "uid": "u1",
        "dtm": str(TS_MS),
        "ue_pr": {
            "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            "data": {
                "schema": "iglu:com.snowplowanalytics.snowplow.ecommerce/"
                "snowplow_ecommerce_action/jsonschema/1-0-2",
                "data": {"type": "product_view"},
            },
        },
        "co": {
            "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
            "data": [
                {
                    "schema": "iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0",
                    "data": {"id": "sku-1"},
                }
            ],
        },
    }
    if field == "user_id":
        event["uid"] = value
    elif field == "item_id":
        event["co"]["data"][0]["data"]["id"] = value
    elif field == "ts_ms":
        event["dtm"] = value
    body = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": [event]}
    status, answer, sent = _post("/com.snowplowanalytics.snowplow/tp2", json.dumps(body).encode())
    return _from_answer(field, status, answer, sent, field)


def via_ga4(field: str, value: object) -> Outcome:
    """GA4 times are in microseconds: a time case gives GA4 its own spelling (see `micros`)."""
    event: dict[str, Any] = {
        "name": "view_item",
        "params": {"items": [{"item_id": "sku-1"}]},
        "timestamp_micros": TS_MS * 1000,
    }
    body: dict[str, Any] = {"client_id": "u1", "events": [event]}
    if field == "user_id":
        body["client_id"] = value
    elif field == "item_id":
        event["params"]["items"][0]["item_id"] = value
    elif field == "ts_ms":
        event["timestamp_micros"] = value
    status, answer, sent = _post("/mp/collect", json.dumps(body).encode())
    return _from_answer(field, status, answer, sent, field)


FileEntry = Callable[[str, object, Path], Outcome]
PlainEntry = Callable[[str, object], Outcome]

V1_ENTRY_POINTS: dict[str, PlainEntry | FileEntry] = {
    "collector": via_collector,
    "sdk": via_sdk,
    "worker": via_worker,
    "replay-jsonl": via_replay_jsonl,
    "replay-csv": via_replay_csv,
    "load": via_load,
}
STANDARD_ENTRY_POINTS: dict[str, tuple[PlainEntry, dict[str, str]]] = {
    "segment": (via_segment, SEGMENT_FIELDS),
    "snowplow": (via_snowplow, SNOWPLOW_FIELDS),
    "ga4": (via_ga4, GA4_FIELDS),
}


def run_v1(name: str, field: str, value: object, tmp: Path) -> Outcome:
    entry = V1_ENTRY_POINTS[name]
    if name in ("replay-jsonl", "replay-csv", "load"):
        return entry(field, value, tmp)  # type: ignore[call-arg]
    return entry(field, value)  # type: ignore[call-arg]


def sent_at(value: object, *, header: bool) -> Outcome:
    """The collector's skew correction: an event at TS_MS sent at `value` (envelope or header)."""
    if header:
        status, answer, sent = _post("/v1/events", json.dumps(base()).encode(), {"X-Sent-At-Ms": cell(value)})
    else:
        status, answer, sent = _post(
            "/v1/events", json.dumps({"sent_at_ms": value, "events": [base()]}).encode()
        )
    return _from_answer("ts_ms", status, answer, sent, "ts_ms")
