"""Has a worker processed every record of its events topic? Its stored positions say so.

A worker stores, with its windows, the next offset to process of each events partition, and it
only advances that position over a contiguous run of processed records (`stream.kafka.offsets`); its
``profilestream_position`` gauge publishes them. When every position equals the partition's end
offset, every record up to the end was processed and its Redis write done (the write comes before
the position). Tools that replay a known set of events and then read Redis (the online evaluation,
the tests) wait for that instead of guessing from event counts or sleeping.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from stream.core.errors import ProfilestreamError
from stream.core.settings import Settings
from stream.kafka.security import kafka_python_security

POLL_S = 0.5


def parse_positions(metrics_text: str) -> dict[int, int]:
    """Partition -> stored position from a worker's Prometheus text."""
    positions = {}
    for sample in metrics_text.splitlines():
        if sample.startswith("profilestream_position{"):
            partition = int(sample.split('partition="')[1].split('"')[0])
            positions[partition] = int(float(sample.split()[-1]))
    return positions


def stored_positions(web_port: int, host: str = "127.0.0.1") -> dict[int, int]:
    """The worker's stored positions; empty while its web server is not up yet."""
    try:
        with urllib.request.urlopen(f"http://{host}:{web_port}/metrics", timeout=5) as response:
            return parse_positions(response.read().decode())
    except OSError:
        return {}


def end_offsets(settings: Settings, topic: str | None = None) -> dict[int, int]:
    """Partition -> end offset (the next offset to be written) of the events topic."""
    name = topic or settings.events_topic
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers,
        # A hung broker fails this call after the timeout instead of kafka-python's 305 s default.
        request_timeout_ms=settings.kafka_request_timeout_ms,
        **kafka_python_security(settings),
    )
    try:
        partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def wait_drained(
    settings: Settings, worker: subprocess.Popen[bytes], timeout_s: float, log_path: Path
) -> float:
    """Wait until the worker on `settings.worker_web_port` has processed its topic to the end.

    Returns the seconds waited; raises if the worker exits or the time runs out.
    """
    started = time.monotonic()
    ends = end_offsets(settings)
    while (positions := stored_positions(settings.worker_web_port)) != ends:
        if worker.poll() is not None:
            raise ProfilestreamError(
                f"worker exited with code {worker.returncode} before it processed "
                f"{settings.events_topic} to the end; see {log_path}"
            )
        if time.monotonic() - started > timeout_s:
            raise ProfilestreamError(
                f"worker has not processed {settings.events_topic} to the end after {timeout_s:.0f}s "
                f"(stored positions {positions}, partition ends {ends}); see {log_path}"
            )
        time.sleep(POLL_S)
    return time.monotonic() - started
