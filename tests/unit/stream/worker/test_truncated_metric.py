"""The worker counts the over-long queries it cut in its metrics, as the collector and replay do."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from stream.core.batch import BatchOutcome
from stream.core.deadletter import SourcePosition
from stream.core.decode import RawMessage, decode_batch
from stream.core.events import EventLimits
from stream.profiles.computer import Timings
from stream.worker.app import _observe
from stream.worker.metrics import WorkerMetrics

NOW_MS = 1_764_000_000_000


def record(n: int, query: str) -> RawMessage:
    doc = {"event_id": f"e{n}", "user_id": "u1", "type": "search", "query": query, "ts_ms": NOW_MS}
    return RawMessage(b"u1", json.dumps(doc).encode(), SourcePosition("events", 0, n))


@pytest.mark.parametrize(
    ("queries", "cut"),
    [
        (["pens"], 0),
        (["x" * 513], 1),
        (["x" * 600, "pens", "y" * 30_000], 2),
        (["  " + "z" * 512 + "  "], 0),  # only surrounding whitespace over the limit: nothing cut
    ],
)
def test_observe_counts_the_batchs_cut_queries(queries: list[str], cut: int) -> None:
    decoded = decode_batch([record(n, q) for n, q in enumerate(queries)], limits=EventLimits(), now_ms=NOW_MS)
    metrics = WorkerMetrics()
    batch: Any = [SimpleNamespace(message=SimpleNamespace(timestamp=time.time())) for _ in queries]
    _observe(
        metrics,
        batch=batch,
        decoded=decoded,
        outcome=BatchOutcome(changed=[], forgets=[], popularity={}, late=0, duplicates=0),
        profiles=0,
        timings=Timings(encode_ms=0.0, rank_ms=0.0),
        started_s=time.perf_counter(),
    )
    assert metrics.registry.get_sample_value("profilestream_truncated_queries_total") == cut
    assert metrics.registry.get_sample_value("profilestream_events_total") == len(queries)
