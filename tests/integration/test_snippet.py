"""The browser snippet, run by Node 20 with a minimal window stub, against the real collector + Kafka."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from stream.core.settings import Settings
from stream.ingest.collector import STATIC_DIR
from stream.kafka.topics import ensure_topics
from tests.integration.test_collector import consume_all, running_collector

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


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_events_tracked_in_js_arrive_in_the_topic(isolated: Settings, tmp_path: Path) -> None:
    ensure_topics(isolated)
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    with running_collector(isolated) as base:
        run = subprocess.run(
            ["node", str(harness), str(STATIC_DIR / "profilestream.js"), f"{base}/v1/events"],
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
