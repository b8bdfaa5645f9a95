"""deploy/local/services: idempotent start, clean stop, stale pid files, clear port conflicts."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import INSTANCE, Services, free_port, run_services
from tests.support.paths import REPO

pytestmark = pytest.mark.integration


def instance_dir(name: str) -> Path:
    return REPO / "var" / "services" / name


@pytest.fixture
def scratch_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new instance name whose state folder is removed afterwards (a test's Kafka data left in
    var/services would pile up run after run)."""
    name = f"{request.param}-{uuid.uuid4().hex[:6]}"
    yield name
    shutil.rmtree(instance_dir(name), ignore_errors=True)


def pid_of(name: str, service: str) -> int:
    return int((instance_dir(name) / f"{service}.pid").read_text())


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited child that nobody reaped yet is not running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_second_up_reuses_the_running_servers(services: Services) -> None:
    before = (pid_of(INSTANCE, "kafka"), pid_of(INSTANCE, "redis"))
    again = run_services("up", "--name", INSTANCE)
    assert "kafka: already running" in again.stdout
    assert "redis: already running" in again.stdout
    assert (pid_of(INSTANCE, "kafka"), pid_of(INSTANCE, "redis")) == before
    assert run_services("status", "--name", INSTANCE).returncode == 0


@pytest.mark.parametrize("scratch_name", ["conflict"], indirect=True)
def test_taken_port_gives_a_clear_error_and_starts_nothing(services: Services, scratch_name: str) -> None:
    name = scratch_name
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", free_port()))
        blocker.listen()
        taken = blocker.getsockname()[1]
        result = run_services(
            "up", "--name", name, "--redis-port", str(taken), "--kafka-port", str(free_port()), check=False
        )
    assert result.returncode == 1
    assert f"port {taken} (Redis) is already in use" in result.stderr
    assert "--redis-port N" in result.stderr
    assert not (instance_dir(name) / "redis.pid").exists()
    assert not (instance_dir(name) / "kafka.pid").exists()


@pytest.mark.parametrize("scratch_name", ["lifecycle"], indirect=True)
def test_up_over_stale_pid_files_then_down_leaves_no_process(services: Services, scratch_name: str) -> None:
    name = scratch_name
    home = instance_dir(name)
    home.mkdir(parents=True)
    # A crashed earlier run leaves pid files naming processes that no longer exist (or are not ours).
    (home / "kafka.pid").write_text("999999\n")
    (home / "redis.pid").write_text(f"{os.getpid()}\n")
    kafka_port, redis_port = free_port(), free_port()
    up = run_services(
        "up",
        "--name", name,
        "--kafka-port", str(kafka_port),
        "--kafka-controller-port", str(free_port()),
        "--redis-port", str(redis_port),
        check=False,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        pids = [pid_of(name, "kafka"), pid_of(name, "redis")]
        assert os.getpid() not in pids
        assert all(running(pid) for pid in pids)
    finally:
        down = run_services("down", "--name", name)
    assert "kafka: stopped" in down.stdout
    assert "redis: stopped" in down.stdout
    assert not any(running(pid) for pid in pids)
    assert run_services("status", "--name", name, check=False).returncode == 3
