"""deploy/grafana/profilestream.json: every panel's query names a metric the code exports.

The exported names are read from what the code serves, not from a list kept by hand: the worker's
registry (`WorkerMetrics`) and the ``GET /metrics`` pages of the collector and lookups apps, so a
renamed or removed metric fails here instead of leaving an empty panel in production.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream.core.settings import load_settings
from stream.ingest.collector import create_collector_app
from stream.serving.api import create_lookup_app
from stream.worker.metrics import WorkerMetrics
from tests.support.fakes import FakeProducer
from tests.support.paths import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "profilestream.json"
METRIC = re.compile(r"\bprofilestream_[a-z0-9_]+\b")
# The series each Prometheus metric type exposes (prometheus_client adds `_created` as well).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
# Panels the issue asks for, by a metric each must chart.
REQUIRED = {
    "profilestream_events_total",  # worker throughput
    "profilestream_encode_ms_bucket",  # batch time
    "profilestream_topk_ms_bucket",
    "profilestream_freshness_ms_bucket",
    "profilestream_partition_lag",  # lag per partition
    "profilestream_dead_letters_total",
    "profilestream_quarantined_records_total",
    "profilestream_corrupt_windows_total",
    "profilestream_collector_requests_total",
    "profilestream_collector_events_total",  # accepted / rejected / clamped / truncated
    "profilestream_lookups_request_seconds_bucket",  # latency by route
}


def exported_series(texts: Iterable[str]) -> dict[str, str]:
    """Series name -> metric type, for every metric family in the given exposition pages."""
    series: dict[str, str] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for suffix in SUFFIXES.get(family.type, ("",)):
                series[family.name + suffix] = family.type
    return series


def served_metrics_pages(tmp_path: Path) -> Iterator[str]:
    settings = load_settings({}, model_dir=tmp_path / "no-model", index_dir=tmp_path / "no-index")
    registry: CollectorRegistry = WorkerMetrics().registry
    yield generate_latest(registry).decode()
    # No lifespan (no `with`): /metrics needs neither Kafka nor Redis.
    collector = create_collector_app(settings, producer_factory=lambda _: FakeProducer())
    lookups = create_lookup_app(settings)
    for app in (collector, lookups):
        response = TestClient(app).get("/metrics")
        assert response.status_code == 200
        yield response.text


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return exported_series(served_metrics_pages(tmp_path_factory.mktemp("grafana")))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def test_the_exported_names_are_read_from_the_code(exported: dict[str, str]) -> None:
    # Guards the collection itself: a broken walk would make the next test pass vacuously.
    assert exported["profilestream_events_total"] == "counter"
    assert exported["profilestream_partition_lag"] == "gauge"
    assert exported["profilestream_collector_events_total"] == "counter"
    assert exported["profilestream_lookups_request_seconds_bucket"] == "histogram"


def test_every_panel_query_names_only_exported_metrics(exported: dict[str, str]) -> None:
    unknown = []
    for panel in panels(dashboard()):
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            names = METRIC.findall(target["expr"])
            assert names, f"panel {panel['title']!r} query names no profilestream metric: {target['expr']}"
            unknown += [f"{panel['title']}: {name}" for name in names if name not in exported]
    assert unknown == [], "queries name metrics the code does not export"


def test_counters_and_histograms_are_charted_as_rates(exported: dict[str, str]) -> None:
    """A raw counter only ever grows and resets on restart: chart rate() or increase() of it."""
    raw = []
    for panel in panels(dashboard()):
        for target in panel["targets"]:
            cumulative = [
                n for n in METRIC.findall(target["expr"]) if exported.get(n) in ("counter", "histogram")
            ]
            if cumulative and not re.search(r"\b(rate|increase|irate)\(", target["expr"]):
                raw.append(f"{panel['title']}: {target['expr']}")
    assert raw == []


def test_the_dashboard_covers_worker_collector_and_lookups() -> None:
    charted = {
        name for panel in panels(dashboard()) for t in panel["targets"] for name in METRIC.findall(t["expr"])
    }
    assert REQUIRED - charted == set()


def test_the_dashboard_is_importable() -> None:
    doc = dashboard()
    assert doc["uid"] and doc["title"] and isinstance(doc["schemaVersion"], int)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in doc["templating"]["list"]}
    for panel in panels(doc):
        # Grafana resolves the data source per import: no hard-coded uid of someone's instance.
        assert panel["datasource"]["uid"] == "${datasource}" and "datasource" in variables
        assert {t["refId"] for t in panel["targets"]} == {chr(65 + i) for i in range(len(panel["targets"]))}
