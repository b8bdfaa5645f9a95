/*
 * profilestream browser snippet: batches v1 events and sends them to the collector.
 * Plain JavaScript, no build step:
 *
 *   <script src="/static/profilestream.js"></script>
 *   <script>
 *     ProfileStream.init({endpoint: "/v1/events", userId: "u42", flushIntervalMs: 2000, maxBatch: 50});
 *     ProfileStream.track("view", {item_id: "sku-9"});
 *   </script>
 *
 * Wire shape: each request body is the envelope {"sent_at_ms": <this device's clock now>,
 * "events": [...]} with Content-Type text/plain, so that a cross-origin request stays a simple
 * request without a CORS preflight. The collector corrects each event's time by this device's
 * clock error (receive time minus (sent_at_ms minus ts_ms)); sendBeacon cannot set headers, so
 * the send time travels in the body.
 *
 * Delivery rules (see stream/ingest/README.md, "Browser snippet"):
 * - While the page is visible, batches go out one at a time with fetch(..., {keepalive: true});
 *   when the page is hidden, what is left goes out with navigator.sendBeacon. Browsers refuse a
 *   keepalive or beacon body over 64 KiB (and count every such request still in flight against
 *   the same 64 KiB), so a body is never over `maxBodyBytes` (default 64,000 bytes of UTF-8) and
 *   fetches are not sent in parallel. An event that alone does not fit is dropped and counted.
 * - 202 with {"accepted", "rejected": [{"index", "field", "reason"}]}: only the rejected events
 *   are dropped. 422 {"errors": [{"index", ...}]}: the listed events are dropped and the others
 *   sent again. 413: the batch is halved (a single event is dropped).
 * - 429, 503 (and 408, 500, 502, 504, network errors): the batch goes back to the front of the
 *   queue and sending pauses, for Retry-After when the answer has one, else exponential back-off
 *   with jitter, capped at `maxBackoffMs`. An event that failed `maxAttempts` times for other
 *   reasons than 429 is dropped and counted (a body a browser always refuses cannot loop).
 * - The queue holds at most `maxQueue` events; beyond, the oldest are dropped and counted.
 * - A search query longer than MAX_QUERY_CHARS code points is stripped of surrounding whitespace
 *   and cut to MAX_QUERY_CHARS before it is sent: truncate_query of stream/core/events.py, the
 *   policy of the schema and the Python SDK.
 * ProfileStream.stats() returns the counters (and "clamped" / "collectorTruncated": what the
 * collector reported it had to repair).
 */
(function (root) {
  "use strict";

  // Mirrors MAX_QUERY_CHARS in stream/core/events.py (a unit test checks they agree).
  var MAX_QUERY_CHARS = 512;
  // Browsers refuse keepalive/beacon bodies over 65,536 bytes; stay a little under.
  var KEEPALIVE_LIMIT_BYTES = 65536;
  var DEFAULTS = {
    flushIntervalMs: 2000,
    maxBatch: 50,
    maxBodyBytes: 64000,
    maxQueue: 1000,
    baseBackoffMs: 1000,
    maxBackoffMs: 60000,
    maxRetryAfterMs: 300000,
    maxAttempts: 10
  };
  // Answers after which the same batch may succeed later.
  var RETRYABLE = {408: true, 429: true, 500: true, 502: true, 503: true, 504: true};

  var config = null;
  var queue = [];        // entries {json, bytes, attempts}, oldest first
  var timer = null;
  var counter = 0;
  var draining = null;   // the promise of the send loop in progress
  var failures = 0;      // consecutive failed sends, for the back-off
  var resumeAt = 0;      // monotonic ms before which nothing is sent with fetch
  var batchCap = 0;      // learned from 413 answers
  var listening = false;
  var stats = newStats();

  function newStats() {
    return {
      tracked: 0, accepted: 0, rejected: 0, beaconed: 0, retried: 0, truncatedQueries: 0,
      droppedOversize: 0, droppedOverflow: 0, droppedExpired: 0, clamped: 0, collectorTruncated: 0
    };
  }

  function monotonicMs() {
    var perf = root.performance;
    return perf && typeof perf.now === "function" ? perf.now() : Date.now();
  }

  function warn(message) {
    if (root.console && typeof root.console.warn === "function") {
      root.console.warn("profilestream: " + message);
    }
  }

  function newEventId() {
    var c = root.crypto;
    if (c && typeof c.randomUUID === "function") {
      return c.randomUUID();
    }
    counter += 1;
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2) + "-" + counter;
  }

  // Bytes of `text` once UTF-8 encoded (what the browser counts against its 64 KiB limit).
  function utf8Length(text) {
    var bytes = 0;
    for (var i = 0; i < text.length; i++) {
      var code = text.charCodeAt(i);
      if (code < 0x80) {
        bytes += 1;
      } else if (code < 0x800) {
        bytes += 2;
      } else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length &&
                 text.charCodeAt(i + 1) >= 0xdc00 && text.charCodeAt(i + 1) <= 0xdfff) {
        bytes += 4;
        i += 1;
      } else {
        bytes += 3;  // a lone surrogate is encoded as U+FFFD, also 3 bytes
      }
    }
    return bytes;
  }

  // Python's str.strip() set (str.isspace), which differs from String.prototype.trim's.
  var PY_SPACE = "[\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+";
  var PY_STRIP = new RegExp("^" + PY_SPACE + "|" + PY_SPACE + "$", "g");

  // The over-long query policy of stream/core/events.py's truncate_query: a query of more than
  // MAX_QUERY_CHARS code points (Python's len(), not UTF-16 units) is stripped of surrounding
  // whitespace and cut to its first MAX_QUERY_CHARS code points; a shorter one is left as it is.
  function truncateQuery(text) {
    if (text.length <= MAX_QUERY_CHARS) {
      return text;
    }
    var points = Array.from(text);
    if (points.length <= MAX_QUERY_CHARS) {
      return text;
    }
    return Array.from(text.replace(PY_STRIP, "")).slice(0, MAX_QUERY_CHARS).join("");
  }

  function option(options, name) {
    var value = options[name];
    return typeof value === "number" && value > 0 ? value : DEFAULTS[name];
  }

  function init(options) {
    if (!options || !options.endpoint || !options.userId) {
      throw new Error("ProfileStream.init needs {endpoint, userId}");
    }
    config = {
      endpoint: options.endpoint,
      userId: String(options.userId),
      sessionId: options.sessionId || null,
      flushIntervalMs: option(options, "flushIntervalMs"),
      maxBatch: option(options, "maxBatch"),
      maxBodyBytes: Math.min(option(options, "maxBodyBytes"), KEEPALIVE_LIMIT_BYTES),
      maxQueue: option(options, "maxQueue"),
      baseBackoffMs: option(options, "baseBackoffMs"),
      maxBackoffMs: option(options, "maxBackoffMs"),
      maxRetryAfterMs: option(options, "maxRetryAfterMs"),
      maxAttempts: option(options, "maxAttempts")
    };
    batchCap = config.maxBatch;
    failures = 0;
    resumeAt = 0;
    if (timer !== null) {
      clearInterval(timer);
    }
    timer = setInterval(flush, config.flushIntervalMs);
    if (listening) {
      return;
    }
    listening = true;
    var doc = root.document;
    if (doc && typeof doc.addEventListener === "function") {
      doc.addEventListener("visibilitychange", function () {
        if (doc.visibilityState === "hidden") {
          flushWithBeacon();
        }
      });
    }
    if (typeof root.addEventListener === "function") {
      root.addEventListener("pagehide", flushWithBeacon);
    }
  }

  function track(type, fields) {
    if (config === null) {
      throw new Error("call ProfileStream.init first");
    }
    var event = {v: 1, event_id: newEventId(), user_id: config.userId, type: type, ts_ms: Date.now()};
    if (config.sessionId) {
      event.session_id = config.sessionId;
    }
    var extra = fields || {};
    for (var name in extra) {
      if (Object.prototype.hasOwnProperty.call(extra, name)) {
        event[name] = extra[name];
      }
    }
    if (typeof event.query === "string") {
      var query = truncateQuery(event.query);
      if (query !== event.query) {
        event.query = query;
        stats.truncatedQueries += 1;
      }
    }
    var json = JSON.stringify(event);
    queue.push({json: json, bytes: utf8Length(json), attempts: 0});
    stats.tracked += 1;
    boundQueue();
    if (queue.length >= config.maxBatch) {
      flush();
    }
    return event.event_id;
  }

  function boundQueue() {
    var over = queue.length - config.maxQueue;
    if (over > 0) {
      queue.splice(0, over);  // the oldest first
      stats.droppedOverflow += over;
      warn("queue full: dropped the " + over + " oldest event(s)");
    }
  }

  function requeue(entries) {
    if (entries.length > 0) {
      queue = entries.concat(queue);
      boundQueue();
    }
  }

  // Takes the next batch from the queue: at most batchCap events whose envelope is at most
  // maxBodyBytes. Events too large to fit alone are dropped here, once, and counted.
  function takeBatch(sentAtMs) {
    var head = '{"sent_at_ms":' + sentAtMs + ',"events":[';
    var overhead = head.length + 2;  // ASCII only
    var size = overhead;
    var entries = [];
    while (queue.length > 0 && entries.length < batchCap) {
      var entry = queue[0];
      if (overhead + entry.bytes > config.maxBodyBytes) {
        queue.shift();
        stats.droppedOversize += 1;
        warn("dropped an event of " + entry.bytes + " bytes: over the body limit of " +
             config.maxBodyBytes + " bytes");
        continue;
      }
      var added = entry.bytes + (entries.length > 0 ? 1 : 0);
      if (size + added > config.maxBodyBytes) {
        break;
      }
      queue.shift();
      size += added;
      entries.push(entry);
    }
    var parts = [];
    for (var i = 0; i < entries.length; i++) {
      parts.push(entries[i].json);
    }
    return {entries: entries, body: head + parts.join(",") + "]}"};
  }

  // Resolves to the number of events the collector accepted (0 when nothing was sent).
  function flush() {
    if (config === null) {
      return Promise.resolve(0);
    }
    if (draining === null) {
      draining = drain().then(function (accepted) {
        draining = null;
        return accepted;
      }, function (err) {
        draining = null;
        throw err;
      });
    }
    return draining;
  }

  // Sends batch after batch, one at a time, until the queue is empty or a back-off starts.
  function drain() {
    var total = 0;
    function step() {
      if (queue.length === 0 || monotonicMs() < resumeAt) {
        return Promise.resolve(total);
      }
      var batch = takeBatch(Date.now());
      if (batch.entries.length === 0) {
        return step();  // only oversized events were at the head; they are gone now
      }
      return send(batch).then(function (accepted) {
        total += accepted;
        return step();
      });
    }
    return step();
  }

  function send(batch) {
    var request;
    try {
      request = root.fetch(config.endpoint, {
        method: "POST",
        headers: {"Content-Type": "text/plain"},
        body: batch.body,
        keepalive: true
      });
    } catch (err) {
      request = Promise.reject(err);
    }
    return request.then(function (response) {
      return readJson(response).then(function (doc) {
        return handleAnswer(batch.entries, response, doc);
      });
    }, function () {
      failed(batch.entries, 0, true);
      return 0;
    });
  }

  function readJson(response) {
    if (typeof response.json !== "function") {
      return Promise.resolve(null);
    }
    return response.json().then(null, function () { return null; });
  }

  // The in-range indices named by `problems` (a list of {index, field, reason}).
  function namedIndices(problems, count) {
    var found = {};
    if (Object.prototype.toString.call(problems) !== "[object Array]") {
      return found;
    }
    for (var i = 0; i < problems.length; i++) {
      var problem = problems[i];
      if (problem && typeof problem.index === "number" && problem.index >= 0 && problem.index < count &&
          Math.floor(problem.index) === problem.index && !found[problem.index]) {
        found[problem.index] = problem;
      }
    }
    return found;
  }

  function dropNamed(entries, named) {
    var kept = [];
    for (var i = 0; i < entries.length; i++) {
      var problem = named[i];
      if (problem) {
        stats.rejected += 1;
        warn("collector rejected an event: " + problem.field + ": " + problem.reason);
      } else {
        kept.push(entries[i]);
      }
    }
    return kept;
  }

  function handleAnswer(entries, response, doc) {
    var status = response.status;
    if (status >= 200 && status < 300) {
      failures = 0;
      var kept = dropNamed(entries, namedIndices(doc && doc.rejected, entries.length));
      var accepted = doc && typeof doc.accepted === "number" ? doc.accepted : kept.length;
      stats.accepted += accepted;
      // What the collector had to repair: event times it could not correct, queries it cut.
      stats.clamped += doc && typeof doc.clamped === "number" ? doc.clamped : 0;
      stats.collectorTruncated += doc && typeof doc.truncated === "number" ? doc.truncated : 0;
      return accepted;
    }
    if (status === 422) {
      var named = namedIndices(doc && doc.errors, entries.length);
      var rest = dropNamed(entries, named);
      if (rest.length === entries.length) {
        // No event named: the body as a whole was refused, and resending it cannot help.
        stats.rejected += entries.length;
        warn("collector refused a batch of " + entries.length + " events (422) without naming any");
      } else {
        requeue(rest);  // the valid ones go again, at once
      }
      return 0;
    }
    if (status === 413) {
      if (entries.length > 1) {
        batchCap = Math.max(1, Math.floor(entries.length / 2));
        requeue(entries);
      } else {
        stats.droppedOversize += entries.length;
        warn("collector refused an event as too large (413)");
      }
      return 0;
    }
    if (RETRYABLE[status]) {
      failed(entries, retryAfterMs(response), status !== 429);
      return 0;
    }
    stats.rejected += entries.length;
    warn("collector refused a batch of " + entries.length + " events with status " + status);
    return 0;
  }

  // Puts `entries` back and pauses sending; counts an attempt unless the server only asked to
  // slow down (429), so that an endless failure cannot keep an event forever.
  function failed(entries, retryAfter, countAttempt) {
    var kept = entries;
    if (countAttempt) {
      kept = [];
      for (var i = 0; i < entries.length; i++) {
        entries[i].attempts += 1;
        if (entries[i].attempts >= config.maxAttempts) {
          stats.droppedExpired += 1;
        } else {
          kept.push(entries[i]);
        }
      }
      if (kept.length < entries.length) {
        warn("dropped " + (entries.length - kept.length) + " event(s) after " + config.maxAttempts +
             " failed attempts");
      }
    }
    stats.retried += kept.length;
    requeue(kept);
    failures += 1;
    var ceiling = Math.min(config.maxBackoffMs, config.baseBackoffMs * Math.pow(2, failures - 1));
    // "Equal jitter": half fixed, half random, so that many pages do not retry in step.
    var delay = ceiling / 2 + Math.random() * ceiling / 2;
    resumeAt = monotonicMs() + Math.max(delay, Math.min(retryAfter, config.maxRetryAfterMs));
  }

  // Retry-After in ms (delta-seconds or an HTTP date), 0 when absent or unreadable (a cross-origin
  // answer shows it only when the collector lists it in Access-Control-Expose-Headers).
  function retryAfterMs(response) {
    var value = response.headers && typeof response.headers.get === "function" ?
      response.headers.get("Retry-After") : null;
    if (!value) {
      return 0;
    }
    if (/^\s*\d+\s*$/.test(value)) {
      return parseInt(value, 10) * 1000;
    }
    var date = Date.parse(value);
    return isNaN(date) ? 0 : Math.max(0, date - Date.now());
  }

  // The page is going away: hand what is left to sendBeacon, which outlives the page. Back-off is
  // ignored (there is no later), and nothing is known about the answers.
  function flushWithBeacon() {
    if (config === null) {
      return;
    }
    var nav = root.navigator;
    if (!nav || typeof nav.sendBeacon !== "function") {
      flush();
      return;
    }
    while (queue.length > 0) {
      var batch = takeBatch(Date.now());
      if (batch.entries.length === 0) {
        continue;
      }
      var data = typeof root.Blob === "function" ? new root.Blob([batch.body], {type: "text/plain"}) : batch.body;
      var queued = false;
      try {
        queued = nav.sendBeacon(config.endpoint, data);
      } catch (err) {
        queued = false;
      }
      if (!queued) {
        // The browser's keepalive quota is used up: keep the rest for the next flush, should the
        // page come back.
        requeue(batch.entries);
        return;
      }
      stats.beaconed += batch.entries.length;
    }
  }

  function getStats() {
    var copy = {queued: queue.length};
    for (var name in stats) {
      if (Object.prototype.hasOwnProperty.call(stats, name)) {
        copy[name] = stats[name];
      }
    }
    return copy;
  }

  root.ProfileStream = {
    init: init,
    track: track,
    flush: flush,
    stats: getStats,
    MAX_QUERY_CHARS: MAX_QUERY_CHARS,
    _flushWithBeacon: flushWithBeacon,
    _truncateQuery: truncateQuery
  };
})(typeof globalThis !== "undefined" ? globalThis : this);
