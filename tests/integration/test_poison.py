"""No record, window or batch can stop a worker (issue 15 part 1; issue 14 parts 3 and 5).

Real Kafka, Redis and worker processes: an oversized record (field case f20) is dead-lettered as
a bounded copy; dead letters are acknowledged before the position moves (a crash in between loses
none); a record that makes its batch fail is quarantined, not retried forever; a corrupt changelog
record starts that user's window empty; /readyz answers "loading" while the model loads.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from stream.core.deadletter import (
    HEADER_FIELD,
    HEADER_ORIGINAL_BYTES,
    HEADER_ORIGINAL_SHA256,
    HEADER_REASON,
    HEADER_TRUNCATED,
)
from stream.core.events import Event, EventType
from stream.core.sample import SampleSpec, sample_events
from stream.core.settings import Settings
from stream.kafka.topics import ensure_topics
from stream.worker.app import WINDOWS_TABLE
from tests.integration.convergence import CONVERGE_TIMEOUT_S, converge, offline
from tests.integration.worker import start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def events_for(users: int, seed: int) -> list[Event]:
    return sample_events(SampleSpec(users=users, events=users * 10, items=500, seed=seed, zipf_s=0.3))


def produce(
    settings: Settings,
    records: list[tuple[bytes, bytes]],
    topic: str | None = None,
    headers: dict[bytes, list[tuple[str, bytes]]] | None = None,
) -> None:
    """Send `records` (key, value) in order; `headers` by key, for the records that carry some."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all", max_request_size=2_000_000)
    for key, value in records:
        producer.send(topic or settings.events_topic, key=key, value=value, headers=(headers or {}).get(key))
    producer.flush()
    producer.close()


def dead_letters(settings: Settings, at_least: int) -> list[Any]:
    consumer = KafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=settings.kafka_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
        group_id=None,
    )
    letters = [record for _, record in zip(range(at_least + 100), consumer, strict=False)]
    consumer.close()
    return letters


def oversized_record() -> bytes:
    """Field case f20: a ~1 MB event (over event_max_bytes, near the producer's own limit)."""
    event = {
        "event_id": "big-ctx-1",
        "user_id": "fake-user-bigctx",
        "type": "view",
        "item_id": "sku-00120",
        "ts_ms": int(time.time() * 1000),
        "context": {f"k{i}": "x" * 32000 for i in range(32)},
    }
    return json.dumps(event, separators=(",", ":")).encode()


def test_f20_an_oversized_record_is_dead_lettered_bounded_and_the_worker_goes_on(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated.model_copy(update={"batch_max_events": 200, "batch_max_wait_ms": 200})
    ensure_topics(settings)
    events = events_for(20, seed=61)
    big = oversized_record()
    records = [(e.user_id.encode(), e.to_json()) for e in events]
    records.insert(len(records) // 2, (b"fake-user-bigctx", big))
    invalid_utf8 = b'{"event_id":"bad-\xff","user_id":"u-x","type":"view","item_id":"i","ts_ms":1}'
    records.insert(len(records) // 3, (b"u-x", invalid_utf8))
    trace = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    produce(settings, records, headers={b"u-x": [trace]})
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        converge(settings, offline(settings, events), worker, log)
    finally:
        assert stop_worker(worker) == 0
    letters = {bytes(r.key): r for r in dead_letters(settings, 2)}
    letter = letters[b"fake-user-bigctx"]
    headers = dict(letter.headers)
    assert len(letter.value) == settings.dead_letter_max_payload_bytes
    assert big.startswith(letter.value)
    assert headers[HEADER_ORIGINAL_BYTES] == str(len(big)).encode()
    assert len(headers[HEADER_ORIGINAL_SHA256]) == 64
    assert headers[HEADER_TRUNCATED] == b"true"
    assert b"over the limit" in headers[HEADER_REASON]
    assert letters[b"u-x"].value == invalid_utf8
    # A stray byte in one string names that field; the producer's own headers travel along.
    assert dict(letters[b"u-x"].headers)[HEADER_FIELD] == b"event_id"
    assert trace in letters[b"u-x"].headers


def test_dead_letters_are_acked_before_the_position_moves_on(isolated: Settings, tmp_path: Path) -> None:
    # crashing_worker dlq-delay holds dead letters back 3 s and SIGKILLs the worker (after a
    # producer flush, so the stored position is durable) 1 s after its first Redis write. A worker
    # that moved on without the acks has stored its position past records whose dead letters were
    # never sent: the restarted worker skips them and they are lost.
    settings = isolated.model_copy(update={"batch_max_events": 2000, "batch_max_wait_ms": 3000})
    ensure_topics(settings)
    events = events_for(20, seed=62)
    invalid = [
        json.dumps({"event_id": f"bad-{n}", "user_id": "u-bad", "type": "view", "ts_ms": 1}).encode()
        for n in range(5)
    ]
    records = [(e.user_id.encode(), e.to_json()) for e in events]
    for n, value in enumerate(invalid):
        records.insert(n * 30, (b"u-bad", value))
    produce(settings, records)
    log = tmp_path / "worker.log"
    crashing = start_worker(settings, log, module=("tests.integration.crashing_worker", "dlq-delay"))
    try:
        assert crashing.wait(timeout=CONVERGE_TIMEOUT_S) < 0, log.read_text()[-2000:]
    finally:
        stop_worker(crashing)
    worker = start_worker(settings, log)
    try:
        converge(settings, offline(settings, events), worker, log)
    finally:
        assert stop_worker(worker) == 0
    assert {r.value for r in dead_letters(settings, len(invalid))} >= set(invalid)


def test_a_record_that_fails_its_batch_is_quarantined_and_no_crash_loop(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated.model_copy(update={"batch_max_events": 500, "batch_max_wait_ms": 500})
    ensure_topics(settings)
    events = events_for(30, seed=63)
    poison = events[len(events) // 2]
    produce(settings, [(e.user_id.encode(), e.to_json()) for e in events])
    log = tmp_path / "worker.log"
    worker = start_worker(
        settings, log, module=("tests.integration.crashing_worker", "poison", poison.event_id)
    )
    try:
        expected = offline(settings, [e for e in events if e is not poison])
        converge(settings, expected, worker, log)
        assert worker.poll() is None
    finally:
        assert stop_worker(worker) == 0
    letters = dead_letters(settings, 1)
    assert [r.value for r in letters] == [poison.to_json()]
    reason = dict(letters[0].headers)[HEADER_REASON].decode()
    assert "quarantined" in reason and f"injected failure on event {poison.event_id}" in reason


def test_a_corrupt_changelog_record_starts_that_users_window_empty(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated.model_copy(update={"batch_max_events": 200, "batch_max_wait_ms": 200})
    ensure_topics(settings)
    first = events_for(10, seed=64)
    victim = first[0].user_id
    produce(settings, [(e.user_id.encode(), e.to_json()) for e in first])
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        converge(settings, offline(settings, first), worker, log)
    finally:
        assert stop_worker(worker) == 0
    changelog = f"{settings.consumer_group}-{WINDOWS_TABLE}-changelog"
    produce(settings, [(victim.encode(), b'{"e":[["x","view","not a time",null,null]]}')], changelog)
    later = [
        Event(
            f"after-{n}", victim, EventType.VIEW, max(e.ts_ms for e in first) + 1000 + n, item_id="sku-00001"
        )
        for n in range(3)
    ]
    produce(settings, [(e.user_id.encode(), e.to_json()) for e in later])
    expected = offline(settings, first)
    expected[victim] = offline(settings, later)[victim]
    worker = start_worker(settings, log)
    try:
        converge(settings, expected, worker, log)
        assert metric(settings, "profilestream_corrupt_windows_total") == 1.0
    finally:
        assert stop_worker(worker) == 0
    assert "is corrupt" in log.read_text()


def test_readyz_answers_loading_while_the_model_loads(isolated: Settings, tmp_path: Path) -> None:
    ensure_topics(isolated)
    log = tmp_path / "worker.log"
    worker = start_worker(isolated, log, module=("tests.integration.crashing_worker", "slow-load", "25"))
    base = f"http://127.0.0.1:{isolated.worker_web_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            try:
                urllib.request.urlopen(base + "/readyz", timeout=2)
            except urllib.error.HTTPError as exc:
                body = json.loads(exc.read())
                if any("loading" in reason for reason in body["waiting_for"]):
                    assert exc.code == 503
                    break
            except OSError:
                pass
            time.sleep(0.5)
        with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
            assert response.status == 200
    finally:
        stop_worker(worker)


def metric(settings: Settings, name: str) -> float:
    url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return float("nan")
