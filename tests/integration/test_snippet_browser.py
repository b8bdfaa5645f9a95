"""The browser snippet in a real headless Chromium (Debian's chromium + chromedriver, driven by
selenium) against the real collector and Kafka.

Node has no 64 KiB keepalive limit and no page life cycle; Chromium has both. The page is the
collector's own /static/example.html (same origin, as a shop serving the snippet would have it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException

from stream.core.events import MAX_QUERY_CHARS
from stream.core.settings import Settings
from stream.kafka.topics import ensure_topics
from tests.integration.test_collector import consume_all, running_collector
from tests.support.browser import INSTALL_HINT, require_chromium

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)

# 60 events of about 1.4 KB (page URL with UTM parameters, referrer, user agent): more than 64 KiB
# together, which Chromium refuses as one keepalive body; plus one over-long pasted query; on a
# device whose clock is 25 h fast.
TRACK = r"""
const done = arguments[arguments.length - 1];
// This device's clock is 25 h fast (the field case clockahead): the collector corrects it.
const realNow = Date.now;
Date.now = () => realNow() + 25 * 3600 * 1000;
ProfileStream.init({endpoint: "/v1/events", userId: "browser-user", flushIntervalMs: 3600000, maxBatch: 100});
const ctx = {
  page_url: "https://shop.example/p/sku-00031?utm_source=newsletter&utm_medium=email&utm_campaign=" +
    "spring-sale-".repeat(40),
  referrer: "https://www.search.example/search?q=" + "ergonomic+desk+lamp+".repeat(20),
  user_agent: navigator.userAgent,
};
const ids = [];
for (let i = 0; i < 60; i++) ids.push(ProfileStream.track("view", {item_id: "sku-" + i, context: ctx}));
ids.push(ProfileStream.track("search", {query: "pasted ".repeat(100)}));
ProfileStream.flush()
  .then((accepted) => done({ids, accepted, stats: ProfileStream.stats()}))
  .catch((err) => done({error: String(err)}));
"""

# Left in the queue, then sent by sendBeacon when the page goes away.
TRACK_BEFORE_LEAVING = r"""
return [ProfileStream.track("add_to_cart", {item_id: "sku-1"}),
        ProfileStream.track("purchase", {item_id: "sku-1"})];
"""


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    browser, driver_path = require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = webdriver.ChromeService(executable_path=driver_path)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:
        pytest.fail(f"headless chromium did not start ({exc.msg}); {INSTALL_HINT}")
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_records(settings: Settings, count: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        records = [value for _, value, _ in consume_all(settings, settings.events_topic)]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def test_snippet_in_headless_chromium_delivers_every_event(
    isolated: Settings, chromium: webdriver.Chrome
) -> None:
    ensure_topics(isolated)
    with running_collector(isolated) as base:
        chromium.get(f"{base}/static/example.html")
        result = chromium.execute_async_script(TRACK)
        assert "error" not in result, result
        assert result["accepted"] == 61, result["stats"]
        assert result["stats"]["queued"] == 0
        assert result["stats"]["truncatedQueries"] == 1
        assert result["stats"]["clamped"] == 0, "times corrected from sent_at_ms, not clamped"
        beaconed_ids = chromium.execute_script(TRACK_BEFORE_LEAVING)
        # Leaving the page fires pagehide (and visibilitychange): the rest goes out by sendBeacon.
        chromium.get("about:blank")
        records = wait_for_records(isolated, 63)
    assert [v["event_id"] for v in records[:61]] == result["ids"]
    assert sorted(v["event_id"] for v in records[61:]) == sorted(beaconed_ids)
    assert len(records) == 63
    assert all(v["user_id"] == "browser-user" for v in records)
    searches = [v for v in records if v["type"] == "search"]
    assert [len(v["query"]) for v in searches] == [MAX_QUERY_CHARS]
    now_ms = time.time() * 1000
    assert all(abs(v["ts_ms"] - now_ms) < 120_000 for v in records)
