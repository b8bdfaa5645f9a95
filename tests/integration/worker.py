"""Running `profilestream worker` as a real child process in integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from stream.core.settings import Settings, child_environment


def start_worker(
    settings: Settings, log_path: Path, module: tuple[str, ...] = ("stream.cli", "worker")
) -> subprocess.Popen[bytes]:
    env = child_environment(os.environ, settings)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *module],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own process group, so that stop_worker can kill whatever it started as well.
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process's whole group (it leads one: start_new_session) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise
    kill_group(proc)
    return proc.returncode
