"""The worker's compute process (`stream.worker.compute_process`): ``python -m stream.worker.compute_child``.

Reads `ComputeRequest` frames from stdin until it closes; for each, decodes the windows, computes
the profiles, writes them (with the batch's forgets and popularity) to Redis, and answers one
`ComputeReply` frame on stdout. Its settings come from the environment (``PROFILESTREAM_*``), as
the worker's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no stubs installed

from stream.core.logs import configure_logging
from stream.core.settings import Settings, load_settings
from stream.core.window import decode_own_window
from stream.profiles.computer import ProfileComputer
from stream.redis.reco_store import RecoStore
from stream.worker.compute_process import ComputeReply, ComputeRequest, read_frame, write_frame
from stream.worker.quarantine import is_transient
from stream.worker.resources import COMPUTE_BLAS_THREADS, WORKER_GC_THRESHOLDS, open_computer

log = logging.getLogger(__name__)


@dataclass
class ChildState:
    """What the compute process opens once: the profile computer and the profile writer."""

    computer: ProfileComputer
    store: RecoStore


def open_child_state(settings: Settings) -> ChildState:
    """The computer (encoder, index, tower) and Redis writer, opened as the worker opens its own."""
    return ChildState(computer=open_computer(settings), store=RecoStore.from_settings(settings))


def handle(request: ComputeRequest, state: ChildState, loop: asyncio.AbstractEventLoop) -> ComputeReply:
    """One batch: decode, compute, write. A failure is answered, not raised."""
    try:
        windows = [(user_id, decode_own_window(raw)) for user_id, raw in request.windows]
        profiles, timings = state.computer.compute_timed([(u, w) for u, w in windows if w.events])
        loop.run_until_complete(
            state.store.write(profiles, request.forgets, request.popularity, int(time.time() * 1000))
        )
    except Exception as exc:
        # The worker gets the error without its traceback: it is logged here.
        log.exception("computing or writing a batch's profiles failed")
        return ComputeReply("failed", error=_picklable(exc), transient=is_transient(exc))
    return ComputeReply("done", result=(len(profiles), timings))


def serve(requests: IO[bytes], replies: IO[bytes], state: ChildState) -> None:
    """Answer each request frame of `requests` on `replies` until `requests` ends."""
    loop = asyncio.new_event_loop()
    try:
        while (request := read_frame(requests)) is not None:
            if not isinstance(request, ComputeRequest):
                raise TypeError(f"expected a ComputeRequest frame, got {type(request).__name__}")
            write_frame(replies, handle(request, state, loop))
    finally:
        loop.run_until_complete(state.store.close())
        loop.close()


def _picklable(error: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def main(opener: Callable[[Settings], ChildState] = open_child_state) -> int:
    """Serve the worker until stdin closes (`opener`: what opens the state; tests pass a fake)."""
    # A Ctrl-C or a SIGTERM to the process group reaches the child too: the worker decides when
    # the work stops (it finishes its batch, then closes our stdin).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Frames go to the original stdout; anything a library prints goes to stderr instead of
    # into the frames.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    try:
        settings = load_settings(os.environ)
        configure_logging(settings.log_level)
        threadpool_limits(COMPUTE_BLAS_THREADS, user_api="blas")
        state = opener(settings)
    except Exception as exc:
        log.exception("the compute process could not open the model, index or Redis writer")
        write_frame(replies, ComputeReply("failed", error=_picklable(exc)))
        return 1
    # The model and index live as long as the process: no collection needs to scan them again.
    gc.freeze()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)
    write_frame(replies, ComputeReply("ready"))
    with contextlib.suppress(BrokenPipeError):  # the worker is gone
        serve(requests, replies, state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
