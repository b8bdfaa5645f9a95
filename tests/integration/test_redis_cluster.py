"""The worker against a real Redis Cluster (3 masters, 3 replicas, `cluster_services`).

Field case f19: on a cluster one user's keys hashed to three slots, the write failed with
CROSSSLOT and the worker exited 70 in a loop. Here: the one event becomes a profile and the worker
goes on; Redis equals the offline recomputation (replays leave it identical); and a master
SIGKILLed mid-stream is replaced by its replica while the worker keeps going, after which Redis
still equals the offline recomputation.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from stream.core.events import Event, EventLimits, event_from_dict
from stream.core.sample import SampleSpec, sample_events
from stream.core.settings import Settings
from stream.ingest.producer import EventProducer
from stream.kafka.topics import ensure_topics
from stream.redis.client import redis_sync
from stream.redis.reco_store import RECO_KIND, popular_key
from tests.integration.conftest import (
    CLUSTER_INSTANCE,
    ModelFiles,
    Services,
    delete_keys,
    isolated_settings,
    run_services,
)
from tests.integration.convergence import converge, offline, redis_state, wait_processed
from tests.integration.worker import start_worker, stop_worker
from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIELD_CASES = REPO.parent / "shared" / "field-cases"
FAILOVER_TIMEOUT_S = 60


@pytest.fixture
def on_cluster(
    cluster_services: Services, model_files: ModelFiles, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Settings]:
    """`isolated` on the Redis Cluster."""
    settings = isolated_settings(cluster_services, model_files, request.node.name, tmp_path)
    yield settings
    delete_keys(settings)


def stream_for_users(users: int, seed: int) -> list[Event]:
    return sample_events(SampleSpec(users=users, events=users * 12, items=500, seed=seed, zipf_s=0.3))


def test_field_case_f19_one_event_becomes_a_profile_and_the_worker_goes_on(
    on_cluster: Settings, tmp_path: Path
) -> None:
    settings = on_cluster.model_copy(update={"batch_max_wait_ms": 100})
    ensure_topics(settings)
    line = (FIELD_CASES / "f19-redis-cluster-one-event.jsonl").read_text().strip()
    event = event_from_dict(
        json.loads(line), limits=EventLimits.from_settings(settings), now_ms=int(time.time() * 1000)
    )
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    client = redis_sync(settings)
    try:
        with EventProducer(settings) as producer:
            producer.send_many([event])
        reco = settings.redis_key(RECO_KIND, event.user_id)
        deadline = time.monotonic() + 120
        while client.hget(reco, "json") is None:
            assert worker.poll() is None, (
                f"worker exited with {worker.returncode}:\n{log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        payload = json.loads(client.hget(reco, "json") or b"{}")
        assert payload["window_newest_event_id"] == event.event_id
        assert client.zscore(popular_key(settings), event.item_id or "") is not None
        time.sleep(2)  # the next batches (none) and commits: the worker must still be running
        assert worker.poll() is None, log.read_text()[-3000:]
    finally:
        client.close()
        code = stop_worker(worker)
    assert code == 0, log.read_text()[-2000:]
    assert "CROSSSLOT" not in log.read_text()


def test_redis_on_a_cluster_equals_offline_and_a_replay_leaves_it_identical(
    on_cluster: Settings, tmp_path: Path
) -> None:
    settings = on_cluster.model_copy(update={"batch_max_events": 400, "batch_max_wait_ms": 200})
    ensure_topics(settings)
    events = stream_for_users(100, seed=23)
    expected = offline(settings, events)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        with EventProducer(settings) as producer:
            producer.send_many(events)
        first = converge(settings, expected, worker, log)
        with EventProducer(settings) as producer:
            producer.send_many(events)
        wait_processed(settings, 2 * len(events), worker)
        assert redis_state(settings, sorted(expected)) == first
    finally:
        assert stop_worker(worker) == 0, log.read_text()[-2000:]


def master_of(settings: Settings, key: str) -> int:
    client = redis_sync(settings)
    try:
        assert isinstance(client, RedisCluster)
        return int(client.get_node_from_key(key).port)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def node_pid(port: int) -> int:
    return int((REPO / "var" / "services" / CLUSTER_INSTANCE / f"redis-{port}" / "redis.pid").read_text())


def test_a_master_killed_mid_stream_fails_over_and_redis_equals_offline(
    on_cluster: Settings, tmp_path: Path
) -> None:
    settings = on_cluster.model_copy(update={"batch_max_events": 100, "batch_max_wait_ms": 100})
    ensure_topics(settings)
    events = stream_for_users(80, seed=29)
    expected = offline(settings, events)
    log = tmp_path / "worker.log"
    # The master holding `popular` (every batch writes it) and, with it, a third of the users.
    victim = master_of(settings, popular_key(settings))
    third = len(events) // 3
    worker = start_worker(settings, log)
    try:
        with EventProducer(settings) as producer:
            producer.send_many(events[:third])
        wait_processed(settings, third // 2, worker)
        os.kill(node_pid(victim), signal.SIGKILL)
        killed_at = time.monotonic()
        with EventProducer(settings) as producer:
            producer.send_many(events[third:])
        deadline = time.monotonic() + FAILOVER_TIMEOUT_S
        while master_of(settings, popular_key(settings)) == victim:
            assert time.monotonic() < deadline, "no replica was promoted"
            time.sleep(0.5)
        promoted_after_s = time.monotonic() - killed_at
        assert promoted_after_s < FAILOVER_TIMEOUT_S
        converge(settings, expected, worker, log)
        assert worker.poll() is None, "the worker exited during the failover"
    finally:
        code = stop_worker(worker)
        # The killed node comes back as a replica of the promoted one, for the tests after this.
        up = run_services("up", "--name", CLUSTER_INSTANCE, "--only", "redis", check=False)
        assert up.returncode == 0, up.stdout + up.stderr
    assert code == 0, log.read_text()[-2000:]
    assert "unreachable" in log.read_text()  # the write path really retried through the failover


def test_services_status_and_env_name_every_cluster_node(cluster_services: Services) -> None:
    status = run_services("status", "--name", CLUSTER_INSTANCE, check=False)
    nodes = [line for line in status.stdout.splitlines() if line.startswith("redis cluster node")]
    assert len(nodes) == 6 and all("running" in line for line in nodes), status.stdout
    env = run_services("env", "--name", CLUSTER_INSTANCE).stdout
    assert f"export PROFILESTREAM_REDIS_URL={cluster_services.redis_url}" in env
    assert "export PROFILESTREAM_REDIS_CLUSTER=true" in env
