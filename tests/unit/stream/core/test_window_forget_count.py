"""Events the window refuses because they were received at or before their user's forget are
counted, in the window's change, the batch's outcome and the worker's metrics: never dropped silently."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from stream.core.batch import BatchOutcome, apply_batch
from stream.core.decode import DecodedBatch
from stream.core.events import Event, EventType
from stream.core.window import Window, WindowConfig, apply_events
from stream.profiles.computer import Timings
from stream.worker.app import _observe
from stream.worker.metrics import WorkerMetrics

T0 = 1_700_000_000_000
CONFIG = WindowConfig()


def ev(name: str, received: int, kind: EventType = EventType.VIEW, user: str = "u") -> Event:
    return Event(
        event_id=name,
        user_id=user,
        type=kind,
        ts_ms=T0 + received,
        item_id=None if kind is EventType.FORGET else f"i-{name}",
        received_ms=T0 + received,
    )


def test_an_event_listed_after_a_forget_but_received_before_it_is_counted() -> None:
    forgotten = apply_events(Window(), [ev("f", 100, EventType.FORGET)], CONFIG).window
    change = apply_events(forgotten, [ev("early", 50), ev("at-cut", 100), ev("later", 101)], CONFIG)
    assert [e.event_id for e in change.window.events] == ["later"]
    assert (change.received_before_forget, change.added, change.late) == (2, 1, 0)


def test_the_cut_counts_in_list_order_within_one_batch() -> None:
    # Before the forget in the list: what the forget asked to remove, not counted. After it but
    # received before it: refused by the cut, counted.
    change = apply_events(
        Window(),
        [ev("before", 10), ev("f", 100, EventType.FORGET), ev("lagging", 60), ev("after", 150)],
        CONFIG,
    )
    assert [e.event_id for e in change.window.events] == ["after"]
    assert change.received_before_forget == 1


def test_nothing_is_counted_without_a_forget() -> None:
    change = apply_events(Window(), [ev("a", 10), ev("b", 5)], CONFIG)
    assert change.received_before_forget == 0


def test_the_batch_outcome_sums_its_users_counts() -> None:
    windows = {
        "u1": apply_events(Window(), [ev("f1", 100, EventType.FORGET, "u1")], CONFIG).window,
        "u2": apply_events(Window(), [ev("f2", 100, EventType.FORGET, "u2")], CONFIG).window,
    }
    events = [ev("a", 10, user="u1"), ev("b", 20, user="u2"), ev("c", 30, user="u2"), ev("d", 200, user="u2")]
    _, outcome = apply_batch(windows, events, CONFIG, popularity_half_life_ms=7 * 24 * 3600 * 1000)
    assert outcome.received_before_forget == 3


def test_the_worker_counts_them_in_a_metric_and_logs_them_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    metrics = WorkerMetrics()
    batch: Any = [SimpleNamespace(message=SimpleNamespace(timestamp=time.time()))]
    outcome = BatchOutcome(
        changed=[], forgets=[], popularity={}, late=0, duplicates=0, received_before_forget=4
    )
    with caplog.at_level(logging.INFO, logger="stream.worker.app"):
        _observe(
            metrics,
            batch=batch,
            decoded=DecodedBatch(),
            outcome=outcome,
            profiles=0,
            timings=Timings(encode_ms=0.0, rank_ms=0.0),
            started_s=time.perf_counter(),
        )
    assert metrics.registry.get_sample_value("profilestream_forgotten_events_total") == 4
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch:")]
    assert "4 received before their user's forget" in line
