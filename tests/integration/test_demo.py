"""`profilestream demo --once` end to end against the test servers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stream.core.settings import Settings, child_environment
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


def test_demo_once_pushes_events_through_and_stops_by_itself(isolated: Settings, tmp_path: Path) -> None:
    env = child_environment(os.environ, isolated)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "demo",
            "--once",
            "--users",
            "6",
            "--events",
            "80",
            "--collector-port",
            str(free_port()),
            "--lookup-port",
            str(free_port()),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    # The demo draws a new sample each run, so a light user may have no events in it.
    assert re.search(r"80 events replayed .* 3 posted to the collector \(HTTP 202\); [2-7] users'", out), out
    assert out.count("\ntop-5 for ") == 3
    # The visitor searched gel pens and added one to the cart: that item comes with its reason.
    visitor = out.split("top-5 for demo-visitor (profile")[1].split("\ntop-5")[0]
    assert "because you added to cart" in visitor or "because you searched 'gel pens'" in visitor
    assert "lookup URL: http://127.0.0.1:" in out
    assert (tmp_path / "var" / "demo" / "worker.log").exists()
