"""Ports for the servers tests start: always below the kernel's ephemeral range.

The kernel hands ports of its ephemeral range (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999
on Linux by default) to outgoing connections. A server on such a port that is stopped and started
again can find it taken by a client's own socket (a client reconnecting to 127.0.0.1:P may even be
given P as its source port and connect to itself), so a test that restarts a server fails at random.
Ports from here never collide with that: fixed instance ports lie in 29000-29999, `free_port()`
hands out ports of 20000-28999.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
FREE_PORT_RANGE = (20_000, 28_999)

# Fixed ports of the service instances the test session starts (deploy/local/services --name ...).
TEST_KAFKA_PORT = 29092  # controller: 29093
TEST_REDIS_PORT = 29379
FAULTS_KAFKA_PORT = 29192  # controller: 29193
FAULTS_REDIS_PORT = 29479
# A three-broker Kafka cluster (tests/integration/test_kafka_cluster.py): node N listens on
# 29692 + 2(N-1), its controller one above (29692-29697).
KAFKA3_KAFKA_PORT = 29692
KAFKA3_REDIS_PORT = 29679
# A Redis Cluster of 3 masters and 3 replicas (deploy/local/services --redis-cluster 3): nodes on
# 29500-29505, their cluster bus on 29506-29511.
REDIS_CLUSTER_PORT = 29500

_handed_out: set[int] = set()


def ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port below the ephemeral range that is free now and not handed out before in this run."""
    low, high = FREE_PORT_RANGE
    ephemeral_low, ephemeral_high = ephemeral_port_range()
    candidates = [
        p for p in range(low, high + 1) if p not in _handed_out and not ephemeral_low <= p <= ephemeral_high
    ]
    random.shuffle(candidates)
    for port in candidates:
        if _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(
        f"no free port in {low}-{high} outside the ephemeral range {ephemeral_low}-{ephemeral_high}"
    )
