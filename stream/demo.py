"""The demo behind `make demo`: a worker, a sample stream through Kafka, and what lands in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from stream.errors import ProfilestreamError
from stream.events import Event
from stream.lookups import recent_activity
from stream.producer import EventProducer
from stream.sample import SampleSpec, sample_events
from stream.settings import Settings
from stream.topics import ensure_topics

log = logging.getLogger(__name__)


def start_worker(log_path: Path) -> subprocess.Popen[bytes]:
    """Start `profilestream worker` as a child process (same interpreter, same environment)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker"], stdout=out, stderr=subprocess.STDOUT
        )


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def last_event_per_user(events: list[Event]) -> dict[str, str]:
    return {event.user_id: event.event_id for event in events}


async def wait_until_landed(
    settings: Settings, expected_last: dict[str, str], worker: subprocess.Popen[bytes], timeout_s: float
) -> None:
    """Wait until every user's newest recorded event in Redis is the last one we produced."""
    deadline = time.monotonic() + timeout_s
    pending = dict(expected_last)
    while pending:
        if worker.poll() is not None:
            raise ProfilestreamError(
                f"the worker exited with code {worker.returncode}; see var/demo/worker.log"
            )
        if time.monotonic() > deadline:
            raise ProfilestreamError(
                f"{len(pending)} users still missing in Redis after {timeout_s:.0f}s; see var/demo/worker.log"
            )
        for user_id, event_id in list(pending.items()):
            entries = await recent_activity(settings, user_id)
            if entries and entries[-1]["event_id"] == event_id:
                del pending[user_id]
        await asyncio.sleep(0.5)


def run_demo(settings: Settings, *, once: bool, users: int, events: int, timeout_s: float) -> None:
    ensure_topics(settings)
    worker = start_worker(Path("var/demo/worker.log"))
    try:
        # A new seed per run gives new event ids, so a second demo run shows fresh activity.
        stream = sample_events(SampleSpec(users=users, events=events, seed=int(time.time())))
        started = time.monotonic()
        with EventProducer(settings) as producer:
            producer.send_many(stream)
        expected = last_event_per_user(stream)
        asyncio.run(wait_until_landed(settings, expected, worker, timeout_s))
        click.echo(
            f"\n{len(stream)} events for {len(expected)} users went through Kafka "
            f"({settings.events_topic}) and the worker into Redis in {time.monotonic() - started:.1f}s.\n"
        )
        for user_id in sorted(expected)[:3]:
            click.echo(f"recent activity of {user_id} ({settings.redis_key('recent', user_id)}):")
            for entry in asyncio.run(recent_activity(settings, user_id))[-5:]:
                target = entry.get("item_id") or repr(entry.get("query"))
                click.echo(f"  {entry['ts_ms']}  {entry['type']:<12} {target}")
        click.echo("\nlook up any user with: .venv/bin/profilestream recent USER_ID")
        if not once:
            click.echo("worker running; press Ctrl-C to stop")
            with contextlib.suppress(KeyboardInterrupt):
                worker.wait()
    finally:
        code = stop_worker(worker)
        log.info("worker stopped with exit code %s", code)
