"""deploy/local/services --kafka-brokers N: node ports, one quorum, replication of Kafka's own
topics, the bootstrap list `env` prints (the real cluster: tests/integration/test_kafka_cluster.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.unit.deploy.test_services_script import SCRIPT, _load


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_three_nodes_share_one_quorum_on_their_own_ports_and_folders(tmp_path: Path) -> None:
    services = _load()
    nodes = services.kafka_nodes(tmp_path, 29692, 29693, 3)
    assert [(n.node_id, n.port, n.controller_port) for n in nodes] == [
        (1, 29692, 29693),
        (2, 29694, 29695),
        (3, 29696, 29697),
    ]
    assert [n.home for n in nodes] == [tmp_path / f"kafka-{i}" for i in (1, 2, 3)]
    props = [properties(services._kafka_properties(n, nodes)) for n in nodes]
    voters = "1@127.0.0.1:29693,2@127.0.0.1:29695,3@127.0.0.1:29697"
    assert {p["controller.quorum.voters"] for p in props} == {voters}
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert len({p["log.dirs"] for p in props}) == 3
    # Kafka's own topics (consumer offsets above all) survive a broker as well.
    for key in ("offsets.topic.replication.factor", "default.replication.factor"):
        assert {p[key] for p in props} == {"3"}
    assert {p["min.insync.replicas"] for p in props} == {"2"}


def test_one_broker_keeps_the_single_node_layout(tmp_path: Path) -> None:
    services = _load()
    (node,) = services.kafka_nodes(tmp_path, 9092, 9093, 1)
    assert (node.home, node.pid_file, node.what) == (tmp_path, tmp_path / "kafka.pid", "kafka")
    props = properties(services._kafka_properties(node, [node]))
    assert props["offsets.topic.replication.factor"] == props["min.insync.replicas"] == "1"


def test_overlapping_node_ports_are_refused_with_the_fix(tmp_path: Path) -> None:
    services = _load()
    with pytest.raises(services.ServicesError, match="differs from the Kafka port by an odd number"):
        services.kafka_nodes(tmp_path, 29692, 29694, 3)


def test_env_prints_every_broker_of_a_cluster() -> None:
    name = f"envcluster-{uuid.uuid4().hex[:6]}"
    try:
        result = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "env",
                "--name",
                name,
                "--kafka-port",
                "29992",
                "--kafka-brokers",
                "3",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    finally:
        shutil.rmtree(REPO / "var" / "services" / name, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    assert (
        "export PROFILESTREAM_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:29992,127.0.0.1:29994,127.0.0.1:29996"
        in result.stdout
    )
