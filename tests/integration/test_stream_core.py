"""The stream core end to end: real Kafka, real Redis, the real MiniLM encoder in ONNX.

After the worker drains, every user's Redis entry must equal the offline recomputation from the
same events; replays (again, with duplicates, shuffled) must leave Redis byte-identical; a
SIGKILLed worker must recover its windows from the changelog and still converge.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

import pytest
from redis import Redis

from models.encoder import load_encoder, options_from_settings
from stream.events import Event
from stream.offline import offline_payloads
from stream.producer import EventProducer
from stream.profiles import ProfileComputer, ProfileConfig
from stream.reco_store import RECO_KIND
from stream.runtime import load_catalogue
from stream.sample import SampleSpec, sample_events
from stream.settings import Settings
from stream.topics import ensure_topics
from tests.integration.worker import start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONVERGE_TIMEOUT_S = 300
SCORE_TOLERANCE = 1e-4


def offline(settings: Settings, events: list[Event]) -> dict[str, dict[str, Any]]:
    encoder = load_encoder(settings.model_dir, options_from_settings(settings))
    catalogue = load_catalogue(settings, encoder.model_version)
    computer = ProfileComputer(encoder, catalogue, ProfileConfig.from_settings(settings))
    return offline_payloads(events, computer)


def redis_state(settings: Settings, users: list[str]) -> dict[str, dict[bytes, bytes]]:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        return {
            user: cast(dict[bytes, bytes], redis.hgetall(settings.redis_key(RECO_KIND, user)))
            for user in users
        }
    finally:
        redis.close()


def differences(expected: dict[str, dict[str, Any]], state: dict[str, dict[bytes, bytes]]) -> list[str]:
    """Human-readable differences between offline payloads and what Redis holds."""
    problems = []
    for user, want in expected.items():
        raw = state.get(user, {}).get(b"json")
        if raw is None:
            problems.append(f"{user}: missing")
            continue
        got = json.loads(raw)
        got.pop("computed_at_ms")
        got_items, want_items = got.pop("items"), want["items"]
        rest_want = {k: v for k, v in want.items() if k != "items"}
        if got != rest_want:
            problems.append(f"{user}: {got} != {rest_want}")
        if [i["item_id"] for i in got_items] != [i["item_id"] for i in want_items]:
            problems.append(f"{user}: items {got_items} != {want_items}")
            continue
        for g, w in zip(got_items, want_items, strict=True):
            if abs(g["score"] - w["score"]) > SCORE_TOLERANCE or g["reason"] != w["reason"]:
                problems.append(f"{user}: {g} != {w}")
    return problems


def converge(
    settings: Settings, expected: dict[str, dict[str, Any]], worker: subprocess.Popen[bytes], log: Path
) -> dict[str, dict[bytes, bytes]]:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        state = redis_state(settings, sorted(expected))
        problems = differences(expected, state)
        if not problems:
            return state
        if worker.poll() is not None or time.monotonic() > deadline:
            why = "timed out" if worker.poll() is None else f"worker exited with {worker.returncode}"
            tail = log.read_text(errors="replace")[-2500:]
            pytest.fail(f"{why}; {len(problems)} users differ, e.g. {problems[:3]}\nworker log:\n{tail}")
        time.sleep(1.0)


def events_processed(settings: Settings) -> float:
    url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("profilestream_events_total "):
                return float(line.split()[1])
    return 0.0


def wait_processed(settings: Settings, count: int, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while events_processed(settings) < count:
        assert worker.poll() is None, "worker died"
        assert time.monotonic() < deadline, f"worker processed {events_processed(settings)} of {count}"
        time.sleep(0.5)


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


def test_crash_between_changelog_and_redis_write_loses_no_profile(isolated: Settings, tmp_path: Path) -> None:
    # One batch takes every event; the first worker dies inside its Redis write after flushing
    # Kafka, so anything it stored before that write (windows in the changelog) is durable.
    settings = isolated.model_copy(update={"batch_max_events": 2000, "batch_max_wait_ms": 3000})
    ensure_topics(settings)
    events = stream_for_users(30, seed=44)
    expected = offline(settings, events)
    log = tmp_path / "worker.log"
    with EventProducer(settings) as producer:
        producer.send_many(events)
    crashing = start_worker(settings, log, module=("tests.integration.crashing_worker",))
    try:
        assert crashing.wait(timeout=CONVERGE_TIMEOUT_S) == -signal.SIGKILL, log.read_text()[-2000:]
    finally:
        stop_worker(crashing)
    assert all(not s for s in redis_state(settings, sorted(expected)).values())
    worker = start_worker(settings, log)
    try:
        converge(settings, expected, worker, log)
    finally:
        assert stop_worker(worker) == 0
