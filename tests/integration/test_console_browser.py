"""The live console (/console on serve-lookups) in a real headless Chromium against the real Redis.

A known profile is written the way the worker writes it (`RecoStore`, `RedisActivitySink`), the
page is driven like a person would (type a user id, press Look up, type a query, press Search),
and the screenshot is kept for the README (stream/serving/console.png).

The worker's /metrics is a stand-in here: the real `WorkerMetrics` registry served by
prometheus_client, advanced by a thread as a busy worker would, so the charts have data without
running Kafka and a worker in this test (the pipeline tests cover those).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import start_http_server
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from models.encoder.onnx_encoder import load_encoder, options_from_settings
from stream.core.events import Event, EventType
from stream.core.records import Recommendation, UserProfile
from stream.core.settings import Settings
from stream.core.window import Window, WindowEvent, window_version
from stream.redis.activity import RedisActivitySink
from stream.redis.reco_store import RecoStore
from stream.worker.metrics import WorkerMetrics
from tests.integration.conftest import free_port
from tests.integration.test_lookups import running_lookups
from tests.integration.test_snippet_browser import CHROMIUM_FLAGS
from tests.support.browser import INSTALL_HINT, require_chromium
from tests.support.paths import REPO

pytestmark = pytest.mark.integration

SCREENSHOT = REPO / "stream" / "serving" / "console.png"
USER = "shop-eu/4711"  # a "/" in the id: the page must percent-encode it as one path segment
MINUTE_MS = 60_000
FRESHNESS_MS = 850
TOP_K = (
    Recommendation("sku-00090", 0.9312, "because you added sku-00084 to your cart"),
    Recommendation("sku-00029", 0.8875, "because you viewed sku-00029"),
    Recommendation("sku-00066", 0.8120, "because you searched 'Papyrus stapler'"),
)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    browser, driver_path = require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, "--window-size=1440,1300"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    try:
        driver = webdriver.Chrome(
            options=options, service=webdriver.ChromeService(executable_path=driver_path)
        )
    except WebDriverException as exc:
        pytest.fail(f"headless chromium did not start ({exc.msg}); {INSTALL_HINT}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def write_profile(settings: Settings, now_ms: int) -> list[Event]:
    """The user's events and recommendations, written through the worker's own Redis writers."""
    events = [
        Event("e1", USER, EventType.VIEW, now_ms - 180 * MINUTE_MS, item_id="sku-00029"),
        Event("e2", USER, EventType.CLICK, now_ms - 60 * MINUTE_MS, item_id="sku-00084"),
        Event("e3", USER, EventType.SEARCH, now_ms - 20 * MINUTE_MS, query="Papyrus stapler"),
        Event("e4", USER, EventType.ADD_TO_CART, now_ms - 2 * MINUTE_MS, item_id="sku-00084"),
    ]
    encoder = load_encoder(Path(settings.model_dir), options_from_settings(settings))
    vector = encoder.encode(["Papyrus heavy duty stapler"])[0].astype(np.float32)
    window = Window(events=tuple(WindowEvent.from_event(e) for e in events))
    profile = UserProfile(
        user_id=USER,
        items=TOP_K,
        vector=vector,
        model_version=encoder.model_version,
        window_version=window_version(window),
        window_newest_ts_ms=events[-1].ts_ms,
        window_newest_event_id=events[-1].event_id,
    )

    async def write() -> None:
        sink, store = RedisActivitySink.from_settings(settings), RecoStore.from_settings(settings)
        try:
            await sink.write(events)
            await store.write([profile], [], {}, computed_at_ms=events[-1].ts_ms + FRESHNESS_MS)
        finally:
            await sink.close()
            await store.close()

    asyncio.run(write())
    return events


@pytest.fixture
def busy_worker_metrics() -> Iterator[str]:
    """A worker /metrics page (the real registry) whose counters move while the page polls."""
    metrics = WorkerMetrics()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    stop = threading.Event()

    def tick() -> None:
        step = 0
        while not stop.wait(0.25):
            step += 1
            metrics.events.inc(120 + 40 * (step % 5))
            metrics.profiles_written.inc(60)
            for partition in range(4):
                metrics.partition_lag.labels(partition=str(partition)).set((step * 7 + partition * 13) % 50)
            metrics.consumer_lag.set(sum((step * 7 + p * 13) % 50 for p in range(4)))
            metrics.freshness_ms.observe(300 + 150 * (step % 4))

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        stop.set()
        ticker.join()
        server.shutdown()
        server.server_close()
        thread.join()


def texts(driver: webdriver.Chrome, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def test_console_shows_profile_search_and_live_charts_in_headless_chromium(
    isolated: Settings, chromium: webdriver.Chrome, busy_worker_metrics: str, tmp_path: Path
) -> None:
    settings = isolated.model_copy(update={"console_worker_metrics_urls": busy_worker_metrics})
    now_ms = time.time_ns() // 1_000_000
    write_profile(settings, now_ms)
    wait = WebDriverWait(chromium, 30)
    with running_lookups(settings) as base:
        chromium.get(f"{base}/console")
        chromium.find_element(By.ID, "user-input").send_keys(USER)
        chromium.find_element(By.ID, "lookup-btn").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#topk tbody tr")) == len(TOP_K))

        assert [
            cell.get_attribute("data-item-id")
            for cell in chromium.find_elements(By.CSS_SELECTOR, "#topk tbody td[data-item-id]")
        ] == [i.item_id for i in TOP_K]
        assert texts(chromium, "#topk tbody td.num") == [f"{i.score:.4f}" for i in TOP_K]
        assert texts(chromium, "#topk tbody tr td:nth-child(4)") == [i.reason for i in TOP_K]
        # Titles from the item index the lookups server loaded for search.
        assert texts(chromium, "#topk tbody tr td:nth-child(2)")[0] == "sku-00090 Papyrus heavy duty stapler"
        assert chromium.find_element(By.ID, "profile-user").text == USER
        assert chromium.find_element(By.ID, "freshness").text == f"{FRESHNESS_MS} ms"
        assert chromium.find_element(By.ID, "source").text == "stored profile"
        # The window, newest first, with the type weights halving per half-life (7 days here).
        window = chromium.find_elements(By.CSS_SELECTOR, "#window tbody tr")
        assert [row.get_attribute("data-type") for row in window] == [
            "add_to_cart",
            "search",
            "click",
            "view",
        ]
        assert texts(chromium, "#window tbody tr td:nth-child(3)") == [
            "sku-00084 Papyrus heavy duty stapler",
            '"Papyrus stapler"',
            "sku-00084 Papyrus heavy duty stapler",
            "sku-00029 Papyrus compact stapler",
        ]
        assert texts(chromium, "#window tbody tr td:nth-child(1)")[0].endswith("min")
        assert texts(chromium, "#window tbody tr td:nth-child(4)")[0] == "3.000"

        chromium.find_element(By.ID, "search-input").send_keys("stapler")
        chromium.find_element(By.ID, "search-btn").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#search-personal li[data-item-id]"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#search-query li[data-item-id]"))
        assert chromium.find_element(By.ID, "search-why").text.startswith("personalised:")
        personal = [
            e.get_attribute("data-item-id")
            for e in chromium.find_elements(By.CSS_SELECTOR, "#search-personal li")
        ]
        plain = [
            e.get_attribute("data-item-id")
            for e in chromium.find_elements(By.CSS_SELECTOR, "#search-query li")
        ]
        assert len(personal) == len(plain) == 10
        assert all("stapler" in t.lower() for t in texts(chromium, "#search-query li"))
        assert personal != plain, "the profile re-ranks the query-only results"

        # Live charts: rates need two polls; wait for a few more so the lines have some length.
        wait.until(lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-polls") or 0) >= 5)
        for chart in ("chart-throughput", "chart-lag", "chart-freshness", "chart-lookups"):
            assert chromium.find_elements(By.CSS_SELECTOR, f"#{chart} polyline"), chart
        assert float(chromium.find_element(By.ID, "now-throughput").text) > 0
        assert chromium.find_element(By.ID, "live-sources").text.startswith("1/1 workers answering")

        shot = tmp_path / "console.png"
        assert chromium.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copyfile(shot, SCREENSHOT)
