"""A real worker with a fault injected at its first Redis write (a crash, or records dropped).

``kill`` (the default) SIGKILLs the process; ``raise`` raises a peer's failure instead
(`ServiceUnavailable`, as a Redis outage would), which the worker must turn into an exit without
committing the batch. ``skip N`` fails nothing: from its
first Redis write on, the consumer silently drops the first N records (once each) that it fetches
from each events partition, as Faust's fetcher can around restarts and rebalances; the worker
must notice and read them again.

Modes for the poison tests (tests/integration/test_poison.py): ``poison EVENT_ID`` makes the
encoder step fail with an unexpected error whenever a window holds that event (the worker must
quarantine that one record and go on); ``dlq-delay`` holds every dead letter back for
`DLQ_DELAY_S` before it is really sent, and SIGKILLs the process (after flushing the producer) one
second after the first Redis write: a worker that moved its position on without the dead letters'
acks loses them; ``slow-load SECONDS`` makes loading the model and index take that much longer.

Mode for the identity tests (tests/integration/test_identity.py): ``identity-kill`` SIGKILLs the
process right after the broker acknowledged the events of a joined anonymous window, before the
window is cleared, its keys deleted or the batch's position stored.

By then Faust's producer has sent everything the batch produced so far (changelog records
included), so the kill leaves the broker exactly as a crash at the worst moment would: whatever
the batch stored before its Redis write is durable, the Redis write itself never happens, and
the batch's offsets are not committed. Run as ``python -m tests.integration.crashing_worker``
with the usual PROFILESTREAM_* environment.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import faust
import faust.topics

from stream.core.errors import ServiceUnavailable
from stream.core.events import Event
from stream.core.identity import MERGED_FROM
from stream.core.records import UserProfile
from stream.core.settings import Settings, load_settings
from stream.kafka.topics import ensure_topics
from stream.redis.reco_store import RecoStore
from stream.worker.app import create_app
from stream.worker.identity import IdentityJoiner
from stream.worker.resources import WorkerState, open_worker_state

DLQ_DELAY_S = 3.0


class CrashingStore(RecoStore):
    def __init__(self, inner: RecoStore, app: faust.App, mode: str, events_topic: str, skip: int) -> None:
        self._inner = inner
        self._app = app
        self._mode = mode
        self._armed = False
        self._events_topic = events_topic
        self._skip = skip
        if mode == "skip":
            self._drop_fetched_records_once_armed()

    async def write(
        self,
        profiles: Sequence[UserProfile],
        forgets: Sequence[tuple[str, int]],
        popularity: dict[str, float],
        computed_at_ms: int,
    ) -> None:
        if self._mode in ("skip", "poison", "slow-load"):
            self._armed = True
            await self._inner.write(profiles, forgets, popularity, computed_at_ms)
            return
        if self._mode == "dlq-delay":
            await self._inner.write(profiles, forgets, popularity, computed_at_ms)
            if not self._armed:
                self._armed = True
                asyncio.get_running_loop().call_later(1.0, self._flush_and_kill)
            return
        await self._app.producer.flush()
        if self._mode == "raise":
            raise ServiceUnavailable("injected failure inside the Redis write")
        os.kill(os.getpid(), signal.SIGKILL)

    def _flush_and_kill(self) -> None:
        async def flush_and_kill() -> None:
            await self._app.producer.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        _background.add(asyncio.ensure_future(flush_and_kill()))

    def _drop_fetched_records_once_armed(self) -> None:
        # Wrapped before the first fetch: a fetch that is already waiting when the drops are armed
        # (a long poll) returns its records through the filter too.
        consumer: Any = self._app.consumer
        fetch = consumer._getmany  # looked up on every fetch, unlike getmany
        dropped: dict[Any, set[int]] = defaultdict(set)

        def keep(tp: Any, record: Any) -> bool:
            seen = dropped[tp]
            if (
                self._armed
                and tp.topic == self._events_topic
                and len(seen) < self._skip
                and record.offset not in seen
            ):
                seen.add(record.offset)
                return False
            return True

        async def dropping_getmany(active_partitions: Any, timeout: float) -> dict[Any, list[Any]]:
            records = await fetch(active_partitions=active_partitions, timeout=timeout)
            return {tp: [r for r in batch if keep(tp, r)] for tp, batch in records.items()}

        consumer._getmany = dropping_getmany

    async def close(self) -> None:
        await self._inner.close()


_background: set[asyncio.Future[None]] = set()


class PoisonedComputer:
    """The real profile computer, failing whenever a window holds the poison event."""

    def __init__(self, inner: Any, poison_event_id: str) -> None:
        self._inner = inner
        self._poison = poison_event_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def compute_timed(self, windows: Sequence[tuple[str, Any]]) -> Any:
        for _, window in windows:
            if any(e.event_id == self._poison for e in window.events):
                raise ValueError(f"injected failure on event {self._poison}")
        return self._inner.compute_timed(windows)


def delay_dead_letters(dead_letter_topic: str) -> None:
    """Hold every dead letter back `DLQ_DELAY_S` before it is sent; its future completes on the ack."""
    send = faust.topics.Topic.send

    async def delayed_send(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.get_topic_name() != dead_letter_topic:
            return await send(self, *args, **kwargs)
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def later() -> None:
            await asyncio.sleep(DLQ_DELAY_S)
            acked.set_result(await (await send(self, *args, **kwargs)))

        _background.add(asyncio.ensure_future(later()))
        return acked

    faust.topics.Topic.send = delayed_send  # type: ignore[method-assign]


def kill_after_moving_a_window(apps: list[faust.App]) -> None:
    """SIGKILL once the broker has acknowledged a joined window's events (see the docstring)."""
    send = IdentityJoiner._send_acked

    async def send_then_die(self: IdentityJoiner, events: Sequence[Event]) -> None:
        await send(self, events)
        if any(MERGED_FROM in event.context for event in events):
            await apps[0].producer.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    IdentityJoiner._send_acked = send_then_die  # type: ignore[method-assign]


def main() -> None:
    settings = load_settings(os.environ)
    ensure_topics(settings)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    apps: list[faust.App] = []

    def crashing_state(worker_settings: Settings) -> WorkerState:
        state = open_worker_state(worker_settings)
        mode = sys.argv[1] if len(sys.argv) > 1 else "kill"
        skip = int(sys.argv[2]) if mode == "skip" and len(sys.argv) > 2 else 0
        store = CrashingStore(state.store, apps[0], mode, worker_settings.events_topic, skip)
        computer: Any = state.computer
        if mode == "poison":
            computer = PoisonedComputer(state.computer, sys.argv[2])
        if mode == "slow-load":
            time.sleep(float(sys.argv[2]))
        return WorkerState(computer, store, state.activity)

    if len(sys.argv) > 1 and sys.argv[1] == "dlq-delay":
        delay_dead_letters(settings.dead_letter_topic)
    if len(sys.argv) > 1 and sys.argv[1] == "identity-kill":
        kill_after_moving_a_window(apps)

    apps.append(create_app(settings, crashing_state))
    faust.Worker(apps[0], loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
