"""A real worker that fails inside its first Redis write, after flushing Kafka.

``kill`` (the default) SIGKILLs the process; ``raise`` raises an unexpected error instead, which
the worker must turn into an exit without committing the batch.

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
from collections.abc import Sequence

import faust

from stream.app import WorkerState, create_app
from stream.reco_store import RecoStore, UserProfile
from stream.runtime import open_worker_state
from stream.settings import Settings, load_settings
from stream.topics import ensure_topics


class CrashingStore(RecoStore):
    def __init__(self, inner: RecoStore, app: faust.App, mode: str) -> None:
        self._inner = inner
        self._app = app
        self._mode = mode

    async def write(
        self,
        profiles: Sequence[UserProfile],
        forgets: Sequence[tuple[str, int]],
        popularity: dict[str, float],
        computed_at_ms: int,
    ) -> None:
        await self._app.producer.flush()
        if self._mode == "raise":
            raise RuntimeError("injected failure inside the Redis write")
        os.kill(os.getpid(), signal.SIGKILL)

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
        return WorkerState(state.computer, CrashingStore(state.store, apps[0], mode), state.activity)

    apps.append(create_app(settings, crashing_state))
    faust.Worker(apps[0], loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
