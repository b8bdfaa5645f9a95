"""Real Kafka and Redis for the integration tests, started once per session by deploy/local/services.

Each test gets its own topics, consumer group, Redis key prefix and worker port (`isolated`).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.core.settings import Settings, child_environment, load_settings
from stream.redis.client import redis_sync
from tests.support.paths import REPO
from tests.support.ports import REDIS_CLUSTER_PORT, TEST_KAFKA_PORT, TEST_REDIS_PORT, free_port

__all__ = ["free_port"]  # re-exported: tests import it from here

SERVICES = REPO / "deploy" / "local" / "services"
INSTANCE = "test"
# Below the ephemeral port range (tests/support/ports.py says why).
KAFKA_PORT = TEST_KAFKA_PORT
REDIS_PORT = TEST_REDIS_PORT


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    redis_url: str
    redis_cluster: bool = False


def run_services(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SERVICES), *args], capture_output=True, text=True, check=check, timeout=600)


def services_ok(name: str, *args: str) -> None:
    """`deploy/local/services ARGS --name NAME`; a failure fails the test with the script's output."""
    result = run_services(*args, "--name", name, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"deploy/local/services {' '.join(args)} --name {name} failed:\n{result.stdout}\n{result.stderr}"
        )


@contextlib.contextmanager
def instance_running(name: str, *up_args: str, only: str = "", reuse: bool = True) -> Iterator[None]:
    """Instance `name` up (`services up UP_ARGS`, `--only ONLY` if given) for the block, down after it,
    whatever happened. With `reuse`, an instance that was already running (a dev loop) is left
    running; without it, it is stopped in any case."""
    only_args = ("--only", only) if only else ()
    was_running = reuse and run_services("status", "--name", name, check=False).returncode == 0
    try:
        # Inside: an `up` that fails half-way (Redis started, Kafka too slow) is stopped as well.
        services_ok(name, "up", *only_args, *up_args)
        yield
    finally:
        if not was_running:
            services_ok(name, "down", *only_args)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """Start the test instance, and stop it afterwards unless it was already running (a dev loop)."""
    with instance_running(INSTANCE, "--kafka-port", str(KAFKA_PORT), "--redis-port", str(REDIS_PORT)):
        yield Services(f"127.0.0.1:{KAFKA_PORT}", f"redis://127.0.0.1:{REDIS_PORT}/0")


CLUSTER_INSTANCE = "cluster"


@pytest.fixture(scope="session")
def cluster_services(services: Services) -> Iterator[Services]:
    """The test Kafka with a Redis Cluster (3 masters, 3 replicas) of its own instance, `cluster`,
    stopped when the session ends (it starts in a few seconds)."""
    with instance_running(
        CLUSTER_INSTANCE,
        "--redis-cluster",
        "3",
        "--redis-port",
        str(REDIS_CLUSTER_PORT),
        only="redis",
        reuse=False,
    ):
        yield Services(
            services.kafka_bootstrap, f"redis://127.0.0.1:{REDIS_CLUSTER_PORT}/0", redis_cluster=True
        )


@dataclass(frozen=True)
class ModelFiles:
    model_dir: Path
    index_dir: Path
    catalog: Path


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    """The real all-MiniLM-L6-v2 exported to ONNX (fp32) and the sample catalogue indexed with it,
    through the same CLI a user runs."""
    root = tmp_path_factory.mktemp("model")
    files = ModelFiles(root / "model", root / "index", root / "catalog.jsonl")
    settings = load_settings({}, model_dir=files.model_dir, index_dir=files.index_dir)
    env = child_environment(os.environ, settings) | {"HF_HUB_OFFLINE": "1"}
    for args in (
        ["sample-catalogue", str(files.catalog)],
        ["export", "--variant", "fp32"],
        ["index", str(files.catalog)],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "stream.cli", *args], env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            pytest.fail(f"profilestream {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return files


def isolated_settings(
    services: Services, model_files: ModelFiles, test_name: str, tmp_path: Path
) -> Settings:
    """Settings of one test: its own topics, consumer group, Redis key prefix and worker port."""
    tag = re.sub(r"[^a-z0-9]+", "-", test_name.lower())[:40] + "-" + uuid.uuid4().hex[:8]
    return load_settings(
        {},
        kafka_bootstrap_servers=services.kafka_bootstrap,
        redis_url=services.redis_url,
        redis_cluster=services.redis_cluster,
        events_topic=f"t.{tag}.events",
        dead_letter_topic=f"t.{tag}.dlq",
        consumer_group=f"g-{tag}",
        redis_key_prefix=f"t:{tag}",
        data_dir=tmp_path / "data",
        model_dir=model_files.model_dir,
        index_dir=model_files.index_dir,
        # Not the default var/sequence: `auto` would serve a tower a developer trained there, which
        # the tests' offline recomputation does not load (test_online_sequence brings its own).
        sequence_model_dir=tmp_path / "no-sequence-tower",
        worker_web_port=free_port(),
    )


@pytest.fixture
def isolated(
    services: Services, model_files: ModelFiles, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Settings]:
    settings = isolated_settings(services, model_files, request.node.name, tmp_path)
    yield settings
    delete_keys(settings)


@pytest.fixture(params=["single", "cluster"])
def isolated_both(
    request: pytest.FixtureRequest, model_files: ModelFiles, tmp_path: Path
) -> Iterator[Settings]:
    """`isolated` once on the single test Redis, once on the Redis Cluster."""
    services = request.getfixturevalue("services" if request.param == "single" else "cluster_services")
    settings = isolated_settings(services, model_files, request.node.name, tmp_path)
    yield settings
    delete_keys(settings)


def delete_keys(settings: Settings) -> None:
    """Every key of the test's prefix, on a single Redis or each primary of a cluster."""
    redis = redis_sync(settings)
    keys = list(redis.scan_iter(match=f"{settings.redis_key_prefix}:*"))
    if keys:
        redis.delete(*keys)
    redis.close()
