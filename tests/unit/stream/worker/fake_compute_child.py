"""A compute process with a fake computer and store, run as `python fake_compute_child.py MODE`
by test_compute_process.py: the real `stream.worker.compute_child.main` around them.

Modes: ok (one profile per window with events), value-error (the compute raises ValueError),
peer-error (the write raises an error caused by a Redis connection error), no-start (opening the
state fails), exit (the process ends at its first request).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, cast

import redis.exceptions

from stream.core.errors import ModelError
from stream.core.settings import Settings
from stream.core.window import Window
from stream.profiles.computer import Timings
from stream.worker.compute_child import ChildState, main


class FakeComputer:
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def compute_timed(self, windows: Sequence[tuple[str, Window]]) -> tuple[list[Any], Timings]:
        if self.mode == "value-error":
            raise ValueError("a record the compute cannot read")
        if self.mode == "exit":
            os._exit(9)
        return [(user_id, len(window.events)) for user_id, window in windows], Timings(1.0, 2.0)


class FakeStore:
    def __init__(self, mode: str) -> None:
        self.mode = mode

    async def write(self, profiles: Any, forgets: Any, popularity: Any, computed_at_ms: int) -> None:
        if self.mode == "peer-error":
            try:
                raise redis.exceptions.ConnectionError("Redis at 127.0.0.1:1 refused the connection")
            except redis.exceptions.ConnectionError as exc:
                raise RuntimeError("the profile write gave up") from exc

    async def close(self) -> None:
        pass


def opener(settings: Settings) -> ChildState:
    mode = sys.argv[1]
    if mode == "no-start":
        raise ModelError(f"no model in {settings.model_dir}: export one with `profilestream export`")
    return ChildState(computer=cast(Any, FakeComputer(mode)), store=cast(Any, FakeStore(mode)))


if __name__ == "__main__":
    sys.exit(main(opener))
