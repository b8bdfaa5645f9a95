"""Events through real Kafka, a real Faust worker (aiokafka underneath) and real Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from stream.core.deadletter import HEADER_FIELD, HEADER_REASON, HEADER_SOURCE
from stream.core.events import Event, EventType
from stream.core.sample import SampleSpec, sample_events
from stream.core.settings import Settings
from stream.ingest.producer import EventProducer
from stream.kafka.topics import ensure_topics, windows_changelog_topic
from stream.redis.client import redis_sync
from stream.serving.lookups import recent_activity
from tests.integration.convergence import events_processed
from tests.integration.worker import start_worker, stop_worker

pytestmark = pytest.mark.integration

DRAIN_TIMEOUT_S = 180


def wait_for_lists(
    settings: Settings, expected: dict[str, list[str]], worker: subprocess.Popen[bytes], worker_log: Path
) -> dict[str, list[str]]:
    """Poll Redis until every user's list holds as many events as we produced for that user."""

    async def snapshot() -> dict[str, list[str]]:
        return {
            user: [entry["event_id"] for entry in await recent_activity(settings, user)] for user in expected
        }

    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        seen = asyncio.run(snapshot())
        if all(len(seen[user]) >= len(ids) for user, ids in expected.items()):
            return seen
        if worker.poll() is not None or time.monotonic() > deadline:
            missing = sum(len(ids) - len(seen[user]) for user, ids in expected.items())
            log_tail = worker_log.read_text(errors="replace")[-3000:]
            state = "timed out" if worker.poll() is None else f"worker exited with {worker.returncode}"
            pytest.fail(f"{missing} events never reached Redis ({state}); worker log ends:\n{log_tail}")
        time.sleep(0.5)


@pytest.mark.parametrize("table_store", ["memory", "rocksdb"])
def test_thousand_events_arrive_complete_and_in_per_user_order(
    isolated: Settings, tmp_path: Path, table_store: str
) -> None:
    settings = isolated.model_copy(
        update={"recent_events_per_user": 1000, "events_partitions": 4, "table_store": table_store}
    )
    ensure_topics(settings)
    events = sample_events(SampleSpec(users=40, events=1000, seed=11))
    expected: dict[str, list[str]] = defaultdict(list)
    for event in events:
        expected[event.user_id].append(event.event_id)
    with EventProducer(settings) as producer:
        assert producer.send_many(events) == 1000

    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        seen = wait_for_lists(settings, expected, worker, tmp_path / "worker.log")
    finally:
        code = stop_worker(worker)
    assert seen == expected
    assert code == 0, (tmp_path / "worker.log").read_text()[-2000:]


def test_malformed_events_go_to_dead_letter_topic_while_good_ones_flow(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated
    ensure_topics(settings)
    good = sample_events(SampleSpec(users=5, events=50, seed=3))
    bad = {
        b"{not json": "$",
        json.dumps(
            {"event_id": "x1", "user_id": "u-bad", "type": "view", "ts_ms": 1_700_000_000_000}
        ).encode(): ("item_id"),
        json.dumps(
            {"event_id": "x2", "user_id": "u-bad", "type": "view", "item_id": "i", "ts_ms": 1_700_000_000}
        ).encode(): "ts_ms",
        # Over the byte limit: rejected naming the field that makes it large.
        json.dumps(
            {
                "event_id": "x3",
                "user_id": "u-bad",
                "type": "view",
                "item_id": "i",
                "ts_ms": 1_700_000_000_000,
                "context": {"blob": "x" * 20_000},
            }
        ).encode(): "context",
    }
    raw_producer = KafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all")
    bad_values = list(bad)
    for n, event in enumerate(good):
        raw_producer.send(settings.events_topic, key=event.user_id.encode(), value=event.to_json())
        # Interleave the bad messages with the good ones rather than sending them as a block.
        if n % 10 == 0 and n // 10 < len(bad_values):
            raw_producer.send(settings.events_topic, key=b"u-bad", value=bad_values[n // 10])
    raw_producer.flush()
    raw_producer.close()

    expected: dict[str, list[str]] = defaultdict(list)
    for event in good:
        expected[event.user_id].append(event.event_id)
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        seen = wait_for_lists(settings, expected, worker, tmp_path / "worker.log")
    finally:
        stop_worker(worker)
    assert seen == expected
    # Privacy: the worker's INFO log names no user and repeats no search query.
    log_text = (tmp_path / "worker.log").read_text(errors="replace")
    assert "batch:" in log_text  # the log does describe every batch, at INFO
    private = {e.user_id for e in good} | {"u-bad"} | {e.query for e in good if e.query}
    assert [p for p in sorted(private) if p in log_text] == []

    consumer = KafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=settings.kafka_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
        group_id=None,
    )
    letters = [record for _, record in zip(range(len(bad)), consumer, strict=False)]
    consumer.close()
    assert sorted(r.value for r in letters) == sorted(bad)
    for record in letters:
        headers = dict(record.headers)
        assert headers[HEADER_FIELD].decode() == bad[record.value]
        assert headers[HEADER_REASON]
        assert headers[HEADER_SOURCE].decode().startswith(settings.events_topic + "/")
        assert record.key == b"u-bad"


def test_forget_removes_every_trace_of_the_user_and_old_replays_cannot_restore_it(
    isolated_both: Settings, tmp_path: Path
) -> None:
    settings = isolated_both.model_copy(update={"batch_max_wait_ms": 100})
    ensure_topics(settings)
    t0 = 1_764_000_000_000
    history = [
        Event(f"{user}-{n}", user, EventType.VIEW, t0 + n * 1000, item_id=f"sku-{n:05d}")
        for user in ("gone", "kept")
        for n in range(5)
    ] + [Event("gone-q", "gone", EventType.SEARCH, t0 + 6000, query="desk lamp")]
    redis = redis_sync(settings)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)

    def traces(user: str) -> list[str]:
        # Every key of the user (schema v2: the id is the hash tag), but the apply-once marker,
        # which holds a batch id and expires ten minutes after the user's last write.
        keys = redis.scan_iter(match=f"{settings.redis_key_prefix}:{{{user}}}:*")
        return sorted(k.decode() for k in keys if b":applied:" not in k)

    def wait(what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 120
        while not done():
            assert worker.poll() is None and time.monotonic() < deadline, f"{what}\n{log.read_text()[-2000:]}"
            time.sleep(0.2)

    try:
        with EventProducer(settings) as producer:
            producer.send_many(history)
        wait("profiles written", lambda: len(traces("gone")) == 3 and len(traces("kept")) == 3)
        with EventProducer(settings) as producer:
            producer.send_many([Event("gone-forget", "gone", EventType.FORGET, t0 + 10_000)])
        forgotten_key = settings.redis_key("forgotten", "gone")
        wait("forget applied", lambda: traces("gone") == [forgotten_key])
        # Only the tombstone is left, holding nothing but the forget's time.
        assert redis.get(forgotten_key) == str(t0 + 10_000).encode()
        assert len(traces("kept")) == 3
        # An old replay of the user's events must not bring anything back.
        with EventProducer(settings) as producer:
            producer.send_many(history[:5] + history[-1:])
        wait("replay processed", lambda: events_processed(settings) >= len(history) + 1 + 6)
        assert traces("gone") == [forgotten_key]
    finally:
        stop_worker(worker)
        redis.close()
    # The worker's window table (its changelog in Kafka) holds no event of the user any more.
    changelog = KafkaConsumer(
        windows_changelog_topic(settings),
        bootstrap_servers=settings.kafka_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
        group_id=None,
    )
    last_window = [json.loads(r.value) for r in changelog if r.key == b"gone"][-1]
    changelog.close()
    assert last_window["e"] == []
    assert last_window["f"] == t0 + 10_000
