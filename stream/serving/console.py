"""The live console at ``/console`` on `serve-lookups`: one user's profile, search, and live charts.

The page (``stream/serving/console/``: plain HTML, CSS and JS, served from this package, no CDN
and no build step) reads three JSON endpoints:

- ``GET /v1/users/{user_id}/profile``: what Redis holds about the user (the stored top-K with
  scores and reasons, model version, freshness, and the recent events with their type weights
  and ages), see `profile_view`;
- ``GET /v1/search`` twice, with and without ``user_id``: personalised and query-only side by side;
- ``GET /v1/console/metrics``: a few series of the lookups server's own registry and of the
  workers' ``/metrics`` (PROFILESTREAM_CONSOLE_WORKER_METRICS_URLS), summed over workers; the
  page turns counters into rates between polls.

Worker URLs come from the settings only, never from the request: the console cannot be used to
make the server fetch arbitrary addresses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import AfterValidator

from stream.core.records import Recommendation
from stream.core.settings import Settings
from stream.core.window import Window, WindowConfig, WindowEvent, event_weights
from stream.redis.reco_store import FORGOTTEN_KIND
from stream.serving.lookups import UNREADABLE_FORGET_CUT_MS, RecoClient, StoredProfile
from stream.serving.search import (
    ActivityEntry,
    UserSignals,
    check_user_id,
    parse_activity,
)
from stream.serving.urls import require_utf8_url

log = logging.getLogger(__name__)

CONSOLE_DIR = Path(__file__).parent / "console"
# Worker bind addresses that mean "every interface": the console reaches those over loopback.
_ANY_HOST = {"", "0.0.0.0", "::", "[::]"}


# --- a user's profile -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One recent event as the window weighs it: type weight halved per half-life before the newest."""

    event_id: str
    type: str
    ts_ms: int
    age_ms: int
    weight: float
    item_id: str | None = None
    query: str | None = None


@dataclass(frozen=True, slots=True)
class ProfileView:
    user_id: str
    # "profile": recommendations stored for the user; "none": nothing stored (unknown, forgotten
    # or expired); the page then says so instead of showing the popular fallback as theirs.
    source: str
    items: tuple[Recommendation, ...] = ()
    model_version: str | None = None
    window_newest_ts_ms: int | None = None
    computed_at_ms: int | None = None
    forgotten_ts_ms: int | None = None
    window: tuple[WindowRow, ...] = ()
    now_ms: int = 0
    # Catalogue titles of the items shown (known once search has loaded the item index).
    titles: Mapping[str, str] = field(default_factory=dict)
    # The stored entries that could not be read and were left out (corrupt, another format or
    # Redis type); None when everything could.
    why: str | None = None

    @property
    def freshness_ms(self) -> int | None:
        """Newest event time of the window to the Redis write of its recommendations."""
        if self.computed_at_ms is None or self.window_newest_ts_ms is None:
            return None
        return self.computed_at_ms - self.window_newest_ts_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "source": self.source,
            "items": [
                {
                    "item_id": i.item_id,
                    "title": self.titles.get(i.item_id),
                    "score": i.score,
                    "reason": i.reason,
                }
                for i in self.items
            ],
            "model_version": self.model_version,
            "window_newest_ts_ms": self.window_newest_ts_ms,
            "computed_at_ms": self.computed_at_ms,
            "freshness_ms": self.freshness_ms,
            "written_ago_ms": None if self.computed_at_ms is None else self.now_ms - self.computed_at_ms,
            "forgotten_ts_ms": self.forgotten_ts_ms,
            "window": [
                {
                    "event_id": r.event_id,
                    "type": r.type,
                    "ts_ms": r.ts_ms,
                    "age_ms": r.age_ms,
                    "weight": r.weight,
                    "item_id": r.item_id,
                    "title": None if r.item_id is None else self.titles.get(r.item_id),
                    "query": r.query,
                }
                for r in self.window
            ],
            "now_ms": self.now_ms,
            "why": self.why,
        }


def profile_view(
    user_id: str,
    stored: StoredProfile,
    config: WindowConfig,
    now_ms: int,
    title: Callable[[str], str | None] = lambda _: None,
) -> ProfileView:
    """The console's view of what Redis holds (pure).

    The recent list is kept as received, so it is cleaned up the way the window is: events at or
    before a forget are left out (all of them when the tombstone is unreadable), a repeated event
    id counts once (the first seen), events older than the window's max age before the newest one
    are left out, and the rest is ordered by event time and weighed by `event_weights`, the
    window's own weighting.
    """
    documents: list[dict[str, Any]] = []
    for line in stored.recent_lines:
        try:
            parsed = json.loads(line)
        except ValueError:
            continue  # a stray line must not fail the page
        if isinstance(parsed, dict):
            documents.append(parsed)
    cut_ms = stored.forgotten_ts_ms
    if any(entry.kind == FORGOTTEN_KIND for entry in stored.unreadable):
        cut_ms = UNREADABLE_FORGET_CUT_MS
    signals = UserSignals(None, tuple(parse_activity(documents)), cut_ms)
    unique: dict[str, ActivityEntry] = {}
    for entry in signals.usable_activity():
        unique.setdefault(entry.event_id, entry)
    entries = sorted(unique.values(), key=lambda e: (e.ts_ms, e.event_id))
    if entries:
        oldest_allowed_ms = entries[-1].ts_ms - config.max_age_ms
        entries = [e for e in entries if e.ts_ms >= oldest_allowed_ms][-config.max_events :]
    window = Window(
        events=tuple(WindowEvent(e.event_id, e.type, e.ts_ms, e.item_id, e.query, e.ts_ms) for e in entries)
    )
    rows = tuple(
        WindowRow(
            event_id=e.event_id,
            type=e.type.value,
            ts_ms=e.ts_ms,
            age_ms=now_ms - e.ts_ms,
            weight=weight,
            item_id=e.item_id,
            query=e.query,
        )
        for e, weight in zip(entries, event_weights(window, config), strict=True)
    )
    doc = stored.reco
    items = () if doc is None else tuple(Recommendation(i.item_id, i.score, i.reason) for i in doc.items)
    shown = {r.item_id for r in rows if r.item_id is not None} | {i.item_id for i in items}
    titles = {item: name for item in sorted(shown) if (name := title(item))}
    if doc is None:
        return ProfileView(
            user_id,
            "none",
            forgotten_ts_ms=stored.forgotten_ts_ms,
            window=rows,
            now_ms=now_ms,
            titles=titles,
            why=stored.why,
        )
    return ProfileView(
        user_id=user_id,
        source="profile",
        items=items,
        titles=titles,
        model_version=doc.model_version,
        window_newest_ts_ms=doc.window_newest_ts_ms,
        computed_at_ms=doc.computed_at_ms,
        forgotten_ts_ms=stored.forgotten_ts_ms,
        window=rows,
        now_ms=now_ms,
        why=stored.why,
    )


# --- live metrics ------------------------------------------------------------------------------

# Sample names (as exposed, counters with `_total`) the charts use, and what the JSON calls them.
WORKER_SAMPLES = {
    "profilestream_events_total": "events_total",
    "profilestream_profiles_total": "profiles_total",
    "profilestream_dead_letters_total": "dead_letters_total",
    "profilestream_consumer_lag": "consumer_lag",
    "profilestream_freshness_ms_sum": "freshness_ms_sum",
    "profilestream_freshness_ms_count": "freshness_ms_count",
}
PARTITION_LAG_SAMPLE = "profilestream_partition_lag"
LOOKUPS_SAMPLES = {
    "profilestream_lookups_requests_total": "requests_total",
    "profilestream_lookups_request_seconds_sum": "request_seconds_sum",
    "profilestream_lookups_request_seconds_count": "request_seconds_count",
}


def samples(text: str) -> dict[str, list[tuple[Mapping[str, str], float]]]:
    """Every sample of a Prometheus text exposition by sample name; ValueError if it is not one."""
    found: dict[str, list[tuple[Mapping[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name].append((sample.labels, float(sample.value)))
    return found


def _sum(values: Iterable[float]) -> float | None:
    """The sum, or None (unknown) when there is none or any is NaN (a lag not read yet)."""
    total = 0.0
    seen = False
    for value in values:
        if math.isnan(value):
            return None
        total += value
        seen = True
    return total if seen else None


def pick(
    found: Mapping[str, Sequence[tuple[Mapping[str, str], float]]], names: Mapping[str, str]
) -> dict[str, float | None]:
    return {key: _sum(v for _, v in found.get(sample, ())) for sample, key in names.items()}


@dataclass(frozen=True, slots=True)
class Scrape:
    url: str
    text: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerTotals:
    """The chart series summed over the workers that answered (their partitions are disjoint)."""

    values: dict[str, float | None] = field(default_factory=dict)
    partition_lag: dict[str, float | None] = field(default_factory=dict)
    scrapes: tuple[Scrape, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        up = [s for s in self.scrapes if s.error is None]
        return {
            "sources": [{"url": s.url, "up": s.error is None, "error": s.error} for s in self.scrapes],
            "up": len(up),
            **(self.values if up else {key: None for key in WORKER_SAMPLES.values()}),
            "partition_lag": self.partition_lag,
        }


def worker_totals(scrapes: Sequence[Scrape]) -> WorkerTotals:
    """Sum the chart series over the workers that answered; a page that does not parse is an error."""
    checked: list[Scrape] = []
    parsed = []
    for scrape in scrapes:
        if scrape.text is None:
            checked.append(scrape)
            continue
        try:
            parsed.append(samples(scrape.text))
        except ValueError as exc:
            checked.append(Scrape(scrape.url, error=f"not a Prometheus exposition: {exc}"))
            continue
        checked.append(scrape)
    picked = [pick(found, WORKER_SAMPLES) for found in parsed]
    values: dict[str, float | None] = {}
    for key in WORKER_SAMPLES.values():
        parts = [one[key] for one in picked]
        # One worker's unknown value makes the total unknown, not smaller.
        values[key] = None if not parts or None in parts else sum(p for p in parts if p is not None)
    partition_lag: dict[str, float | None] = {}
    for found in parsed:
        for labels, value in found.get(PARTITION_LAG_SAMPLE, ()):
            partition_lag[labels.get("partition", "?")] = None if math.isnan(value) else value
    return WorkerTotals(values, dict(sorted(partition_lag.items())), tuple(checked))


def worker_metrics_urls(settings: Settings) -> list[str]:
    """PROFILESTREAM_CONSOLE_WORKER_METRICS_URLS, or the local worker's web port when unset."""
    urls = [u.strip() for u in settings.console_worker_metrics_urls.split(",") if u.strip()]
    if urls:
        return urls
    host = "127.0.0.1" if settings.worker_web_host in _ANY_HOST else settings.worker_web_host
    return [f"http://{host}:{settings.worker_web_port}/metrics"]


def _fetch(url: str, timeout_s: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # URLs from settings only
        return str(response.read().decode("utf-8"))


async def scrape(url: str, timeout_ms: int) -> Scrape:
    """One worker's /metrics text, or why there is none (never raises)."""
    try:
        text = await asyncio.wait_for(asyncio.to_thread(_fetch, url, timeout_ms / 1000), timeout_ms / 1000)
    except TimeoutError:
        return Scrape(
            url, error=f"no answer within {timeout_ms} ms (PROFILESTREAM_CONSOLE_SCRAPE_TIMEOUT_MS)"
        )
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return Scrape(
            url,
            error=(
                f"{exc}; is the worker running? Set PROFILESTREAM_CONSOLE_WORKER_METRICS_URLS to its /metrics"
            ),
        )
    return Scrape(url, text=text)


# --- the routes ---------------------------------------------------------------------------------


def install_console(
    app: FastAPI,
    settings: Settings,
    client: Callable[[], RecoClient],
    registry: CollectorRegistry,
    *,
    clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
) -> None:
    """Serve the page, its assets and its JSON endpoints on the lookups app."""
    config = WindowConfig.from_settings(settings)
    urls = worker_metrics_urls(settings)
    router = APIRouter()

    @router.get("/console", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(CONSOLE_DIR / "index.html", media_type="text/html; charset=utf-8")

    # {user_id:anypath} (registered by stream.serving.api): a line break in an id reaches the id
    # rule (a 422 naming user_id) instead of matching no route; the rule counts NFC characters.
    @router.get("/v1/users/{user_id:anypath}/profile", responses={503: {"description": "Redis unavailable."}})
    async def profile(
        request: Request,
        user_id: Annotated[str, PathParam(min_length=1), AfterValidator(check_user_id)],
    ) -> dict[str, Any]:
        """What Redis holds about the user: stored top-K, freshness, and the recent events weighed."""
        require_utf8_url(request)
        stored = await client().stored_profile(user_id)
        return profile_view(user_id, stored, config, clock_ms(), client().title).to_dict()

    @router.get("/v1/console/metrics")
    async def metrics() -> dict[str, Any]:
        """The console charts' series: the lookups' own counters and the workers' (summed)."""
        scrapes = await asyncio.gather(*(scrape(url, settings.console_scrape_timeout_ms) for url in urls))
        own = samples(generate_latest(registry).decode("utf-8"))
        return {
            "ts_ms": clock_ms(),
            "worker": worker_totals(scrapes).to_dict(),
            "lookups": pick(own, LOOKUPS_SAMPLES),
        }

    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=CONSOLE_DIR), name="console-static")
