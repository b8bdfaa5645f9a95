"""The stream core end to end: real Kafka, real Redis, the real MiniLM encoder in ONNX.

After the worker drains, every user's Redis entry must equal the offline recomputation from the
same events; replays (again, with duplicates, shuffled) must leave Redis byte-identical; a
SIGKILLed worker must recover its windows from the changelog and still converge.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from stream.core.events import Event
from stream.core.sample import SampleSpec, sample_events
from stream.core.settings import Settings
from stream.ingest.producer import EventProducer
from stream.kafka.topics import ensure_topics
from stream.worker.app import EXIT_BATCH_FAILED
from tests.integration.convergence import (
    CONVERGE_TIMEOUT_S,
    converge,
    offline,
    redis_state,
    wait_processed,
)
from tests.integration.worker import start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def stream_for_users(users: int, seed: int) -> list[Event]:
    # A flat activity curve, so that nearly every one of the users has events.
    return sample_events(SampleSpec(users=users, events=users * 12, items=500, seed=seed, zipf_s=0.3))


def test_redis_equals_offline_and_replays_leave_it_identical(isolated: Settings, tmp_path: Path) -> None:
    # The text user tower: the heaviest path, every changed profile re-encoded by MiniLM.
    settings = isolated.model_copy(
        update={"batch_max_events": 400, "batch_max_wait_ms": 200, "user_vector": "text"}
    )
    ensure_topics(settings)
    events = stream_for_users(200, seed=21)
    expected = offline(settings, events)
    assert len(expected) >= 190

    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        with EventProducer(settings) as producer:
            producer.send_many(events)
        first = converge(settings, expected, worker, log)

        # The same events again, then duplicates, then each user's events shuffled.
        rng = random.Random(5)
        duplicates = rng.sample(events, 300)
        shuffled = list(events)
        rng.shuffle(shuffled)
        with EventProducer(settings) as producer:
            producer.send_many(events + duplicates + shuffled)
        wait_processed(settings, 3 * len(events) + len(duplicates), worker)
        assert redis_state(settings, sorted(expected)) == first
    finally:
        assert stop_worker(worker) == 0


def test_sigkilled_worker_recovers_its_windows_and_converges(isolated: Settings, tmp_path: Path) -> None:
    settings = isolated.model_copy(update={"batch_max_events": 100, "batch_max_wait_ms": 100})
    ensure_topics(settings)
    events = stream_for_users(60, seed=33)
    expected = offline(settings, events)
    log = tmp_path / "worker.log"
    with EventProducer(settings) as producer:
        producer.send_many(events[: len(events) // 2])
    worker = start_worker(settings, log)
    try:
        half = offline(settings, events[: len(events) // 2])
        # Killed after its first writes, before it can commit cleanly or flush anything.
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while sum(1 for s in redis_state(settings, sorted(half)).values() if s) < 5:
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        with EventProducer(settings) as producer:
            producer.send_many(events[len(events) // 2 :])
        worker = start_worker(settings, log)
        converge(settings, expected, worker, log)
    finally:
        stop_worker(worker)


@pytest.mark.parametrize(
    ("skipped", "detected_by"),
    [
        # Records after the dropped ones arrive and show the gap to the batch.
        (25, "the consumer skipped records"),
        # Everything fetched after the first write is dropped: no later record shows a gap, so
        # only the idle check (fetch position ahead of the stored one) can find it.
        (100_000, "with nothing processed"),
    ],
    ids=["gap-in-a-batch", "dropped-tail"],
)
def test_records_the_consumer_drops_are_read_again(
    isolated: Settings, tmp_path: Path, skipped: int, detected_by: str
) -> None:
    # Faust's fetcher can drop records around restarts and rebalances and commit past them; the
    # worker's own stored position must bring every one of them back.
    settings = isolated.model_copy(update={"batch_max_events": 100, "batch_max_wait_ms": 100})
    ensure_topics(settings)
    events = stream_for_users(60, seed=36)
    expected = offline(settings, events)
    log = tmp_path / "worker.log"
    half = len(events) // 2
    with EventProducer(settings) as producer:
        producer.send_many(events[:half])
    worker = start_worker(settings, log, module=("tests.integration.crashing_worker", "skip", str(skipped)))
    try:
        first = offline(settings, events[:half])
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while not any(redis_state(settings, sorted(first)).values()):
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        # Fetched only after the drops are armed by the first Redis write.
        with EventProducer(settings) as producer:
            producer.send_many(events[half:])
        converge(settings, expected, worker, log)
        assert detected_by in log.read_text()
    finally:
        assert stop_worker(worker) == 0


def fail_in_redis_write_then_recover(
    isolated: Settings, tmp_path: Path, *, mode: str, exit_code: int, seed: int
) -> str:
    """Run `crashing_worker MODE` over events that all fit in one batch (it fails inside its first
    Redis write, after flushing Kafka), check its exit code, then let a normal worker converge.

    Returns the failed worker's log (read before the restart).
    """
    settings = isolated.model_copy(update={"batch_max_events": 2000, "batch_max_wait_ms": 3000})
    ensure_topics(settings)
    events = stream_for_users(30, seed=seed)
    expected = offline(settings, events)
    log = tmp_path / "worker.log"
    with EventProducer(settings) as producer:
        producer.send_many(events)
    failing = start_worker(settings, log, module=("tests.integration.crashing_worker", mode))
    try:
        assert failing.wait(timeout=CONVERGE_TIMEOUT_S) == exit_code, log.read_text()[-2000:]
    finally:
        stop_worker(failing)
    failed_log = log.read_text()
    untouched = all(not s for s in redis_state(settings, sorted(expected)).values())
    worker = start_worker(settings, log)
    try:
        converge(settings, expected, worker, log)
    finally:
        assert stop_worker(worker) == 0
    assert untouched, "the failed worker wrote to Redis before failing"
    return failed_log


def test_crash_between_changelog_and_redis_write_loses_no_profile(isolated: Settings, tmp_path: Path) -> None:
    # Anything the worker stored before its Redis write (windows in the changelog) is durable.
    fail_in_redis_write_then_recover(isolated, tmp_path, mode="kill", exit_code=-signal.SIGKILL, seed=44)


def test_a_peer_failure_in_a_batch_exits_the_worker_and_loses_nothing(
    isolated: Settings, tmp_path: Path
) -> None:
    # Faust would restart a crashed agent past the failed batch; the worker exits instead. (An
    # error of the records themselves is quarantined instead: tests/integration/test_poison.py.)
    failed_log = fail_in_redis_write_then_recover(
        isolated, tmp_path, mode="raise", exit_code=EXIT_BATCH_FAILED, seed=45
    )
    assert "injected failure inside the Redis write" in failed_log
