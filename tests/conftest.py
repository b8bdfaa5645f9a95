"""Session-wide guarantees of the whole test run.

A test run FAILS if a process it started is still alive at its end. The issue that made this a
rule: a failed fault test left its worker behind (reparented to pid 1, reconnecting for ten
minutes) and the next run's fault tests found their port taken.

Every process the run starts inherits LEAK_MARKER_ENV (set here at start-up, unique per run), so
leftovers are found even after their parent died and they were reparented: the run's descendants
plus every process carrying this run's marker. The service instances that deploy/local/services
keeps (their pids are in var/services/*/*.pid: a dev loop may leave them running on purpose) and
multiprocessing's own resource tracker and fork server of the pytest process are not leftovers.
Leftovers are listed, killed, and the exit status set to "tests failed".
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
LEAK_MARKER_ENV = "PS_TEST_RUN_ID"
SETTLE_S = 5.0


def pytest_configure(config: pytest.Config) -> None:
    os.environ[LEAK_MARKER_ENV] = uuid.uuid4().hex


def service_pids() -> set[int]:
    pids = set()
    services = REPO / "var" / "services"
    # A cluster's nodes keep theirs one level down (NAME/kafka-N/kafka.pid).
    for pid_file in [*services.glob("*/*.pid"), *services.glob("*/*/*.pid")]:
        try:
            pids.add(int(pid_file.read_text().strip()))
        except (OSError, ValueError):
            continue
    return pids


def interpreter_helper_pids() -> set[int]:
    """The helper processes multiprocessing starts for this interpreter itself (its resource
    tracker, its fork server): started lazily by libraries the tests use, they end when this
    process does (their pipe to it closes), so they are not a test's leftovers."""
    from multiprocessing import forkserver, resource_tracker

    pids = {
        getattr(resource_tracker._resource_tracker, "_pid", None),
        getattr(forkserver._forkserver, "_forkserver_pid", None),
    }
    return {pid for pid in pids if isinstance(pid, int)}


def _carries_marker(proc: psutil.Process, marker: str) -> bool:
    try:
        return proc.environ().get(LEAK_MARKER_ENV) == marker
    except (psutil.Error, OSError):
        return False


def leftover_processes() -> list[psutil.Process]:
    """Live processes this run started (directly or not), less the kept service instances."""
    me = psutil.Process()
    marker = os.environ.get(LEAK_MARKER_ENV, "")
    found = {p.pid: p for p in me.children(recursive=True)}
    for proc in psutil.process_iter():
        if proc.pid != me.pid and proc.pid not in found and _carries_marker(proc, marker):
            found[proc.pid] = proc
    keep = service_pids() | interpreter_helper_pids()
    alive = []
    for proc in found.values():
        try:
            if proc.pid not in keep and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


def describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} (parent {proc.ppid()}): {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"pid {proc.pid}"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leftovers = leftover_processes()
    if leftovers:
        # A process that is just exiting (SIGTERM sent by a fixture's teardown) gets a moment.
        _, leftovers = psutil.wait_procs(leftovers, timeout=SETTLE_S)
    if not leftovers:
        return
    lines = "\n".join(f"  {describe(p)}" for p in leftovers)
    message = (
        f"{len(leftovers)} process(es) started by this test run were still alive at its end "
        f"(each test must stop what it starts, whatever its outcome); killing them:\n{lines}"
    )
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "leftover processes", red=True)
        reporter.write_line(message)
    else:
        print(message)
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(leftovers, timeout=SETTLE_S)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
