// profilestream console: plain JS, no dependencies. Every value from the server is written with
// textContent, never parsed as HTML: user ids, queries and reasons are arbitrary text.
"use strict";

(function () {
  const POLL_MS = 2000;
  const POINTS = 90; // three minutes of history at one poll every 2 s
  const $ = (id) => document.getElementById(id);

  // Any id the event schema accepts, "/" and ".." included, as one path segment (stream/serving/README.md).
  function userPath(id) {
    return encodeURIComponent(id).replace(/\./g, "%2E");
  }

  function ms(value) {
    if (value === null || value === undefined) return "-";
    const a = Math.abs(value);
    if (a < 1000) return `${Math.round(value)} ms`;
    if (a < 60000) return `${(value / 1000).toFixed(1)} s`;
    if (a < 3600000) return `${(value / 60000).toFixed(1)} min`;
    if (a < 86400000) return `${(value / 3600000).toFixed(1)} h`;
    return `${(value / 86400000).toFixed(1)} d`;
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function setStatus(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  async function getJson(url) {
    const response = await fetch(url, {headers: {Accept: "application/json"}});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      throw new Error(`${response.status}: ${detail || response.statusText}`);
    }
    return body;
  }

  // --- profile --------------------------------------------------------------------------------

  // The item id, and its catalogue title beside it once the lookups server has the item index.
  function itemCell(itemId, title) {
    const cell = el("td");
    cell.dataset.itemId = itemId;
    cell.append(el("span", itemId));
    if (title) cell.append(el("span", ` ${title}`, "muted"));
    return cell;
  }

  function renderProfile(p) {
    $("profile-user").textContent = p.user_id;
    $("source").textContent = p.source === "profile"
      ? "stored profile"
      : (p.forgotten_ts_ms !== null ? "forgotten (nothing stored since)" : "no stored profile (unknown user)");
    $("freshness").textContent = p.freshness_ms === null ? "-" : ms(p.freshness_ms);
    $("written").textContent = p.written_ago_ms === null ? "-" : `${ms(p.written_ago_ms)} ago`;
    $("model-version").textContent = p.model_version || "-";

    const topk = $("topk").tBodies[0];
    topk.replaceChildren();
    p.items.forEach((item, i) => {
      const row = el("tr");
      row.append(el("td", i + 1), itemCell(item.item_id, item.title), el("td", item.score.toFixed(4), "num"),
        el("td", item.reason));
      topk.append(row);
    });
    if (!p.items.length) {
      const row = el("tr");
      const cell = el("td", "nothing stored for this user", "muted");
      cell.colSpan = 4;
      row.append(cell);
      topk.append(row);
    }

    const win = $("window").tBodies[0];
    win.replaceChildren();
    const top = Math.max(0, ...p.window.map((e) => e.weight));
    p.window.slice().reverse().forEach((e) => {
      const row = el("tr");
      row.dataset.type = e.type;
      const bar = el("div", null, "bar");
      bar.style.width = `${top > 0 ? Math.max(2, (100 * e.weight) / top) : 0}%`;
      const barCell = el("td");
      barCell.style.width = "25%";
      barCell.append(bar);
      const age = el("td", ms(e.age_ms));
      age.title = new Date(e.ts_ms).toISOString();
      const what = e.item_id !== null ? itemCell(e.item_id, e.title) : el("td", e.query !== null ? `"${e.query}"` : "");
      row.append(age, el("td", e.type), what,
        el("td", e.weight.toFixed(3), "num"), barCell);
      win.append(row);
    });
  }

  async function lookUp(userId) {
    setStatus(`looking up ${userId}...`);
    try {
      const profile = await getJson(`/v1/users/${userPath(userId)}/profile`);
      renderProfile(profile);
      setStatus(`${userId}: ${profile.items.length} recommendations, ${profile.window.length} events`);
      document.body.dataset.user = userId;
      const params = new URLSearchParams(location.search);
      params.set("user", userId);
      history.replaceState(null, "", `?${params}`);
      if ($("search-input").value.trim()) await search();
    } catch (err) {
      setStatus(`lookup failed: ${err.message}`, true);
    }
  }

  // --- search ---------------------------------------------------------------------------------

  function renderHits(list, result) {
    list.replaceChildren();
    for (const hit of result.items) {
      const li = el("li");
      li.append(el("span", hit.title ? `${hit.title} ` : `${hit.item_id} `), el("span", hit.score.toFixed(3), "score"));
      li.title = hit.item_id;
      li.dataset.itemId = hit.item_id;
      if (hit.reason) li.append(el("span", hit.reason, "reason"));
      list.append(li);
    }
  }

  async function search() {
    const q = $("search-input").value.trim();
    if (!q) return;
    const user = document.body.dataset.user || $("user-input").value.trim();
    const base = `/v1/search?q=${encodeURIComponent(q)}&k=10`;
    try {
      const [personal, plain] = await Promise.all([
        user ? getJson(`${base}&user_id=${encodeURIComponent(user)}`) : Promise.resolve(null),
        getJson(base),
      ]);
      renderHits($("search-query"), plain);
      if (personal) {
        renderHits($("search-personal"), personal);
        $("search-why").textContent = `${personal.personalised ? "personalised" : "not personalised"}: ${personal.why}` +
          (personal.personalised ? ` (blend weight ${personal.blend_weight})` : "");
      } else {
        $("search-personal").replaceChildren(el("li", "look up a user first", "muted"));
        $("search-why").textContent = "";
      }
    } catch (err) {
      $("search-why").textContent = `search failed: ${err.message}`;
    }
  }

  // --- live charts ----------------------------------------------------------------------------

  const history_ = {throughput: [], lag: [], freshness: [], lookups: []};
  let previous = null;

  function rate(now, before, key, group) {
    const a = now[group][key];
    const b = before[group][key];
    const dt = (now.ts_ms - before.ts_ms) / 1000;
    if (a === null || b === null || dt <= 0 || a < b) return null; // a restart resets counters
    return (a - b) / dt;
  }

  function push(series, value) {
    series.push(value);
    if (series.length > POINTS) series.shift();
  }

  function draw(id, series, format) {
    const svg = $(id);
    const width = svg.clientWidth || 300;
    const height = svg.clientHeight || 120;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.replaceChildren();
    const known = series.filter((v) => v !== null);
    const max = Math.max(1e-9, ...known) * 1.1;
    const ns = "http://www.w3.org/2000/svg";
    const pad = 14;
    const base = document.createElementNS(ns, "line");
    for (const [k, v] of Object.entries({x1: 0, x2: width, y1: height - pad, y2: height - pad})) base.setAttribute(k, v);
    svg.append(base);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 4);
    label.setAttribute("y", 11);
    label.textContent = known.length ? `max ${format(max / 1.1)}` : "no data";
    svg.append(label);
    // One polyline per run of known values: a gap (worker down, lag unknown) stays a gap.
    let points = [];
    const flush = () => {
      if (points.length) {
        const line = document.createElementNS(ns, "polyline");
        line.setAttribute("points", points.join(" "));
        svg.append(line);
      }
      points = [];
    };
    // The x axis spans what has been collected (at least 10 polls), newest at the right edge.
    const span = Math.max(series.length, 10) - 1;
    const offset = span + 1 - series.length;
    series.forEach((v, i) => {
      if (v === null) return flush();
      const x = (width * (i + offset)) / span;
      const y = height - pad - ((height - pad - 16) * v) / max;
      points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    });
    flush();
  }

  async function poll() {
    let now;
    try {
      now = await getJson("/v1/console/metrics");
    } catch (err) {
      $("live-sources").textContent = `metrics unavailable: ${err.message}`;
      return;
    }
    const sources = now.worker.sources;
    const down = sources.filter((s) => !s.up);
    $("live-sources").textContent = `${now.worker.up}/${sources.length} workers answering` +
      (down.length ? ` (${down[0].url}: ${down[0].error})` : "");
    if (previous) {
      push(history_.throughput, rate(now, previous, "events_total", "worker"));
      push(history_.lookups, rate(now, previous, "requests_total", "lookups"));
      const n = rate(now, previous, "freshness_ms_count", "worker");
      const s = rate(now, previous, "freshness_ms_sum", "worker");
      push(history_.freshness, n && s !== null ? s / n : null);
    }
    push(history_.lag, now.worker.consumer_lag);
    previous = now;
    const last = (series) => (series.length ? series[series.length - 1] : null);
    const show = (id, value, format) => { $(id).textContent = value === null ? "" : format(value); };
    show("now-throughput", last(history_.throughput), (v) => v.toFixed(1));
    show("now-lag", last(history_.lag), (v) => String(Math.round(v)));
    show("now-freshness", last(history_.freshness), ms);
    show("now-lookups", last(history_.lookups), (v) => v.toFixed(1));
    draw("chart-throughput", history_.throughput, (v) => v.toFixed(1));
    draw("chart-lag", history_.lag, (v) => String(Math.round(v)));
    draw("chart-freshness", history_.freshness, ms);
    draw("chart-lookups", history_.lookups, (v) => v.toFixed(1));
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  }

  // --- wiring ---------------------------------------------------------------------------------

  $("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("user-input").value.trim();
    if (id) lookUp(id);
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  const params = new URLSearchParams(location.search);
  if (params.get("q")) $("search-input").value = params.get("q");
  if (params.get("user")) {
    $("user-input").value = params.get("user");
    lookUp(params.get("user"));
  }
  poll();
  setInterval(poll, POLL_MS);
})();
