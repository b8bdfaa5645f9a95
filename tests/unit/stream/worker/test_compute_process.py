"""The worker's compute process (stream/worker/compute_process.py, compute_child.py): a real child
process with a fake computer and store (fake_compute_child.py) behind the real protocol."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest

from stream.core.errors import ConfigError, ServiceUnavailable
from stream.core.events import EventType
from stream.core.settings import load_settings
from stream.core.window import Window, WindowEvent, decode_own_window, encode_window
from stream.profiles.computer import Timings
from stream.worker.compute_process import ComputeProcess

FAKE = Path(__file__).with_name("fake_compute_child.py")
REPO = Path(__file__).resolve().parents[4]


def window(*event_ids: str) -> bytes:
    return encode_window(
        Window(
            tuple(
                WindowEvent(e, EventType.VIEW, 1_700_000_000_000 + i, f"item-{i}")
                for i, e in enumerate(event_ids)
            )
        )
    )


def run(mode: str, body: Callable[[ComputeProcess], Awaitable[object]]) -> object:
    async def main() -> object:
        compute = ComputeProcess(load_settings({}), command=[sys.executable, str(FAKE), mode])
        try:
            await compute.start()
            return await body(compute)
        finally:
            await compute.close()

    return asyncio.run(main())


def test_a_batch_goes_to_the_child_and_its_count_and_timings_come_back() -> None:
    async def body(compute: ComputeProcess) -> object:
        first = await compute.compute_and_write([("u1", window("a", "b")), ("u2", window())], [], {})
        second = await compute.compute_and_write([("u3", window("c"))], [("u4", 5)], {"item-1": 1.0})
        return first, second

    # The user with an empty window is not computed, as in the worker's thread.
    assert run("ok", body) == ((1, Timings(1.0, 2.0)), (1, Timings(1.0, 2.0)))


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        # The quarantine splits a batch on it and dead-letters the record alone.
        ("value-error", ValueError, "a record the compute cannot read"),
        # Its Redis cause is decided in the child; without the flag the worker would quarantine
        # every record of every batch while Redis is down.
        ("peer-error", ServiceUnavailable, "the profile write gave up"),
    ],
)
def test_a_compute_error_reaches_the_batch_as_itself_and_a_peer_error_as_a_peer_error(
    mode: str, error: type[Exception], message: str
) -> None:
    async def body(compute: ComputeProcess) -> object:
        with pytest.raises(error, match=message):
            await compute.compute_and_write([("u1", window("a"))], [], {})
        return "raised"

    assert run(mode, body) == "raised"


def test_a_child_that_cannot_open_its_model_stops_the_start_with_its_reason() -> None:
    with pytest.raises(ConfigError, match=r"no model in .*profilestream export"):
        run("no-start", lambda compute: asyncio.sleep(0, "started"))


def test_a_child_that_dies_fails_the_batch_as_a_peer() -> None:
    """ServiceUnavailable ends the worker without committing (exit_for_redelivery)."""

    async def body(compute: ComputeProcess) -> object:
        with pytest.raises(ServiceUnavailable, match="compute process ended"):
            await compute.compute_and_write([("u1", window("a"))], [], {})
        with pytest.raises(ServiceUnavailable):
            await compute.compute_and_write([("u1", window("a"))], [], {})
        return "raised"

    assert run("exit", body) == "raised"


def test_the_child_ignores_sigterm_and_sigint_and_ends_when_its_stdin_closes() -> None:
    async def body(compute: ComputeProcess) -> object:
        child = compute._process
        assert child is not None
        # A Ctrl-C or SIGTERM to the process group: the worker finishes its batch first.
        os.kill(child.pid, signal.SIGTERM)
        os.kill(child.pid, signal.SIGINT)
        await asyncio.sleep(0.3)
        assert child.returncode is None
        assert await compute.compute_and_write([("u1", window("a"))], [], {}) == (1, Timings(1.0, 2.0))
        await compute.close()
        return child.returncode

    assert run("ok", body) == 0


def test_the_child_does_not_outlive_a_worker_killed_with_sigkill() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import asyncio, sys
                from stream.core.settings import load_settings
                from stream.worker.compute_process import ComputeProcess
                async def main():
                    command = [sys.executable, {str(FAKE)!r}, "ok"]
                    compute = ComputeProcess(load_settings({{}}), command=command)
                    await compute.start()
                    print(compute._process.pid, flush=True)
                    await asyncio.sleep(60)
                asyncio.run(main())
                """
            ),
        ],
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        parent.kill()
        parent.wait()
        gone, _ = psutil.wait_procs([child], timeout=10)
        assert gone, "the compute process outlived its worker"
    finally:
        parent.kill()
        parent.wait()


def test_a_window_sent_to_the_child_reads_back_equal() -> None:
    sent = Window(
        (
            WindowEvent("a", EventType.SEARCH, 1, None, "red shoes", 3),
            WindowEvent("b", EventType.PURCHASE, 2, "item-1", None, 4),
        ),
        forgotten_ts_ms=0,
        forgotten_received_ms=1,
    )
    assert decode_own_window(encode_window(sent)) == sent
    assert decode_own_window(encode_window(Window())) == Window()
