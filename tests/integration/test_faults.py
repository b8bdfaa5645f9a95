"""Fault tests: the worker is killed, Redis and Kafka go away, workers join and leave, and still
no event is lost: afterwards every user's Redis entry equals the offline recomputation.

They run against their own Kafka and Redis instance ("faults", Redis with AOF like production)
so that stopping a server disturbs no other test. Each prints one line of figures (run with
``-s`` to see them; the README quotes them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis import Redis

from stream.core.events import Event
from stream.core.sample import SampleSpec, sample_events
from stream.core.settings import Settings, child_environment
from stream.ingest.producer import EventProducer
from stream.kafka.topics import ensure_topics
from tests.integration.conftest import (
    ModelFiles,
    Services,
    free_port,
    instance_running,
    isolated_settings,
    services_ok,
)
from tests.integration.convergence import (
    CONVERGE_TIMEOUT_S,
    converge,
    events_processed,
    offline,
    wait_until_assigned,
)
from tests.integration.worker import start_worker, stop_worker
from tests.support.blackhole_proxy import blackhole_proxy
from tests.support.paths import REPO
from tests.support.ports import FAULTS_KAFKA_PORT, FAULTS_REDIS_PORT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INSTANCE = "faults"
KAFKA_PORT = FAULTS_KAFKA_PORT
REDIS_PORT = FAULTS_REDIS_PORT
# The broker's smallest allowed session timeout: a killed worker's partitions move on quickly.
SESSION_TIMEOUT_S = 6


def services_cmd(*args: str) -> None:
    services_ok(INSTANCE, *args)


@pytest.fixture(scope="module")
def fault_services() -> Iterator[Services]:
    with instance_running(
        INSTANCE, "--kafka-port", str(KAFKA_PORT), "--redis-port", str(REDIS_PORT), "--redis-aof"
    ):
        yield Services(f"127.0.0.1:{KAFKA_PORT}", f"redis://127.0.0.1:{REDIS_PORT}/0")


@pytest.fixture
def faults(
    fault_services: Services, model_files: ModelFiles, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Settings]:
    settings = isolated_settings(fault_services, model_files, request.node.name, tmp_path).model_copy(
        update={"kafka_session_timeout_s": SESSION_TIMEOUT_S}
    )
    ensure_topics(settings)
    yield settings
    redis = Redis.from_url(fault_services.redis_url)
    keys = list(redis.scan_iter(match=f"{settings.redis_key_prefix}:*"))
    if keys:
        redis.delete(*keys)
    redis.close()


def wait_for_processed(settings: Settings, count: int, worker: subprocess.Popen[bytes], log: Path) -> None:
    """Until this worker incarnation has processed `count` events."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while events_processed(settings) < count:
        if worker.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"worker stopped or stalled before {count} events:\n{log.read_text()[-2500:]}")
        time.sleep(0.2)


def figures(name: str, **values: object) -> None:
    print(json.dumps({"fault_test": name, **values}))


def test_worker_killed_three_times_during_a_100k_event_replay_loses_nothing(
    faults: Settings, tmp_path: Path
) -> None:
    events = sample_events(SampleSpec(users=2000, events=100_000, items=500, seed=71, zipf_s=0.8))
    expected = offline(faults, events)
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(e.to_json() for e in events) + b"\n")
    log = tmp_path / "worker.log"
    worker = start_worker(faults, log)
    replay = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "replay", str(source), "--json"],
        env=child_environment(os.environ, faults),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    started = time.monotonic()
    try:
        for _ in range(3):
            # Each incarnation gets through 20,000 events (replays of uncommitted ones included).
            wait_for_processed(faults, 20_000, worker, log)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = start_worker(faults, log)
        replay_out, _ = replay.communicate(timeout=CONVERGE_TIMEOUT_S)
        assert replay.returncode == 0, replay_out.decode()
        assert json.loads(replay_out.decode().strip().splitlines()[-1])["produced"] == len(events)
        replayed = time.monotonic()
        converge(faults, expected, worker, log)
        figures(
            "sigkill x3",
            events=len(events),
            users=len(expected),
            total_s=round(time.monotonic() - started, 1),
            converged_after_replay_s=round(time.monotonic() - replayed, 1),
        )
    finally:
        replay.kill()
        replay.wait()
        stop_worker(worker)


def mid_stream(seed: int) -> tuple[list[Event], list[Event]]:
    """20,000 events of 500 users, split in two halves: before and after the fault."""
    events = sample_events(SampleSpec(users=500, events=20_000, items=500, seed=seed, zipf_s=0.8))
    return events[:10_000], events[10_000:]


def test_redis_stopped_for_30_s_mid_stream_loses_nothing(faults: Settings, tmp_path: Path) -> None:
    before, after = mid_stream(seed=72)
    expected = offline(faults, before + after)
    log = tmp_path / "worker.log"
    worker = start_worker(faults, log)
    try:
        with EventProducer(faults) as producer:
            producer.send_many(before)
        wait_for_processed(faults, 5_000, worker, log)
        services_cmd("down", "--only", "redis")
        stopped = time.monotonic()
        with EventProducer(faults) as producer:
            producer.send_many(after)
        time.sleep(max(0.0, 30 - (time.monotonic() - stopped)))
        # The worker waits for Redis, holding its batch: it must not have died or moved on.
        assert worker.poll() is None, log.read_text()[-2500:]
        services_cmd("up", "--only", "redis", "--redis-aof")
        restarted = time.monotonic()
        converge(faults, expected, worker, log)
        figures(
            "redis down 30 s",
            events=len(before) + len(after),
            users=len(expected),
            catch_up_after_restart_s=round(time.monotonic() - restarted, 1),
        )
    finally:
        services_cmd("up", "--only", "redis", "--redis-aof")
        stop_worker(worker)


def redis_pid() -> int:
    return int((REPO / "var" / "services" / INSTANCE / "redis.pid").read_text())


def test_redis_paused_for_30_s_mid_stream_loses_nothing(faults: Settings, tmp_path: Path) -> None:
    """A Redis that hangs instead of refusing (SIGSTOP: accepts connections, never answers)."""
    before, after = mid_stream(seed=75)
    expected = offline(faults, before + after)
    log = tmp_path / "worker.log"
    worker = start_worker(faults, log)
    pid = redis_pid()
    try:
        with EventProducer(faults) as producer:
            producer.send_many(before)
        wait_for_processed(faults, 5_000, worker, log)
        os.kill(pid, signal.SIGSTOP)
        paused = time.monotonic()
        with EventProducer(faults) as producer:
            producer.send_many(after)
        time.sleep(max(0.0, 30 - (time.monotonic() - paused)))
        # The worker's Redis calls time out and are retried; it must neither die nor move on.
        assert worker.poll() is None, log.read_text()[-2500:]
        os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        converge(faults, expected, worker, log)
        assert worker.poll() is None, "the worker exited during the pause"
        figures(
            "redis paused 30 s",
            events=len(before) + len(after),
            users=len(expected),
            worker_restarts=0,
            catch_up_after_resume_s=round(time.monotonic() - resumed, 1),
        )
    finally:
        os.kill(pid, signal.SIGCONT)
        stop_worker(worker)


def test_redis_path_black_holed_for_30_s_mid_stream_loses_nothing(faults: Settings, tmp_path: Path) -> None:
    """A network path to Redis that drops every byte (no RST, no FIN) and then comes back.

    The requests in flight when the path went dark are lost for good, so a client without socket
    timeouts waits on them forever and the worker never catches up; with them, each call fails
    after `redis_socket_timeout_s`, is retried on a new connection, and the worker converges.
    """
    before, after = mid_stream(seed=76)
    expected = offline(faults, before + after)
    log = tmp_path / "worker.log"
    with blackhole_proxy("127.0.0.1", REDIS_PORT, free_port()) as proxy:
        through_proxy = faults.model_copy(
            update={
                "redis_url": SecretStr(f"redis://127.0.0.1:{proxy.port}/0"),
                "redis_socket_timeout_s": 2.0,
                "redis_connect_timeout_s": 2.0,
            }
        )
        worker = start_worker(through_proxy, log)
        try:
            with EventProducer(faults) as producer:
                producer.send_many(before)
            wait_for_processed(faults, 5_000, worker, log)
            proxy.blackhole()
            holed = time.monotonic()
            with EventProducer(faults) as producer:
                producer.send_many(after)
            time.sleep(max(0.0, 30 - (time.monotonic() - holed)))
            assert worker.poll() is None, log.read_text()[-2500:]
            assert proxy.dropped_bytes > 0, "nothing was sent to Redis during the outage"
            proxy.restore()
            restored = time.monotonic()
            converge(faults, expected, worker, log)
            assert worker.poll() is None, "the worker exited during the outage"
            figures(
                "redis path black-holed 30 s",
                events=len(before) + len(after),
                users=len(expected),
                worker_restarts=0,
                catch_up_after_restore_s=round(time.monotonic() - restored, 1),
            )
        finally:
            stop_worker(worker)


def test_kafka_broker_restarted_mid_stream_loses_nothing(faults: Settings, tmp_path: Path) -> None:
    before, after = mid_stream(seed=73)
    expected = offline(faults, before + after)
    log = tmp_path / "worker.log"
    worker = start_worker(faults, log)
    try:
        with EventProducer(faults) as producer:
            producer.send_many(before)
        wait_for_processed(faults, 5_000, worker, log)
        services_cmd("down", "--only", "kafka")
        time.sleep(5)
        services_cmd("up", "--only", "kafka")
        restarted = time.monotonic()
        with EventProducer(faults) as producer:
            producer.send_many(after)
        # The worker rides out the broker's restart: it must not have exited (no supervisor needed).
        assert worker.poll() is None, (
            f"the worker exited during the broker restart:\n{log.read_text()[-2500:]}"
        )
        converge(faults, expected, worker, log)
        assert worker.poll() is None
        figures(
            "kafka broker restart",
            events=len(before) + len(after),
            users=len(expected),
            worker_restarts=0,
            catch_up_after_restart_s=round(time.monotonic() - restarted, 1),
        )
    finally:
        services_cmd("up", "--only", "kafka")
        stop_worker(worker)


def test_second_worker_joins_then_leaves_and_nothing_is_lost(faults: Settings, tmp_path: Path) -> None:
    events = sample_events(SampleSpec(users=500, events=30_000, items=500, seed=74, zipf_s=0.8))
    thirds = [events[:10_000], events[10_000:20_000], events[20_000:]]
    expected = offline(faults, events)
    second = faults.model_copy(update={"worker_web_port": free_port(), "data_dir": tmp_path / "second"})
    log = tmp_path / "worker.log"
    first_worker = start_worker(faults, log)
    second_worker = None
    try:
        with EventProducer(faults) as producer:
            producer.send_many(thirds[0])
        wait_for_processed(faults, 5_000, first_worker, log)
        second_worker = start_worker(second, tmp_path / "second.log")
        # Sent only once the newcomer owns partitions: sent earlier, the first worker could take
        # every record before the rebalance, and the newcomer would have nothing to process.
        wait_until_assigned(second, second_worker, tmp_path / "second.log")
        with EventProducer(faults) as producer:
            producer.send_many(thirds[1])
        # The group rebalanced: the newcomer owns partitions and processes events.
        wait_for_processed(second, 1, second_worker, tmp_path / "second.log")
        time.sleep(3)
        second_events = events_processed(second)
        assert stop_worker(second_worker) == 0
        left = time.monotonic()
        with EventProducer(faults) as producer:
            producer.send_many(thirds[2])
        converge(faults, expected, first_worker, log)
        figures(
            "second worker joins and leaves",
            events=len(events),
            users=len(expected),
            second_worker_events=int(second_events),
            catch_up_after_leave_s=round(time.monotonic() - left, 1),
        )
    finally:
        if second_worker is not None:
            stop_worker(second_worker)
        stop_worker(first_worker)
