"""The demo behind `make demo`: the whole system on one machine, with a generated sample.

It exports the default encoder (all-MiniLM-L6-v2, once), indexes a generated office-supplies
catalogue, starts a worker, the HTTP collector and the lookup server, replays a generated event
stream into Kafka, sends a few events through the collector like a browser would, waits until
every user's recommendations are in Redis and prints some of them with their reasons. The sample
is produced by `stream.core.sample` (synthetic, no third-party data; same licence as this repository).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import click

from stream.core.errors import ProfilestreamError
from stream.core.events import Event, EventType
from stream.core.sample import SampleSpec, sample_catalogue, sample_events
from stream.core.settings import Settings
from stream.kafka.topics import ensure_topics
from stream.serving.lookups import RecoClient

log = logging.getLogger(__name__)

DEMO_DIR = Path("var/demo")
VISITOR = "demo-visitor"


@dataclass(frozen=True, slots=True)
class DemoPorts:
    collector: int = 8088
    lookups: int = 8081


def ensure_model(settings: Settings) -> None:
    """Export the default encoder once; later runs reuse it."""
    if (settings.model_dir / "manifest.json").exists():
        return
    from export.onnx_export import default_source, export_model

    click.echo(f"exporting all-MiniLM-L6-v2 to ONNX in {settings.model_dir} (once) ...")
    export_model(default_source(), settings.model_dir, ["fp32"])


def ensure_index(settings: Settings) -> Path:
    """Write the sample catalogue and bring the index up to date (only changes are encoded)."""
    from models.encoder.onnx_encoder import load_encoder, options_from_settings
    from models.index.item_index import sync_catalog

    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    catalog = DEMO_DIR / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(row) + "\n" for row in sample_catalogue()), encoding="utf-8")
    encoder = load_encoder(settings.model_dir, options_from_settings(settings))
    sync_catalog(settings.index_dir, catalog, encoder, batch_size=settings.encoder_batch_size)
    return catalog


def start(args: list[str], log_name: str) -> subprocess.Popen[bytes]:
    """Start `profilestream ARGS` as a child (same interpreter and environment), logging to a file."""
    with open(DEMO_DIR / log_name, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.cli", *args], stdout=out, stderr=subprocess.STDOUT
        )


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProfilestreamError(f"{url} never came up: its process exited; see {DEMO_DIR}/*.log")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.3)
    raise ProfilestreamError(f"{url} did not answer within {timeout_s:.0f}s; see {DEMO_DIR}/*.log")


def post_events(url: str, events: list[Event]) -> int:
    body = json.dumps([e.to_dict() for e in events]).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def newest_event_per_user(events: list[Event]) -> dict[str, str]:
    newest: dict[str, Event] = {}
    for event in events:
        seen = newest.get(event.user_id)
        if seen is None or (event.ts_ms, event.event_id) > (seen.ts_ms, seen.event_id):
            newest[event.user_id] = event
    return {user: event.event_id for user, event in newest.items()}


async def wait_for_profiles(
    settings: Settings, expected: dict[str, str], workers: list[subprocess.Popen[bytes]], timeout_s: float
) -> None:
    """Wait until each user's recommendations were computed from a window ending in their newest event."""
    client = RecoClient.from_settings(settings)
    deadline = time.monotonic() + timeout_s
    pending = dict(expected)
    try:
        while pending:
            if any(w.poll() is not None for w in workers):
                raise ProfilestreamError(f"a demo process exited early; see {DEMO_DIR}/*.log")
            if time.monotonic() > deadline:
                raise ProfilestreamError(
                    f"{len(pending)} users still without fresh recommendations after {timeout_s:.0f}s; "
                    f"see {DEMO_DIR}/worker.log"
                )
            for user_id, event_id in list(pending.items()):
                result = await client.get(user_id, 1)
                newest = await client.newest_event_id(user_id)
                if result.source == "profile" and newest == event_id:
                    del pending[user_id]
            await asyncio.sleep(0.5)
    finally:
        await client.close()


def visitor_events(start_ms: int) -> list[Event]:
    """What a shopper's browser would send: a search, a view and an add-to-cart."""
    return [
        Event("visit-1", VISITOR, EventType.SEARCH, start_ms, query="gel pens"),
        Event("visit-2", VISITOR, EventType.VIEW, start_ms + 5_000, item_id="sku-00002"),
        Event("visit-3", VISITOR, EventType.ADD_TO_CART, start_ms + 9_000, item_id="sku-00002"),
    ]


async def show(settings: Settings, user_ids: list[str], k: int = 5) -> None:
    titles_path = settings.index_dir / "titles.json"
    titles = json.loads(titles_path.read_text(encoding="utf-8")) if titles_path.exists() else {}
    client = RecoClient.from_settings(settings)
    try:
        for user_id in user_ids:
            result = await client.get(user_id, k)
            click.echo(f"\ntop-{k} for {user_id} ({result.source}, model {result.model_version}):")
            for item in result.items:
                title = titles.get(item.item_id, "")
                click.echo(f"  {item.score:6.3f}  {item.item_id}  {title:<36} {item.reason or ''}")
    finally:
        await client.close()


def run_demo(
    settings: Settings, *, once: bool, users: int, events: int, timeout_s: float, ports: DemoPorts
) -> None:
    from stream.ingest.replay import ReplayOptions, SourceSpec, replay

    ensure_model(settings)
    ensure_index(settings)
    ensure_topics(settings)
    processes = [
        start(["worker"], "worker.log"),
        start(["collector", "--port", str(ports.collector)], "collector.log"),
        start(["serve-lookups", "--port", str(ports.lookups)], "lookups.log"),
    ]
    try:
        wait_http(f"http://127.0.0.1:{ports.collector}/healthz", 120, processes[1])
        wait_http(f"http://127.0.0.1:{ports.lookups}/healthz", 120, processes[2])
        # A new seed per run gives new event ids, so a second demo run shows fresh activity.
        stream = sample_events(SampleSpec(users=users, events=events, seed=int(time.time())))
        events_file = DEMO_DIR / "events.jsonl"
        events_file.write_text("".join(e.to_json().decode() + "\n" for e in stream), encoding="utf-8")
        started = time.monotonic()
        report = replay(
            settings,
            SourceSpec(str(events_file)),
            ReplayOptions(rejects_path=DEMO_DIR / "rejects.jsonl", progress=False),
        )
        visit = visitor_events(max(e.ts_ms for e in stream) + 60_000)
        status = post_events(f"http://127.0.0.1:{ports.collector}/v1/events", visit)
        expected = newest_event_per_user(stream + visit)
        asyncio.run(wait_for_profiles(settings, expected, processes, timeout_s))
        click.echo(
            f"\n{report.produced} events replayed from {events_file} and {len(visit)} posted to the "
            f"collector (HTTP {status}); {len(expected)} users' recommendations in Redis after "
            f"{time.monotonic() - started:.1f}s."
        )
        asyncio.run(show(settings, [VISITOR, *sorted(set(expected) - {VISITOR})[:2]]))
        url = f"http://127.0.0.1:{ports.lookups}/v1/users/{VISITOR}/recommendations?k=5"
        click.echo(f"\nlookup URL: {url}")
        click.echo(f"collector:  POST http://127.0.0.1:{ports.collector}/v1/events")
        if not once:
            click.echo("running; press Ctrl-C to stop")
            with contextlib.suppress(KeyboardInterrupt):
                processes[0].wait()
    finally:
        codes = [stop(p) for p in processes]
        log.info("demo processes stopped with exit codes %s", codes)
