"""Comparing what the stream wrote to Redis with an offline recomputation (shared by the
stream-core and fault tests)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from models.encoder.onnx_encoder import load_encoder, options_from_settings
from stream.core.events import Event
from stream.core.settings import Settings
from stream.kafka.drain import end_offsets, stored_positions
from stream.profiles.catalogue import load_catalogue
from stream.profiles.computer import ProfileComputer, ProfileConfig
from stream.profiles.offline import offline_payloads
from stream.redis.client import redis_sync
from stream.redis.reco_store import RECO_KIND

CONVERGE_TIMEOUT_S = 300
SCORE_TOLERANCE = 1e-4


def offline(settings: Settings, events: list[Event]) -> dict[str, dict[str, Any]]:
    encoder = load_encoder(settings.model_dir, options_from_settings(settings))
    catalogue = load_catalogue(settings, encoder.model_version)
    computer = ProfileComputer(encoder, catalogue, ProfileConfig.from_settings(settings))
    return offline_payloads(events, computer)


def redis_state(settings: Settings, users: list[str]) -> dict[str, dict[bytes, bytes]]:
    redis = redis_sync(settings)  # a single Redis or a cluster, as the settings say
    try:
        pipe = redis.pipeline(transaction=False)
        for user in users:
            pipe.hgetall(settings.redis_key(RECO_KIND, user))
        return dict(zip(users, cast(list[dict[bytes, bytes]], pipe.execute()), strict=True))
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
    settings: Settings,
    expected: dict[str, dict[str, Any]],
    worker: subprocess.Popen[bytes],
    log: Path,
    *,
    web_ports: Sequence[int] = (),
) -> dict[str, dict[bytes, bytes]]:
    """Wait until Redis holds `expected` and every record is processed (`web_ports`: the workers
    whose positions together cover the partitions; default: `settings.worker_web_port`'s)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        state = redis_state(settings, sorted(expected))
        problems = differences(expected, state)
        if not problems:
            assert_every_record_processed(settings, worker, log, web_ports=web_ports)
            return state
        if worker.poll() is not None or time.monotonic() > deadline:
            why = "timed out" if worker.poll() is None else f"worker exited with {worker.returncode}"
            text = log.read_text(errors="replace")
            # Warnings and errors from anywhere in the log, then its tail: a failure in CI leaves
            # nothing else behind to diagnose it with.
            notable = "\n".join(
                [line for line in text.splitlines() if "WARN" in line or "ERROR" in line][:30]
            )
            pytest.fail(
                f"{why}; {len(problems)} users differ, e.g. {problems[:3]}\n"
                f"worker log warnings and errors:\n{notable}\nworker log tail:\n{text[-2500:]}"
            )
        time.sleep(1.0)


def events_processed(settings: Settings) -> float:
    """Events the worker on `settings.worker_web_port` processed since it started (0 while it starts)."""
    url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("profilestream_events_total "):
            return float(line.split()[1])
    return 0.0


def wait_until_assigned(settings: Settings, worker: subprocess.Popen[bytes], log: Path) -> set[int]:
    """Until the worker on `settings.worker_web_port` is ready (/readyz 200: not loading, not
    rebalancing) and owns events partitions (its per-partition lag gauge names them); returns
    them. Records sent before that may all go to the workers already in the group."""
    base = f"http://127.0.0.1:{settings.worker_web_port}"
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
                ready = response.status == 200
            with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:  # still starting, or not ready (503)
            ready, text = False, ""
        partitions = {
            int(line.split('partition="', 1)[1].split('"', 1)[0])
            for line in text.splitlines()
            if line.startswith("profilestream_partition_lag{")
        }
        if ready and partitions:
            return partitions
        if worker.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"worker never owned a partition while ready:\n{log.read_text()[-2500:]}")
        time.sleep(0.5)


def assert_every_record_processed(
    settings: Settings, worker: subprocess.Popen[bytes], log: Path, *, web_ports: Sequence[int] = ()
) -> None:
    """Every events partition's stored position reaches the end of the partition (over the
    workers at `web_ports` together; default: `settings.worker_web_port`).

    Positions only advance over a contiguous run of records (`stream.kafka.offsets`), so this proves
    that no record was skipped, including old events that capped windows would no longer show.
    """
    ends = end_offsets(settings)
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    ports = list(web_ports) or [settings.worker_web_port]
    while (positions := {p: o for port in ports for p, o in stored_positions(port).items()}) != ends:
        if worker.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"stored positions {positions} != partition ends {ends}\n{log.read_text()[-2500:]}")
        time.sleep(1.0)


def wait_processed(settings: Settings, count: int, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while events_processed(settings) < count:
        assert worker.poll() is None, "worker died"
        assert time.monotonic() < deadline, f"worker processed {events_processed(settings)} of {count}"
        time.sleep(0.5)
