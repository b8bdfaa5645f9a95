"""A three-broker KRaft cluster (`deploy/local/services up --kafka-brokers 3`): profilestream's
topics get three copies and min.insync.replicas 2, and the broker that leads the events
partitions can be SIGKILLed mid-stream without losing an event or stopping the worker.

Runs on its own instance ("kafka3", ports 29692-29697 and 29679) so that killing a broker
disturbs no other test. The fault test prints one line of figures (run with ``-s``; the deploy
README quotes them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient
from redis import Redis

from stream.core.errors import ConfigError
from stream.core.sample import SampleSpec, sample_events
from stream.core.settings import Settings
from stream.ingest.producer import EventProducer
from stream.kafka.drain import end_offsets
from stream.kafka.topics import Replication, ensure_topics, windows_changelog_topic
from tests.integration.conftest import ModelFiles, Services, instance_running, isolated_settings, services_ok
from tests.integration.convergence import CONVERGE_TIMEOUT_S, converge, events_processed, offline
from tests.integration.test_topics import topic_config
from tests.integration.worker import start_worker, stop_worker
from tests.support.paths import REPO
from tests.support.ports import KAFKA3_KAFKA_PORT, KAFKA3_REDIS_PORT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INSTANCE = "kafka3"
BROKERS = 3
BOOTSTRAP = ",".join(f"127.0.0.1:{KAFKA3_KAFKA_PORT + 2 * n}" for n in range(BROKERS))
# The broker's smallest allowed session timeout: the group notices a lost member quickly.
SESSION_TIMEOUT_S = 6
REJOIN_TIMEOUT_S = 120


def services_cmd(*args: str) -> None:
    services_ok(INSTANCE, *args)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Services]:
    with instance_running(
        INSTANCE,
        "--kafka-brokers",
        str(BROKERS),
        "--kafka-port",
        str(KAFKA3_KAFKA_PORT),
        "--redis-port",
        str(KAFKA3_REDIS_PORT),
    ):
        yield Services(BOOTSTRAP, f"redis://127.0.0.1:{KAFKA3_REDIS_PORT}/0")


@pytest.fixture
def on_cluster(
    cluster: Services, model_files: ModelFiles, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Settings]:
    settings = isolated_settings(cluster, model_files, request.node.name, tmp_path).model_copy(
        update={"kafka_session_timeout_s": SESSION_TIMEOUT_S}
    )
    yield settings
    redis = Redis.from_url(cluster.redis_url)
    keys = list(redis.scan_iter(match=f"{settings.redis_key_prefix}:*"))
    if keys:
        redis.delete(*keys)
    redis.close()


def describe(settings: Settings, topic: str) -> list[dict[str, object]]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers, client_id="profilestream-test")
    try:
        (description,) = admin.describe_topics([topic])
        return sorted(description["partitions"], key=lambda p: int(str(p["partition_index"])))
    finally:
        admin.close()


def described(settings: Settings, topic: str, timeout_s: float = 30.0) -> list[dict[str, object]]:
    """`describe`, once the broker answering knows the topic's partitions: right after its creation
    another broker of the cluster may not have the metadata yet (an empty list, seen in CI)."""
    deadline = time.monotonic() + timeout_s
    while not (partitions := describe(settings, topic)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return partitions


def replicas(partition: dict[str, object], key: str) -> list[int]:
    return [int(n) for n in partition[key]]  # type: ignore[attr-defined]


def test_topics_get_three_copies_and_min_insync_two(on_cluster: Settings) -> None:
    assert ensure_topics(on_cluster) == Replication(3, 2)
    for topic in (on_cluster.events_topic, on_cluster.dead_letter_topic, windows_changelog_topic(on_cluster)):
        partitions = described(on_cluster, topic)
        assert partitions and all(len(replicas(p, "replica_nodes")) == 3 for p in partitions), topic
        assert topic_config(on_cluster.kafka_bootstrap_servers, topic)["min.insync.replicas"] == "2", topic
    with pytest.raises(ConfigError, match="has 3 live brokers"):
        ensure_topics(
            on_cluster.model_copy(update={"kafka_replication_factor": 4, "events_topic": "t.never"})
        )


def node_pid(node: int) -> int:
    return int((REPO / "var" / "services" / INSTANCE / f"kafka-{node}" / "kafka.pid").read_text())


def wait_for_processed(settings: Settings, count: int, worker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while events_processed(settings) < count:
        if worker.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"worker stopped or stalled before {count} events:\n{log.read_text()[-2500:]}")
        time.sleep(0.2)


def wait_for_full_isr(settings: Settings, topic: str) -> None:
    """Until every partition of the topic has all its replicas in sync again."""
    deadline = time.monotonic() + REJOIN_TIMEOUT_S
    while True:
        partitions = describe(settings, topic)
        if all(set(replicas(p, "isr_nodes")) == set(replicas(p, "replica_nodes")) for p in partitions):
            return
        assert time.monotonic() < deadline, f"in-sync replicas of {topic} not back: {partitions}"
        time.sleep(1.0)


def test_broker_leading_the_events_partitions_sigkilled_mid_stream_loses_nothing(
    on_cluster: Settings, tmp_path: Path
) -> None:
    events = sample_events(SampleSpec(users=500, events=20_000, items=500, seed=81, zipf_s=0.8))
    before, after = events[:10_000], events[10_000:]
    expected = offline(on_cluster, events)
    ensure_topics(on_cluster)
    log = tmp_path / "worker.log"
    worker = start_worker(on_cluster, log)
    killed_node = None
    try:
        with EventProducer(on_cluster) as producer:
            producer.send_many(before)
        wait_for_processed(on_cluster, 5_000, worker, log)
        leaders = [int(str(p["leader_id"])) for p in describe(on_cluster, on_cluster.events_topic)]
        killed_node = max(set(leaders), key=leaders.count)
        os.kill(node_pid(killed_node), signal.SIGKILL)
        killed = time.monotonic()
        # Sent while the broker is dead: acks=all with two of three replicas in sync.
        with EventProducer(on_cluster) as producer:
            producer.send_many(after)
        sent_after_kill_s = time.monotonic() - killed
        assert worker.poll() is None, f"the worker exited when the broker died:\n{log.read_text()[-2500:]}"
        new_leaders = [int(str(p["leader_id"])) for p in describe(on_cluster, on_cluster.events_topic)]
        assert killed_node not in new_leaders, new_leaders
        converge(on_cluster, expected, worker, log)
        converged_s = time.monotonic() - killed
        # Every acknowledged event is in the topic exactly once (idempotent producers), none lost.
        assert sum(end_offsets(on_cluster).values()) == len(events)
        assert worker.poll() is None

        restarted = time.monotonic()
        services_cmd("up", "--only", "kafka")  # returns once all three brokers are registered
        rejoined_s = time.monotonic() - restarted
        killed_node = None
        wait_for_full_isr(on_cluster, on_cluster.events_topic)
        in_sync_s = time.monotonic() - restarted
        # Faust's own topic (its assignor's leader topic) was created with the cluster's factor too.
        leader_topic = f"{on_cluster.consumer_group}-__assignor-__leader"
        assert all(len(replicas(p, "replica_nodes")) == 3 for p in describe(on_cluster, leader_topic))
        print(
            json.dumps(
                {
                    "fault_test": "kafka broker leading the events partitions SIGKILLed (3 brokers)",
                    "events": len(events),
                    "users": len(expected),
                    "partitions_led_by_killed_broker": leaders.count(max(set(leaders), key=leaders.count)),
                    "events_lost": 0,
                    "worker_restarts": 0,
                    "second_half_acknowledged_after_kill_s": round(sent_after_kill_s, 1),
                    "converged_after_kill_s": round(converged_s, 1),
                    "broker_registered_after_restart_s": round(rejoined_s, 1),
                    "events_isr_full_after_restart_s": round(in_sync_s, 1),
                }
            )
        )
    finally:
        try:
            if killed_node is not None:
                services_cmd("up", "--only", "kafka")
        finally:
            stop_worker(worker)
