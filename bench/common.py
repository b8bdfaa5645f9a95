"""Shared helpers of the benchmark scripts: timing statistics, output (table + JSON), Redis cleanup."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SERVICES = Path(__file__).resolve().parents[1] / "deploy" / "local" / "services"
SERVICES_HOME = Path(__file__).resolve().parents[1] / "var" / "services"  # one folder per --name


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition as {series with labels: value}; comment lines skipped."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def emit(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# "wall" is what a caller waits; "cpu" (process CPU seconds) is steadier on a shared machine and is
# only fair with one thread per backend, since spinning worker threads burn CPU without progress.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def time_calls_s(
    call: Callable[[], object], repeats: int, warmup: int = 1, clock: str = "wall"
) -> list[float]:
    """Seconds (by `clock`) of `repeats` calls after `warmup` untimed ones."""
    now = CLOCKS[clock]
    for _ in range(warmup):
        call()
    times_s = []
    for _ in range(repeats):
        started = now()
        call()
        times_s.append(now() - started)
    return times_s


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[_fmt(row.get(column), column) for column in columns] for row in rows]
    widths = [max(len(column), *(len(cell[i]) for cell in cells)) for i, column in enumerate(columns)]
    emit("  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True)))
    for cell in cells:
        emit("  ".join(value.rjust(width) for value, width in zip(cell, widths, strict=True)))


def print_json(document: dict[str, Any]) -> None:
    emit(json.dumps(document, indent=2, sort_keys=True))


def _fmt(value: Any, column: str) -> str:
    if isinstance(value, float):
        # Cosines differ in the 4th-6th decimal; rates and milliseconds need no such precision.
        return f"{value:.6f}" if "cosine" in column else f"{value:.2f}"
    return "" if value is None else str(value)


def delete_redis_prefix(settings: Any) -> None:
    """Delete every Redis key under the settings' key prefix (a benchmark's own namespace)."""
    from stream.redis.client import delete_prefix

    delete_prefix(settings)


def services(action: str, args: argparse.Namespace) -> None:
    """`deploy/local/services up|down` for a benchmark's own Kafka and Redis instance, named
    `args.services_name`, on the ports of `args.bootstrap` and `args.redis_url`."""
    cmd = [sys.executable, str(SERVICES), action, "--name", args.services_name]
    if action == "up":
        kafka_port = args.bootstrap.rsplit(":", 1)[1]
        redis_port = args.redis_url.rsplit(":", 1)[1].split("/")[0]
        cmd += ["--kafka-port", kafka_port, "--redis-port", redis_port]
    subprocess.run(cmd, check=True)
