"""The batch's profiles computed and written to Redis by a second process (issue 19, part 10).

The worker's event loop (Faust, decoding, windows, the changelog) and its compute (user vectors,
top-K, MMR, reasons, the Redis profile write) each take about half a core of interpreter work at
4,000 events/s, and in one process they share one interpreter lock: py-spy found the two threads
running or waiting for the lock in 97 % of the samples while the worker fell behind. With
``PROFILESTREAM_WORKER_COMPUTE=process`` (the default) the compute runs in a child process,
`stream.worker.compute_child`, which opens its own encoder, index and Redis connection. It is
sent each changed user's window as the bytes the changelog stores (encoding them costs the event
loop about 5 ms a batch; pickling the window objects cost 14 ms) and answers with the count of
profiles written and the compute's timings: the profiles (20 recommendations and a vector each)
never cross between the processes.

The two talk over the child's stdin and stdout, read and written by the event loop itself
(frames: a 4-byte big-endian length, then a pickle). `concurrent.futures.ProcessPoolExecutor`
was tried first: its hand-over threads wait for the interpreter lock behind the busy event loop,
and a batch's request took 14 ms (median) to reach the child.

What stays the same: the batch waits for the profile write before its windows and positions are
stored (the crash ordering of `stream.worker.app`), and an error raised by the compute or by
Redis reaches the batch as the same exception, so the quarantine and the peer-failure exit work
as with the thread (a peer's error stays one: `is_transient` is decided in the child, where the
error's causes still are). New: the child is a peer. If it ends (killed, out of memory) the batch
fails with `ServiceUnavailable`, which ends the worker without committing
(`exit_for_redelivery`). The child ignores SIGINT and SIGTERM (the worker finishes its batch in
hand before it stops, and then closes the child's stdin) and ends once its stdin closes, so it
never outlives the worker, even one killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import pickle
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from stream.core.errors import ConfigError, ServiceUnavailable
from stream.core.settings import Settings, child_environment
from stream.profiles.computer import Timings
from stream.worker.quarantine import is_transient

log = logging.getLogger(__name__)

FRAME_HEADER = struct.Struct(">I")
CHILD_MODULE = "stream.worker.compute_child"
PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size
# How long a closing child may finish its task before it is killed.
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ComputeRequest:
    """One batch's work: each changed user's window as `encode_window` bytes, the batch's forgets
    (user id, forget event time in ms) and its catalogue popularity increments."""

    windows: Sequence[tuple[str, bytes]]
    forgets: Sequence[tuple[str, int]]
    popularity: dict[str, float]


@dataclass(frozen=True, slots=True)
class ComputeReply:
    """The child's answer: ``ready`` (once, after start-up), ``done`` (`result` holds the count of
    profiles written and the timings) or ``failed`` (`error`, and whether it is a peer's)."""

    status: str
    result: tuple[int, Timings] | None = None
    error: BaseException | None = None
    transient: bool = False


def encode_frame(message: object) -> bytes:
    """`message` as one frame: its pickle's length, then the pickle."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> object:
    """The message of a frame's body (its bytes after the length)."""
    message: object = pickle.loads(body)  # our own process's frames, over a private pipe
    return message


def write_frame(stream: IO[bytes], message: object) -> None:
    """Write `message` as one frame to a blocking binary stream (the child's side)."""
    stream.write(encode_frame(message))
    stream.flush()


def read_frame(stream: IO[bytes]) -> object | None:
    """The next frame's message from a blocking binary stream; None at its end."""
    header = stream.read(FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None
    (size,) = FRAME_HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return decode_body(body)


def _widen_pipe(writer: asyncio.StreamWriter | None) -> None:
    """Let the pipe to the child hold a whole batch's request (Linux; elsewhere a no-op).

    With the default 64 KB, a batch's windows (about 360 KB at 4,000 events/s) went over in
    chunks, each written only when the busy event loop next polled: 14 ms a batch.
    """
    pipe = writer.get_extra_info("pipe") if writer is not None else None
    if pipe is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError as exc:  # above /proc/sys/fs/pipe-max-size for an unprivileged user
        log.info("the compute process's pipe keeps its size (%s)", exc)


class ComputeProcess:
    """The compute process of one worker (`PROFILESTREAM_WORKER_COMPUTE=process`).

    `command` runs the child (default: `python -m stream.worker.compute_child`); its environment
    carries `settings`.
    """

    def __init__(self, settings: Settings, command: Sequence[str] | None = None) -> None:
        self._settings = settings
        self._command = list(command or [sys.executable, "-m", CHILD_MODULE])
        self._process: asyncio.subprocess.Process | None = None
        # One request at a time: the replies come back in order, unlabelled.
        self._turn = asyncio.Lock()

    async def start(self) -> None:
        """Start the child and wait until it has opened the model, index and Redis writer.

        Raises `ConfigError` with the child's reason when it could not, `ServiceUnavailable` when
        it ended without one.
        """
        self._process = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=child_environment(os.environ, self._settings),
        )
        _widen_pipe(self._process.stdin)
        reply = await self._receive()
        if reply.status != "ready":
            raise ConfigError(f"the worker's compute process could not start: {reply.error}") from reply.error

    async def compute_and_write(
        self,
        windows: Sequence[tuple[str, bytes]],
        forgets: Sequence[tuple[str, int]],
        popularity: dict[str, float],
    ) -> tuple[int, Timings]:
        """Have the child compute the profiles of `windows` and write them, `forgets` and
        `popularity` to Redis; return the count written and the timings.

        Raises the child's error (a peer's as `ServiceUnavailable` when its type alone does not
        say so), or `ServiceUnavailable` when the child has ended.
        """
        request = ComputeRequest(list(windows), list(forgets), popularity)
        async with self._turn:
            process = self._running()
            assert process.stdin is not None
            try:
                process.stdin.write(encode_frame(request))
                await process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise self._ended() from exc
            reply = await self._receive()
        if reply.status == "done" and reply.result is not None:
            return reply.result
        error = reply.error or RuntimeError(f"the compute process answered {reply.status!r}")
        if reply.transient and not is_transient(error):
            raise ServiceUnavailable(f"the compute process's peer failed: {error}") from error
        raise error

    async def close(self) -> None:
        """End the child: its stdin closes, so it ends after its task; killed after
        `CLOSE_TIMEOUT_S`."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()

    def _running(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise ServiceUnavailable("the worker's compute process is not running (start it first)")
        return self._process

    async def _receive(self) -> ComputeReply:
        process = self._running()
        assert process.stdout is not None
        try:
            (size,) = FRAME_HEADER.unpack(await process.stdout.readexactly(FRAME_HEADER.size))
            reply = decode_body(await process.stdout.readexactly(size))
        except asyncio.IncompleteReadError as exc:
            raise self._ended() from exc
        if not isinstance(reply, ComputeReply):
            raise ServiceUnavailable(f"the compute process answered {type(reply).__name__}, not a reply")
        return reply

    def _ended(self) -> ServiceUnavailable:
        code = self._process.returncode if self._process is not None else None
        return ServiceUnavailable(
            f"the worker's compute process ended (exit status {code}: killed, out of memory, or "
            "see its log lines above); the worker exits so that its supervisor restarts it "
            "(PROFILESTREAM_WORKER_COMPUTE=thread computes in the worker's own process)"
        )
