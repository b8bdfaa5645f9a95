"""A worker that cannot open its model ends at once; one blocked on Redis is not ready, and stops."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from stream.core.sample import SampleSpec, sample_events
from stream.core.settings import Settings
from stream.ingest.producer import EventProducer
from stream.kafka.topics import ensure_topics
from stream.worker.app import EXIT_BATCH_FAILED, EXIT_SETUP_FAILED
from tests.integration.worker import start_worker, stop_worker
from tests.support.ports import free_port

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def test_a_worker_that_cannot_open_its_model_exits_with_one_line_saying_what_to_fix(
    isolated: Settings, tmp_path: Path
) -> None:
    # Before: Faust restarted the agent for ever (a traceback each time) while /healthz said ok.
    settings = isolated.model_copy(update={"model_dir": tmp_path / "no-model"})
    ensure_topics(settings)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        code = worker.wait(timeout=START_TIMEOUT_S)
    finally:
        stop_worker(worker)
    text = log.read_text()
    assert code == EXIT_SETUP_FAILED, text[-2000:]
    assert "cannot start the worker: model manifest" in text
    assert "profilestream export" in text
    assert "Traceback" not in text


def readiness(settings: Settings, deadline: float) -> list[str]:
    """The worker's /readyz `waiting_for` list once it names Redis (or at the deadline)."""
    url = f"http://127.0.0.1:{settings.worker_web_port}/readyz"
    waiting: list[str] = []
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                waiting = json.loads(response.read()).get("waiting_for", [])
        except urllib.error.HTTPError as exc:
            waiting = json.loads(exc.read()).get("waiting_for", [])
        except OSError:
            waiting = []
        if any(reason.startswith("Redis") for reason in waiting):
            break
        time.sleep(0.5)
    return waiting


def test_a_worker_waiting_for_an_unreachable_redis_is_not_ready_and_stops_on_sigterm(
    isolated: Settings, tmp_path: Path
) -> None:
    # Nothing listens on the port: every write retries with back-off, and the batch never ends.
    settings = isolated.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    ensure_topics(settings)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        with EventProducer(settings) as producer:
            producer.send_many(sample_events(SampleSpec(users=5, events=20, items=50, seed=7)))
        deadline = time.monotonic() + START_TIMEOUT_S
        while "redis unreachable" not in log.read_text():
            assert worker.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the worker never tried to write: " + log.read_text()[-2000:]
            time.sleep(0.5)
        # Its batches wait for Redis: the worker must not count as serving.
        assert "Redis, unanswered for" in " ".join(readiness(settings, deadline)), log.read_text()[-2000:]
        started = time.monotonic()
        # Raises (after killing it) when the worker is still there after the timeout.
        code = stop_worker(worker, timeout_s=STOP_TIMEOUT_S)
        assert time.monotonic() - started < STOP_TIMEOUT_S
        # Ended by the stop deadline: the batch it abandoned is read again by the next worker.
        assert code == EXIT_BATCH_FAILED, log.read_text()[-2000:]
        assert "did not stop within" in log.read_text()
    finally:
        if worker.poll() is None:
            stop_worker(worker)
