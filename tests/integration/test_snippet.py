"""The browser snippet, run by Node with a minimal window stub, against the real collector + Kafka.

The field cases' harness modes (tests/integration/snippet_harness.js, a copy of
shared/field-cases/snippet-harness.js) each stand for a kind of real-world input the snippet lost:
one over-long query in a batch, a device clock 25 h fast, keepalive bodies over 64 KiB.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from stream.core.events import MAX_QUERY_CHARS
from stream.core.settings import Settings
from stream.kafka.topics import ensure_topics
from tests.integration.test_collector import consume_all, running_collector
from tests.support.browser import SNIPPET, require_node

pytestmark = pytest.mark.integration

# Node has fetch, Blob and crypto.randomUUID; the page (document, navigator.sendBeacon) is stubbed.
# Two events go out with fetch(keepalive) on flush, the last two with sendBeacon on page hide.
HARNESS = r"""
const fs = require("fs");
const vm = require("vm");
const [snippetPath, endpoint] = process.argv.slice(2);
const listeners = {};
const beacons = [];
globalThis.document = {
  visibilityState: "visible",
  addEventListener(name, fn) { (listeners[name] = listeners[name] || []).push(fn); },
};
Object.defineProperty(globalThis, "navigator", {
  configurable: true,
  value: {
    sendBeacon(url, data) {
      const headers = {"Content-Type": data.type};
      beacons.push(data.text().then((body) => fetch(url, {method: "POST", body, headers})));
      return true;
    },
  },
});
vm.runInThisContext(fs.readFileSync(snippetPath, "utf8"), {filename: snippetPath});
(async () => {
  ProfileStream.init({endpoint, userId: "js-user", flushIntervalMs: 60000, maxBatch: 10});
  const ids = [];
  ids.push(ProfileStream.track("view", {item_id: "sku-1"}));
  ids.push(ProfileStream.track("search", {query: "gel pens"}));
  const accepted = await ProfileStream.flush();
  ids.push(ProfileStream.track("add_to_cart", {item_id: "sku-1"}));
  ids.push(ProfileStream.track("purchase", {item_id: "sku-1"}));
  document.visibilityState = "hidden";
  for (const fn of listeners.visibilitychange || []) fn();
  const statuses = (await Promise.all(beacons)).map((r) => r.status);
  console.log(JSON.stringify({ids, accepted, statuses}));
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(1); });
"""


def test_events_tracked_in_js_arrive_in_the_topic(isolated: Settings, tmp_path: Path) -> None:
    node = require_node()
    ensure_topics(isolated)
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    with running_collector(isolated) as base:
        run = subprocess.run(
            [node, str(harness), str(SNIPPET), f"{base}/v1/events"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["accepted"] == 2
    assert result["statuses"] == [202]
    records = consume_all(isolated, isolated.events_topic)
    assert [v["event_id"] for _, v, _ in records] == result["ids"]
    assert [v["type"] for _, v, _ in records] == ["view", "search", "add_to_cart", "purchase"]
    assert all(key == b"js-user" and v["user_id"] == "js-user" for key, v, _ in records)


FIELD_HARNESS = Path(__file__).with_name("snippet_harness.js")


def run_field_harness(settings: Settings, mode: str) -> dict[str, Any]:
    node = require_node()
    ensure_topics(settings)
    with running_collector(settings) as base:
        run = subprocess.run(
            [node, str(FIELD_HARNESS), str(SNIPPET), f"{base}/v1/events", mode],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert run.returncode == 0, f"{mode}: {run.stderr}"
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_one_long_query_does_not_lose_the_batch(isolated: Settings) -> None:
    """f03: a 600-character pasted query is truncated to MAX_QUERY_CHARS; all 20 events land."""
    result = run_field_harness(isolated, "longquery")
    assert result["tracked"] == 20
    assert result["accepted"] == 20
    # The snippet cut the query itself (the same policy), so the collector had nothing to cut.
    assert result["stats"]["truncatedQueries"] == 1
    assert result["stats"]["collectorTruncated"] == 0
    records = [v for _, v, _ in consume_all(isolated, isolated.events_topic)]
    assert len(records) == 20
    searches = [v for v in records if v["type"] == "search"]
    assert [len(v["query"]) for v in searches] == [MAX_QUERY_CHARS]


def test_a_device_clock_25_hours_fast_loses_nothing(isolated: Settings) -> None:
    """clockahead: every event lands, its time corrected from the batch's sent_at_ms."""
    before_ms = int(time.time() * 1000)
    result = run_field_harness(isolated, "clockahead")
    after_ms = int(time.time() * 1000)
    assert result["tracked"] == 15
    assert result["accepted"] == 15
    # Corrected from the send time, not clamped to the receive time.
    assert result["stats"]["clamped"] == 0
    records = [v for _, v, _ in consume_all(isolated, isolated.events_topic)]
    assert len(records) == 15
    for value in records:
        # Corrected to this machine's clock (within the time the run took), not 25 h ahead.
        assert before_ms - 5_000 <= value["ts_ms"] <= after_ms + 5_000, value


def test_keepalive_bodies_stay_under_64_kib(isolated: Settings) -> None:
    """keepalive: 60 events of about 1.4 KB, more than 64 KiB together, all land; the browser
    limit (enforced by the harness's fetch stub) is never hit."""
    result = run_field_harness(isolated, "keepalive")
    assert {k: result[k] for k in ("tracked", "accepted", "networkErrors")} == {
        "tracked": 60,
        "accepted": 60,
        "networkErrors": 0,
    }
    assert result["stats"]["droppedOversize"] == 0
    records = consume_all(isolated, isolated.events_topic)
    assert len(records) == 60
    assert len({v["event_id"] for _, v, _ in records}) == 60
