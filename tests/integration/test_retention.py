"""Bounded state on a real worker: users past retention leave the table (a changelog tombstone),
and popularity counts only catalogue items."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from kafka import KafkaConsumer
from redis import Redis

from stream.core.events import Event, EventType
from stream.core.settings import Settings
from stream.ingest.producer import EventProducer
from stream.kafka.bulk_sender import default_partition
from stream.kafka.topics import ensure_topics, windows_changelog_topic
from stream.redis.reco_store import popular_key
from tests.integration.convergence import events_processed
from tests.integration.worker import start_worker, stop_worker

pytestmark = pytest.mark.integration


def metric(settings: Settings, name: str) -> float:
    url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


def test_inactive_users_leave_the_table_and_popular_holds_only_catalogue_items(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated.model_copy(update={"batch_max_wait_ms": 100, "user_retention_s": 60})
    ensure_topics(settings)
    t0 = 1_764_000_000_000
    first = [
        Event("q-1", "quiet", EventType.VIEW, t0, item_id="sku-00001"),
        Event("q-2", "quiet", EventType.CLICK, t0 + 1, item_id="made-up-item"),
        Event("a-1", "active", EventType.VIEW, t0, item_id="sku-00002"),
    ]
    # Two minutes later (event time): "active" and a newcomer on every partition (the watermark is
    # per partition) are heard from; "quiet" is then past its 60 s.
    partitions = list(range(settings.events_partitions))
    newcomers = {default_partition(f"new-{n}".encode(), partitions): f"new-{n}" for n in range(64)}
    assert len(newcomers) == len(partitions)
    later = [Event("a-2", "active", EventType.VIEW, t0 + 120_000, item_id="sku-00003")] + [
        Event(f"{user}-1", user, EventType.VIEW, t0 + 120_000, item_id="sku-00003")
        for user in newcomers.values()
    ]
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)

    def wait(what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 120
        while not done():
            assert worker.poll() is None and time.monotonic() < deadline, f"{what}\n{log.read_text()[-2000:]}"
            time.sleep(0.2)

    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        with EventProducer(settings) as producer:
            producer.send_many(first)
        wait("first events processed", lambda: events_processed(settings) >= len(first))
        assert metric(settings, "profilestream_users_expired_total") == 0
        with EventProducer(settings) as producer:
            producer.send_many(later)
        wait("quiet user expired", lambda: metric(settings, "profilestream_users_expired_total") >= 1)
        assert metric(settings, "profilestream_users_expired_total") == 1
        assert metric(settings, "profilestream_popularity_unknown_items_total") == 1
        members = cast(list[bytes], redis.zrange(popular_key(settings), 0, -1))
        popular = {m.decode() for m in members}
        assert popular == {"sku-00001", "sku-00002", "sku-00003"}
    finally:
        stop_worker(worker)
        redis.close()
    changelog = KafkaConsumer(
        windows_changelog_topic(settings),
        bootstrap_servers=settings.kafka_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
        group_id=None,
    )
    records = [(r.key, r.value) for r in changelog if r.key in (b"quiet", b"active")]
    changelog.close()
    # The expired user's last changelog record is a tombstone (compaction then drops the key);
    # the active user's window stays.
    assert [v for k, v in records if k == b"quiet"][-1] is None
    assert [v for k, v in records if k == b"active"][-1] is not None
