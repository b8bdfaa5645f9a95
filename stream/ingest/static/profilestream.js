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
 * Events are sent as a JSON array (the collector's batch shape) with Content-Type text/plain, so
 * that a cross-origin beacon stays a simple request without a CORS preflight. While the page is
 * visible, batches go out with fetch(..., {keepalive: true}); when the page is hidden, what is left
 * goes out with navigator.sendBeacon, which the browser delivers even as the page unloads.
 * A batch the collector answers 503 (Kafka busy) is put back and retried on the next flush.
 */
(function (root) {
  "use strict";

  var config = null;
  var queue = [];
  var timer = null;
  var counter = 0;

  function newEventId() {
    var c = root.crypto;
    if (c && typeof c.randomUUID === "function") {
      return c.randomUUID();
    }
    counter += 1;
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2) + "-" + counter;
  }

  function init(options) {
    if (!options || !options.endpoint || !options.userId) {
      throw new Error("ProfileStream.init needs {endpoint, userId}");
    }
    config = {
      endpoint: options.endpoint,
      userId: String(options.userId),
      sessionId: options.sessionId || null,
      flushIntervalMs: options.flushIntervalMs || 2000,
      maxBatch: options.maxBatch || 50
    };
    if (timer !== null) {
      clearInterval(timer);
    }
    timer = setInterval(flush, config.flushIntervalMs);
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
    queue.push(event);
    if (queue.length >= config.maxBatch) {
      flush();
    }
    return event.event_id;
  }

  function takeBatch() {
    return queue.splice(0, config.maxBatch);
  }

  // Resolves to the number of events the collector accepted (0 when nothing was pending).
  function flush() {
    if (config === null || queue.length === 0) {
      return Promise.resolve(0);
    }
    var sends = [];
    while (queue.length > 0) {
      sends.push(sendWithFetch(takeBatch()));
    }
    return Promise.all(sends).then(function (counts) {
      return counts.reduce(function (a, b) { return a + b; }, 0);
    });
  }

  function sendWithFetch(batch) {
    return root.fetch(config.endpoint, {
      method: "POST",
      headers: {"Content-Type": "text/plain"},
      body: JSON.stringify(batch),
      keepalive: true
    }).then(function (response) {
      if (response.status === 202) {
        return batch.length;
      }
      if (response.status === 503) {
        queue = batch.concat(queue);  // Kafka busy: retry with the same event ids later
      } else if (root.console) {
        root.console.warn("profilestream: collector rejected a batch with status " + response.status);
      }
      return 0;
    }, function () {
      queue = batch.concat(queue);  // network error: retry later
      return 0;
    });
  }

  function flushWithBeacon() {
    if (config === null) {
      return;
    }
    var nav = root.navigator;
    while (queue.length > 0) {
      var batch = takeBatch();
      var body = JSON.stringify(batch);
      var sent = false;
      if (nav && typeof nav.sendBeacon === "function") {
        var data = typeof root.Blob === "function" ? new root.Blob([body], {type: "text/plain"}) : body;
        sent = nav.sendBeacon(config.endpoint, data);
      }
      if (!sent) {
        sendWithFetch(batch);
      }
    }
  }

  root.ProfileStream = {init: init, track: track, flush: flush, _flushWithBeacon: flushWithBeacon};
})(typeof globalThis !== "undefined" ? globalThis : this);
