"""Replay throughput: generate an N-event JSONL file and replay it into a fresh topic.

    .venv/bin/python bench/replay.py --events 100000 --events 200000 --processes 1 --processes 2 \
        --sender aiokafka --sender kafka-python

Needs a running Kafka (default: the test instance, 127.0.0.1:29092). Prints one JSON line per run
and a table of events/s, one row per (events, sender, processes): the batch sender (aiokafka) and
the event-by-event one (kafka-python) side by side. Events are synthetic v1 views spread over
--users users. --repeats N runs each row N times and reports the median (the machine is shared).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, print_table
from stream.core.settings import load_settings
from stream.ingest.replay import SENDERS, ReplayOptions, Sender, SourceSpec, replay

BASE_TS_MS = 1_764_000_000_000


def native_crc32c() -> bool:
    """kafka-python checksums every record batch; without the crc32c package it does so in Python."""
    from kafka.record import util

    return util.crc32c_c is not None


def write_events(path: Path, count: int, users: int) -> None:
    with open(path, "w") as out:
        for n in range(count):
            user = f"u{(n * 7919) % users:05d}"
            out.write(
                json.dumps(
                    {
                        "v": 1,
                        "event_id": f"b-{n:08d}",
                        "user_id": user,
                        "type": "view",
                        "item_id": f"sku-{n % 5000:05d}",
                        "ts_ms": BASE_TS_MS + n,
                        "session_id": f"s-{user}",
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )


@click.command()
@click.option("--bootstrap", default="127.0.0.1:29092", show_default=True)
@click.option("--events", "counts", multiple=True, type=int, default=[100_000, 200_000], show_default=True)
@click.option("--processes", "process_counts", multiple=True, type=int, default=[1, 2], show_default=True)
@click.option("--users", default=5_000, show_default=True)
@click.option("--partitions", default=4, show_default=True)
@click.option(
    "--sender", "senders", multiple=True, type=click.Choice(SENDERS), default=list(SENDERS), show_default=True
)
@click.option(
    "--repeats", default=1, show_default=True, type=click.IntRange(1), help="Runs per row (median)."
)
@click.option("--dry-run", is_flag=True, help="Measure validation alone (no Kafka).")
def main(
    *,
    bootstrap: str,
    counts: list[int],
    process_counts: list[int],
    users: int,
    partitions: int,
    senders: list[Sender],
    repeats: int,
    dry_run: bool,
) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            path = Path(tmp) / f"events-{count}.jsonl"
            write_events(path, count, users)
            for sender in senders:
                for processes in process_counts:
                    runs = [
                        run_once(
                            path, bootstrap, partitions, processes=processes, sender=sender, dry_run=dry_run
                        )
                        for _ in range(repeats)
                    ]
                    row = {
                        **runs[len(runs) // 2],
                        "events_per_s": round(statistics.median(r["events_per_s"] for r in runs)),
                        "events_per_s_runs": [r["events_per_s"] for r in runs],
                        "sender": sender,
                        "processes": processes,
                        "cpus": os.cpu_count(),
                        "load_1m": round(os.getloadavg()[0], 2),
                        "python": platform.python_version(),
                        "crc32c_native": native_crc32c(),
                        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    }
                    emit(json.dumps(row))
                    sys.stdout.flush()
                    rows.append(row)
    emit()
    print_table(rows, ["read", "sender", "processes", "elapsed_s", "events_per_s", "load_1m"])


def run_once(
    path: Path, bootstrap: str, partitions: int, *, processes: int, sender: Sender, dry_run: bool
) -> dict[str, Any]:
    """One replay of `path` into a fresh topic; its report as a dict."""
    topic = f"bench.replay.{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        {}, kafka_bootstrap_servers=bootstrap, events_topic=topic, events_partitions=partitions
    )
    options = ReplayOptions(processes=processes, dry_run=dry_run, progress=False, sender=sender)
    return replay(settings, SourceSpec(str(path)), options).to_dict()


if __name__ == "__main__":
    main()
