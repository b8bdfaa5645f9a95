"""The console's JSON (profile view, metrics summary) and its static page, without Redis or a browser.

The page itself runs in headless Chromium in tests/integration/test_console_browser.py.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from stream.core.settings import load_settings
from stream.core.window import WindowConfig
from stream.redis.reco_store import StoredReco, read_reco_payload
from stream.serving.api import create_lookup_app
from stream.serving.console import (
    CONSOLE_DIR,
    Scrape,
    install_console,
    profile_view,
    worker_metrics_urls,
    worker_totals,
)
from stream.serving.lookups import RecoClient, StoredProfile
from stream.worker.metrics import WorkerMetrics

HOUR_MS = 3_600_000
NOW_MS = 1_700_000_000_000
CONFIG = WindowConfig(half_life_ms=HOUR_MS)  # default type weights: view 1, click 2, search 0.5 ...


def line(event_id: str, type_: str, ts_ms: int, **extra: str) -> bytes:
    return json.dumps({"event_id": event_id, "type": type_, "ts_ms": ts_ms, **extra}).encode()


def reco(newest_ts_ms: int, computed_at_ms: int) -> StoredReco:
    return read_reco_payload(
        json.dumps(
            {
                "user_id": "u1",
                "items": [{"item_id": "sku-2", "score": 0.91, "reason": "because you viewed sku-1"}],
                "model_version": "fp32:abc",
                "window_newest_ts_ms": newest_ts_ms,
                "window_newest_event_id": "e3",
                "computed_at_ms": computed_at_ms,
                "source": "profile",
            }
        )
    )


# --- the profile view -------------------------------------------------------------------------


def test_profile_view_weighs_the_window_like_the_worker_and_measures_freshness() -> None:
    newest = NOW_MS - 60_000
    stored = StoredProfile(
        reco=reco(newest, computed_at_ms=newest + 850),
        recent_lines=(
            line("e1", "view", newest - HOUR_MS, item_id="sku-1"),
            line("e3", "click", newest, item_id="sku-1"),
            line("e2", "search", newest - 2 * HOUR_MS, query="stapler"),
        ),
        forgotten_ts_ms=None,
    )
    view = profile_view("u1", stored, CONFIG, NOW_MS).to_dict()
    assert view["source"] == "profile"
    assert view["freshness_ms"] == 850
    assert view["written_ago_ms"] == 60_000 - 850
    assert view["items"] == [
        {"item_id": "sku-2", "title": None, "score": 0.91, "reason": "because you viewed sku-1"}
    ]
    assert [e["event_id"] for e in view["window"]] == ["e2", "e1", "e3"], "oldest first, by event time"
    # Type weight halved per half-life before the newest event: search 0.5/4, view 1/2, click 2.
    assert [e["weight"] for e in view["window"]] == pytest.approx([0.125, 0.5, 2.0])
    assert [e["age_ms"] for e in view["window"]] == [60_000 + 2 * HOUR_MS, 60_000 + HOUR_MS, 60_000]
    assert view["window"][0]["query"] == "stapler" and view["window"][0]["item_id"] is None


def test_profile_view_drops_what_the_window_would_not_hold() -> None:
    forget_ms = NOW_MS - 10 * HOUR_MS
    stored = StoredProfile(
        reco=None,
        recent_lines=(
            line("old", "view", forget_ms - 1, item_id="gone"),  # an old replay after the forget
            b"not json",
            b'["not", "an", "object"]',
            line("e1", "view", NOW_MS - 2000, item_id="sku-1"),
            line("e1", "click", NOW_MS - 1000, item_id="sku-9"),  # same id again: the first stays
            line("f", "forget", NOW_MS - 500),
        ),
        forgotten_ts_ms=forget_ms,
    )
    view = profile_view("u1", stored, CONFIG, NOW_MS).to_dict()
    assert view["source"] == "none"
    assert view["items"] == [] and view["freshness_ms"] is None and view["written_ago_ms"] is None
    assert [(e["event_id"], e["item_id"]) for e in view["window"]] == [("e1", "sku-1")]
    assert view["forgotten_ts_ms"] == forget_ms


def test_profile_view_keeps_only_events_within_the_max_age_of_the_newest() -> None:
    config = WindowConfig(max_age_ms=HOUR_MS, max_events=2)
    stored = StoredProfile(
        None,
        (
            *(line(f"e{i}", "view", NOW_MS - i * 1000, item_id="x") for i in range(3)),
            line("stale", "view", NOW_MS - 2 * HOUR_MS, item_id="x"),
        ),
        None,
    )
    view = profile_view("u1", stored, config, NOW_MS).to_dict()
    assert [e["event_id"] for e in view["window"]] == ["e1", "e0"]


# --- the metrics summary ----------------------------------------------------------------------


def worker_page(events: int, lag: dict[str, float], freshness_ms: tuple[float, ...]) -> str:
    metrics = WorkerMetrics()
    metrics.events.inc(events)
    for partition, value in lag.items():
        metrics.partition_lag.labels(partition=partition).set(value)
    metrics.consumer_lag.set(math.nan if any(math.isnan(v) for v in lag.values()) else sum(lag.values()))
    for value in freshness_ms:
        metrics.freshness_ms.observe(value)
    return generate_latest(metrics.registry).decode()


def test_worker_totals_sum_over_workers_and_name_the_ones_down() -> None:
    totals = worker_totals(
        [
            Scrape("http://a/metrics", worker_page(10, {"0": 3, "1": 4}, (100, 300))),
            Scrape("http://b/metrics", worker_page(5, {"2": 1}, (200,))),
            Scrape("http://c/metrics", error="refused"),
            Scrape("http://d/metrics", "<html>a login page</html>"),
        ]
    ).to_dict()
    assert totals["up"] == 2
    assert totals["events_total"] == 15
    assert totals["consumer_lag"] == 8
    assert totals["partition_lag"] == {"0": 3, "1": 4, "2": 1}
    assert (totals["freshness_ms_sum"], totals["freshness_ms_count"]) == (600, 3)
    down = {s["url"]: s["error"] for s in totals["sources"] if not s["up"]}
    assert down["http://c/metrics"] == "refused"
    assert "not a Prometheus exposition" in down["http://d/metrics"]


def test_an_unknown_lag_is_unknown_not_zero() -> None:
    totals = worker_totals(
        [Scrape("a", worker_page(1, {"0": math.nan}, ())), Scrape("b", worker_page(1, {"1": 2}, ()))]
    ).to_dict()
    assert totals["consumer_lag"] is None
    assert totals["partition_lag"] == {"0": None, "1": 2}


def test_no_worker_answering_gives_no_numbers() -> None:
    totals = worker_totals([Scrape("a", error="refused")]).to_dict()
    assert totals["up"] == 0 and totals["events_total"] is None and totals["consumer_lag"] is None


def test_worker_metrics_urls_default_to_the_local_worker() -> None:
    assert worker_metrics_urls(load_settings({}, worker_web_host="0.0.0.0", worker_web_port=7001)) == [
        "http://127.0.0.1:7001/metrics"
    ]
    explicit = load_settings(
        {}, console_worker_metrics_urls=" http://w1:6066/metrics, http://w2:6066/metrics "
    )
    assert worker_metrics_urls(explicit) == ["http://w1:6066/metrics", "http://w2:6066/metrics"]


class _Page(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:  # http.server's signature
        pass


@pytest.fixture
def worker_server() -> Iterator[str]:
    _Page.body = worker_page(42, {"0": 7}, (120,)).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_console_metrics_endpoint_scrapes_the_configured_workers(worker_server: str, tmp_path: Path) -> None:
    with socket_closed_port() as refused:
        settings = load_settings(
            {},
            console_worker_metrics_urls=f"{worker_server},http://127.0.0.1:{refused}/metrics",
            model_dir=tmp_path / "none",
            index_dir=tmp_path / "none",
        )
    with TestClient(create_lookup_app(settings)) as client:
        client.get("/healthz")
        body = client.get("/v1/console/metrics").json()
    assert body["worker"]["up"] == 1
    assert body["worker"]["events_total"] == 42
    assert body["worker"]["partition_lag"] == {"0": 7}
    assert [s["up"] for s in body["worker"]["sources"]] == [True, False]
    assert "PROFILESTREAM_CONSOLE_WORKER_METRICS_URLS" in body["worker"]["sources"][1]["error"]
    assert body["lookups"]["requests_total"] >= 1  # its own registry: the /healthz above
    assert isinstance(body["ts_ms"], int)


class socket_closed_port:
    """A local port nothing listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        return None


# --- the routes ---------------------------------------------------------------------------------


class FakeClient:
    def __init__(self, stored: StoredProfile) -> None:
        self.stored = stored
        self.asked: list[str] = []

    async def stored_profile(self, user_id: str) -> StoredProfile:
        self.asked.append(user_id)
        return self.stored

    def title(self, item_id: str) -> str | None:
        return {"sku-1": "Papyrus compact stapler"}.get(item_id)


@pytest.fixture
def fake() -> FakeClient:
    newest = NOW_MS - 1000
    return FakeClient(
        StoredProfile(reco(newest, newest + 40), (line("e3", "click", newest, item_id="sku-1"),), None)
    )


@pytest.fixture
def console_app(fake: FakeClient) -> TestClient:
    app = FastAPI()
    client: RecoClient = fake  # type: ignore[assignment]  # the one method the route calls
    install_console(app, load_settings({}), lambda: client, CollectorRegistry(), clock_ms=lambda: NOW_MS)
    return TestClient(app)


@pytest.mark.parametrize("user_id", ["u1", "shop-eu/4711", "..", "a b?c#d+e=f%"])
def test_profile_route_takes_any_schema_id_percent_encoded(
    console_app: TestClient, fake: FakeClient, user_id: str
) -> None:
    from urllib.parse import quote

    encoded = quote(user_id, safe="").replace(".", "%2E")
    response = console_app.get(f"/v1/users/{encoded}/profile")
    assert response.status_code == 200, response.text
    assert fake.asked == [user_id]
    assert response.json()["user_id"] == user_id
    assert response.json()["freshness_ms"] == 40
    # Titles from the item index where it knows the item, else None (the page shows the id).
    assert response.json()["window"][0]["title"] == "Papyrus compact stapler"
    assert response.json()["items"][0]["title"] is None


def test_profile_route_refuses_an_invisible_id(console_app: TestClient, fake: FakeClient) -> None:
    response = console_app.get("/v1/users/%E2%80%8B/profile")
    assert response.status_code == 422
    assert fake.asked == []


def test_console_page_and_every_asset_it_names_are_served_locally(console_app: TestClient) -> None:
    page = console_app.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == ["/console/static/console.css", "/console/static/console.js"]
    for asset in assets:
        assert console_app.get(asset).status_code == 200
    # No CDN: nothing the page loads points off this server (the SVG namespace is a name, not a fetch).
    for path in CONSOLE_DIR.iterdir():
        text = path.read_text().replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://|//cdn|@import", text), path.name


def test_console_script_never_writes_server_text_as_html() -> None:
    """User ids, queries and reasons are arbitrary text: the page writes them with textContent."""
    script = (CONSOLE_DIR / "console.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script)
