"""Every command that reads Redis answers a Redis that refuses or hangs with one line, in the budget.

Refused: a free port with nothing listening. Hangs: a server that accepts connections and never
sends a byte (a paused or wedged Redis): with only the client's socket timeouts and retries, the
commands used to wait about 95 s and then print a traceback.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from stream.cli.main import main
from tests.support.ports import free_port

BUDGET_MS = 500
# Interpreter work around the bounded call (settings, client set-up, closing) on a slow machine.
SLACK_S = 3.0

COMMANDS = {
    "recent": ["recent", "nu-a"],
    "migrate-keys": ["redis", "migrate-keys", "--dry-run"],
    "reco": ["reco", "nu-a"],
}


@pytest.fixture
def silent_redis() -> Iterator[int]:
    """A TCP server on a free port that accepts every connection and never answers."""
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))
    # Short accept waits let the thread see `stop` and end with the test.
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in accepted:
            connection.close()
        server.close()


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("failure", ["refused", "hangs"])
def test_redis_down_gives_one_line_naming_redis_and_the_fix_within_the_budget(
    silent_redis: int, command: str, failure: str
) -> None:
    port = free_port() if failure == "refused" else silent_redis
    env = {
        "PROFILESTREAM_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "PROFILESTREAM_LOOKUP_REDIS_BUDGET_MS": str(BUDGET_MS),
    }
    started = time.monotonic()
    result = CliRunner().invoke(main, COMMANDS[command], env=env)
    elapsed = time.monotonic() - started

    # A Redis error escaping the command shows here instead of the SystemExit of a clean error.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("profilestream: error: Redis ")
    assert "Traceback" not in result.output
    if failure == "refused":
        assert "PROFILESTREAM_REDIS_URL" in lines[0]
    else:
        assert f"within {BUDGET_MS} ms (PROFILESTREAM_LOOKUP_REDIS_BUDGET_MS)" in lines[0]
    assert elapsed < BUDGET_MS / 1000 + SLACK_S
