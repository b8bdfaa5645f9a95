// Runs stream/ingest/static/profilestream.js in Node 20 against the real collector: the field
// cases' harness (shared/field-cases/snippet-harness.js), run by tests/integration/test_snippet.py.
// MODE=longquery | clockahead | keepalive
const fs = require("fs"); const vm = require("vm");
const [snippetPath, endpoint, mode] = process.argv.slice(2);
globalThis.document = {visibilityState: "visible", addEventListener() {}};
Object.defineProperty(globalThis, "navigator", {configurable: true, value: {sendBeacon() { return false; }}});
const realFetch = globalThis.fetch;
let networkErrors = 0;
if (mode === "keepalive") {
  // Browsers (Fetch spec, HTTP-network-or-cache fetch step): a keepalive request whose body is
  // over 64 KiB is a network error. Node's fetch does not enforce it, so the stub does.
  globalThis.fetch = (url, init) => {
    if (init && init.keepalive && Buffer.byteLength(init.body) > 65536) {
      networkErrors++; return Promise.reject(new TypeError("Failed to fetch (keepalive body over 64 KiB)"));
    }
    return realFetch(url, init);
  };
}
if (mode === "clockahead") {
  const skew = 25 * 3600 * 1000;   // device clock 25 h fast
  const realNow = Date.now; Date.now = () => realNow() + skew;
}
vm.runInThisContext(fs.readFileSync(snippetPath, "utf8"), {filename: snippetPath});
(async () => {
  ProfileStream.init({endpoint, userId: "fake-js-" + mode, flushIntervalMs: 3600000, maxBatch: 50});
  let tracked = 0, accepted = 0;
  if (mode === "longquery") {
    for (let i = 0; i < 19; i++) { ProfileStream.track("view", {item_id: "sku-000" + (10 + i)}); tracked++; }
    ProfileStream.track("search", {query: "x".repeat(600)}); tracked++;
    accepted += await ProfileStream.flush();
  } else if (mode === "clockahead") {
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 5; i++) { ProfileStream.track("view", {item_id: "sku-0002" + i}); tracked++; }
      accepted += await ProfileStream.flush();
    }
  } else if (mode === "keepalive") {
    // realistic context: page URL with UTM parameters, referrer, user agent (about 1.4 KB per event)
    const ctx = {page_url: "https://shop.example/p/sku-00031?utm_source=newsletter&utm_medium=email&utm_campaign=" + "spring-sale-".repeat(40),
      referrer: "https://www.search.example/search?q=" + "ergonomic+desk+lamp+".repeat(20),
      user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"};
    for (let i = 0; i < 60; i++) { ProfileStream.track("view", {item_id: "sku-000" + (30 + (i % 60)), context: ctx}); tracked++; }
    for (let round = 0; round < 5; round++) { accepted += await ProfileStream.flush(); }
  }
  // Added to the field cases' copy: the snippet's counters (what the collector had to repair).
  const stats = typeof ProfileStream.stats === "function" ? ProfileStream.stats() : null;
  console.log(JSON.stringify({mode, tracked, accepted, networkErrors, stats}));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
