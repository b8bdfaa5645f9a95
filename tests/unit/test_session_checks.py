"""tests/conftest.py: a test run fails when a process it started outlives it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

LEAKY = """
import subprocess

def test_starts_a_process_and_forgets_it():
    subprocess.Popen(["sleep", "120"], start_new_session=True)
"""

TIDY = """
import subprocess

def test_starts_a_process_and_stops_it():
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    proc.kill()
    proc.wait()
"""


def run_inner(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), "-c", "/dev/null", str(tmp_path / "test_inner.py")],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_a_run_that_leaves_a_process_behind_fails_and_names_it(tmp_path: Path) -> None:
    result = run_inner(tmp_path, LEAKY)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "still alive at its end" in result.stdout and "sleep 120" in result.stdout


def test_a_run_that_stops_what_it_started_passes(tmp_path: Path) -> None:
    result = run_inner(tmp_path, TIDY)
    assert result.returncode == 0, result.stdout + result.stderr
