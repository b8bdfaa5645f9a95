// Unit tests of stream/ingest/static/profilestream.js, run by tests/unit/stream/ingest/test_snippet.py
// with `node --test`. Each test loads the snippet into a fresh VM context whose fetch, clock,
// navigator and document are fakes, so the delivery rules are checked without a collector.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("fs");
const vm = require("vm");

const SNIPPET = process.env.PROFILESTREAM_SNIPPET;
const SOURCE = fs.readFileSync(SNIPPET, "utf8");
const KEEPALIVE_LIMIT = 65536;

// A page with the snippet loaded. `answer(request)` returns {status, body, headers} or throws
// (a network error); requests are recorded with their parsed envelope.
function page(answer, options) {
  const requests = [];
  const beacons = [];
  const listeners = {};
  let inFlight = 0;
  let maxInFlight = 0;
  const clock = {now: 1000};
  const sandbox = {
    console: {warn() {}, log: console.log},
    performance: {now: () => clock.now},
    setInterval: () => 1,
    clearInterval() {},
    Blob,
    crypto: globalThis.crypto,
    document: {
      visibilityState: "visible",
      addEventListener(name, fn) { (listeners[name] = listeners[name] || []).push(fn); },
    },
    navigator: {
      beaconResult: true,
      sendBeacon(url, data) {
        beacons.push(data);
        return sandbox.navigator.beaconResult;
      },
    },
    fetch(url, init) {
      const request = {url, init, bytes: Buffer.byteLength(init.body), envelope: JSON.parse(init.body)};
      requests.push(request);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      return new Promise((resolve) => setImmediate(resolve)).then(() => {
        inFlight--;
        if (init.keepalive && request.bytes > KEEPALIVE_LIMIT) {
          throw new TypeError("Failed to fetch (keepalive body over 64 KiB)");
        }
        const reply = answer(request, requests.length - 1);
        const headers = new Map(Object.entries(reply.headers || {}));
        return {
          status: reply.status,
          headers: {get: (name) => headers.get(name) || null},
          json: () => Promise.resolve(reply.body === undefined ? {} : reply.body),
        };
      });
    },
  };
  vm.createContext(sandbox);
  vm.runInContext(SOURCE, sandbox, {filename: SNIPPET});
  const ps = sandbox.ProfileStream;
  ps.init(Object.assign({endpoint: "http://collector/v1/events", userId: "u1", maxBatch: 50}, options || {}));
  return {
    ps, requests, beacons, clock, sandbox,
    maxInFlight: () => maxInFlight,
    hide() {
      sandbox.document.visibilityState = "hidden";
      for (const fn of listeners.visibilitychange || []) fn();
    },
  };
}

const acceptAll = (request) => ({status: 202, body: {accepted: request.envelope.events.length, rejected: []}});
const ids = (request) => request.envelope.events.map((e) => e.event_id);
const bigContext = {page_url: "https://shop.example/p?utm=" + "x".repeat(1300)};

test("a batch over 64 KiB is split into bodies under the limit, sent one at a time", async () => {
  const p = page(acceptAll);
  const tracked = [];
  for (let i = 0; i < 60; i++) tracked.push(p.ps.track("view", {item_id: "sku-" + i, context: bigContext}));
  const accepted = await p.ps.flush();
  assert.equal(accepted, 60);
  assert.ok(p.requests.length >= 2, "60 events of 1.4 KB need two bodies");
  for (const r of p.requests) {
    assert.ok(r.bytes <= 64000, `a body of ${r.bytes} bytes`);
    assert.equal(r.init.keepalive, true);
    assert.equal(typeof r.envelope.sent_at_ms, "number");
  }
  assert.equal(p.maxInFlight(), 1, "keepalive bodies share one 64 KiB quota: never two in flight");
  assert.deepEqual(p.requests.flatMap(ids), tracked);
  assert.equal(p.ps.stats().queued, 0);
});

test("multi-byte text is measured in UTF-8 bytes, not characters", async () => {
  const p = page(acceptAll);
  const wide = {page_url: "https://shop.example/" + "é漢😀".repeat(300)};  // 9 bytes per 4 UTF-16 units
  for (let i = 0; i < 40; i++) p.ps.track("view", {item_id: "sku-" + i, context: wide});
  assert.equal(await p.ps.flush(), 40);
  for (const r of p.requests) assert.ok(r.bytes <= 64000, `a body of ${r.bytes} bytes`);
});

test("an event that alone exceeds the limit is dropped and counted, never retried", async () => {
  const p = page(acceptAll);
  p.ps.track("view", {item_id: "sku-1"});
  p.ps.track("view", {item_id: "sku-2", context: {blob: "y".repeat(70000)}});
  p.ps.track("view", {item_id: "sku-3"});
  assert.equal(await p.ps.flush(), 2);
  assert.equal(await p.ps.flush(), 0);
  assert.equal(p.requests.length, 1);
  assert.deepEqual(p.requests[0].envelope.events.map((e) => e.item_id), ["sku-1", "sku-3"]);
  assert.equal(p.ps.stats().droppedOversize, 1);
  assert.equal(p.ps.stats().queued, 0);
});

test("202 with rejected indices drops only those events", async () => {
  const p = page((r) => ({status: 202, body: {accepted: r.envelope.events.length - 1,
    rejected: [{index: 2, field: "item_id", reason: "required for type 'view'"}], truncated: 0}}));
  for (let i = 0; i < 5; i++) p.ps.track("view", {item_id: "sku-" + i});
  assert.equal(await p.ps.flush(), 4);
  assert.equal(await p.ps.flush(), 0);
  assert.equal(p.requests.length, 1);
  const s = p.ps.stats();
  assert.equal(s.rejected, 1);
  assert.equal(s.accepted, 4);
  assert.equal(s.queued, 0);
});

test("422 drops the listed events and resends the others", async () => {
  const p = page((r, n) => n === 0
    ? {status: 422, body: {errors: [{index: 1, field: "query", reason: "bad"}, {index: 4, field: "$", reason: "bad"}]}}
    : acceptAll(r));
  const tracked = [];
  for (let i = 0; i < 5; i++) tracked.push(p.ps.track("view", {item_id: "sku-" + i}));
  assert.equal(await p.ps.flush(), 3);
  assert.equal(p.requests.length, 2);
  assert.deepEqual(ids(p.requests[1]), [tracked[0], tracked[2], tracked[3]]);
  assert.equal(p.ps.stats().rejected, 2);
});

test("422 that names no event drops the batch instead of resending it forever", async () => {
  const p = page(() => ({status: 422, body: {errors: [{index: null, field: "$", reason: "bad body"}]}}));
  for (let i = 0; i < 3; i++) p.ps.track("view", {item_id: "sku-" + i});
  assert.equal(await p.ps.flush(), 0);
  assert.equal(await p.ps.flush(), 0);
  assert.equal(p.requests.length, 1);
  assert.equal(p.ps.stats().rejected, 3);
});

test("429 with Retry-After pauses sending for that long and keeps the events", async () => {
  const p = page((r, n) => n === 0 ? {status: 429, headers: {"Retry-After": "30"}} : acceptAll(r));
  const tracked = [p.ps.track("view", {item_id: "sku-1"}), p.ps.track("view", {item_id: "sku-2"})];
  assert.equal(await p.ps.flush(), 0);
  p.clock.now += 29000;
  assert.equal(await p.ps.flush(), 0);
  assert.equal(p.requests.length, 1, "no request before Retry-After has passed");
  p.clock.now += 2000;
  assert.equal(await p.ps.flush(), 2);
  assert.deepEqual(ids(p.requests[1]), tracked, "the same event ids, in order");
});

test("Retry-After as an HTTP date is honoured", async () => {
  const when = new Date(Date.now() + 20000).toUTCString();
  const p = page((r, n) => n === 0 ? {status: 503, headers: {"Retry-After": when}} : acceptAll(r));
  p.ps.track("view", {item_id: "sku-1"});
  await p.ps.flush();
  p.clock.now += 15000;
  assert.equal(await p.ps.flush(), 0);
  p.clock.now += 10000;
  assert.equal(await p.ps.flush(), 1);
});

test("503 and network errors back off exponentially with jitter, capped", async () => {
  let failing = true;
  const p = page((r) => {
    if (!failing) return acceptAll(r);
    if (p.requests.length % 2) return {status: 503};
    throw new TypeError("Failed to fetch");
  }, {baseBackoffMs: 1000, maxBackoffMs: 8000, maxAttempts: 100});
  p.ps.track("view", {item_id: "sku-1"});
  const ceilings = [1000, 2000, 4000, 8000, 8000, 8000];
  for (const ceiling of ceilings) {
    const before = p.requests.length;
    await p.ps.flush();
    assert.equal(p.requests.length, before + 1);
    p.clock.now += ceiling / 2 - 1;  // the jitter never goes under half the ceiling
    await p.ps.flush();
    assert.equal(p.requests.length, before + 1, `retried before ${ceiling / 2} ms`);
    p.clock.now += ceiling / 2 + 2;  // nor over the ceiling
  }
  failing = false;
  assert.equal(await p.ps.flush(), 1);
});

test("an event that keeps failing is dropped after maxAttempts, counted", async () => {
  const p = page(() => { throw new TypeError("Failed to fetch"); }, {maxAttempts: 3});
  p.ps.track("view", {item_id: "sku-1"});
  for (let i = 0; i < 5; i++) {
    await p.ps.flush();
    p.clock.now += 120000;
  }
  assert.equal(p.requests.length, 3);
  assert.equal(p.ps.stats().droppedExpired, 1);
  assert.equal(p.ps.stats().queued, 0);
});

test("429 does not use up attempts", async () => {
  const p = page(() => ({status: 429, headers: {"Retry-After": "1"}}), {maxAttempts: 2});
  p.ps.track("view", {item_id: "sku-1"});
  for (let i = 0; i < 6; i++) {
    await p.ps.flush();
    p.clock.now += 120000;
  }
  assert.equal(p.requests.length, 6);
  assert.equal(p.ps.stats().queued, 1);
  assert.equal(p.ps.stats().droppedExpired, 0);
});

test("the queue is bounded: the oldest events are dropped first and counted", async () => {
  const p = page(acceptAll, {maxQueue: 10, maxBatch: 100});
  const tracked = [];
  for (let i = 0; i < 25; i++) tracked.push(p.ps.track("view", {item_id: "sku-" + i}));
  assert.equal(p.ps.stats().queued, 10);
  assert.equal(p.ps.stats().droppedOverflow, 15);
  assert.equal(await p.ps.flush(), 10);
  assert.deepEqual(ids(p.requests[0]), tracked.slice(15));
});

test("the queue stays bounded while the collector is down", async () => {
  const p = page(() => ({status: 503}), {maxQueue: 20, maxBatch: 5});
  for (let i = 0; i < 100; i++) {
    p.ps.track("view", {item_id: "sku-" + i});
    await p.ps.flush();
  }
  assert.ok(p.ps.stats().queued <= 20);
  assert.equal(p.ps.stats().droppedOverflow + p.ps.stats().queued + p.ps.stats().droppedExpired, 100);
});

test("413 halves the batch; a single event answered 413 is dropped", async () => {
  const p = page((r) => r.envelope.events.length > 4 ? {status: 413} : acceptAll(r), {maxBatch: 10});
  for (let i = 0; i < 10; i++) p.ps.track("view", {item_id: "sku-" + i});
  assert.equal(await p.ps.flush(), 10);
  assert.deepEqual(p.requests.map((r) => r.envelope.events.length), [10, 5, 2, 2, 2, 2, 2]);
  const q = page(() => ({status: 413}));
  q.ps.track("view", {item_id: "sku-1"});
  assert.equal(await q.ps.flush(), 0);
  assert.equal(await q.ps.flush(), 0);
  assert.equal(q.requests.length, 1);
  assert.equal(q.ps.stats().droppedOversize, 1);
});

test("an over-long query is truncated to MAX_QUERY_CHARS code points before sending", async () => {
  const p = page(acceptAll);
  const max = p.ps.MAX_QUERY_CHARS;
  p.ps.track("search", {query: "x".repeat(600)});
  p.ps.track("search", {query: "😀".repeat(600)});
  p.ps.track("search", {query: "gel pens"});
  await p.ps.flush();
  const queries = p.requests[0].envelope.events.map((e) => e.query);
  assert.equal(queries[0], "x".repeat(max));
  assert.equal(Array.from(queries[1]).length, max);
  assert.equal(queries[1], "😀".repeat(max), "no surrogate pair is cut in half");
  assert.equal(queries[2], "gel pens");
  assert.equal(p.ps.stats().truncatedQueries, 2);
});

test("every body carries the device's send time; retries carry the time of the retry", async () => {
  const p = page((r, n) => n === 0 ? {status: 503} : acceptAll(r));
  p.ps.track("view", {item_id: "sku-1"});
  const before = Date.now();
  await p.ps.flush();
  p.clock.now += 120000;
  await new Promise((resolve) => setTimeout(resolve, 5));
  await p.ps.flush();
  const [first, second] = p.requests.map((r) => r.envelope.sent_at_ms);
  assert.ok(first >= before && second > first);
  assert.ok(p.requests[1].envelope.events[0].ts_ms <= first);
});

test("on page hide, beacons carry the rest in bodies under 64 KiB; a refused beacon keeps its events", async () => {
  const p = page(acceptAll, {maxBatch: 100});
  for (let i = 0; i < 60; i++) p.ps.track("view", {item_id: "sku-" + i, context: bigContext});
  p.hide();
  assert.equal(p.requests.length, 0);
  assert.ok(p.beacons.length >= 2);
  for (const b of p.beacons) {
    assert.ok(b.size <= 64000, `a beacon of ${b.size} bytes`);
    assert.equal(b.type, "text/plain");
    const envelope = JSON.parse(await b.text());
    assert.equal(typeof envelope.sent_at_ms, "number");
  }
  assert.equal(p.ps.stats().beaconed, 60);
  assert.equal(p.ps.stats().queued, 0);

  const q = page(acceptAll);
  q.sandbox.navigator.beaconResult = false;
  for (let i = 0; i < 5; i++) q.ps.track("view", {item_id: "sku-" + i});
  q.hide();
  assert.equal(q.beacons.length, 1, "no second beacon once the browser refused one");
  assert.equal(q.ps.stats().queued, 5);
  assert.equal(await q.ps.flush(), 5, "kept for the next flush");
});
