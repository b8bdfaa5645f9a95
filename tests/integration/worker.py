"""Running `profilestream worker` as a real child process in integration tests."""

from __future__ import annotations

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
            [sys.executable, "-m", *module], stdout=out, stderr=subprocess.STDOUT, env=env
        )


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode
