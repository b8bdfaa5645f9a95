"""A real worker with a fault injected at its first Redis write (a crash, or records dropped).

``kill`` (the default) SIGKILLs the process; ``raise`` raises an unexpected error instead, which
the worker must turn into an exit without committing the batch. ``skip N`` fails nothing: from its
first Redis write on, the consumer silently drops the first N records (once each) that it fetches
from each events partition, as Faust's fetcher can around restarts and rebalances; the worker
must notice and read them again.

By then Faust's producer has sent everything the batch produced so far (changelog records
included), so the kill leaves the broker exactly as a crash at the worst moment would: whatever
the batch stored before its Redis write is durable, the Redis write itself never happens, and
the batch's offsets are not committed. Run as ``python -m tests.integration.crashing_worker``
with the usual PROFILESTREAM_* environment.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import faust

from stream.core.records import UserProfile
from stream.core.settings import Settings, load_settings
from stream.kafka.topics import ensure_topics
from stream.redis.reco_store import RecoStore
from stream.worker.app import create_app
from stream.worker.resources import WorkerState, open_worker_state


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
        if self._mode == "skip":
            self._armed = True
            await self._inner.write(profiles, forgets, popularity, computed_at_ms)
            return
        await self._app.producer.flush()
        if self._mode == "raise":
            raise RuntimeError("injected failure inside the Redis write")
        os.kill(os.getpid(), signal.SIGKILL)

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


def main() -> None:
    settings = load_settings(os.environ)
    ensure_topics(settings)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    apps: list[faust.App] = []

    def crashing_state(worker_settings: Settings) -> WorkerState:
        state = open_worker_state(worker_settings)
        mode = sys.argv[1] if len(sys.argv) > 1 else "kill"
        skip = int(sys.argv[2]) if len(sys.argv) > 2 else 0
        store = CrashingStore(state.store, apps[0], mode, worker_settings.events_topic, skip)
        return WorkerState(state.computer, store, state.activity)

    apps.append(create_app(settings, crashing_state))
    faust.Worker(apps[0], loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
