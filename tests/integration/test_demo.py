"""`profilestream demo --once` end to end against the test servers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stream.settings import Settings, as_environment

pytestmark = pytest.mark.integration


def test_demo_once_pushes_events_through_and_stops_by_itself(isolated: Settings, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILESTREAM_")}
    env.update(as_environment(isolated))
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", "demo", "--once", "--users", "6", "--events", "80"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The demo draws a new sample each run, so a light user may have no events in it.
    assert re.search(r"80 events for [1-6] users went through Kafka", result.stdout), result.stdout
    assert result.stdout.count("recent activity of u") == 3
    assert (tmp_path / "var" / "demo" / "worker.log").exists()
