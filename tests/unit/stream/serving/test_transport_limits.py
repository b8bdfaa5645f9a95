"""The lookups and collector apps behind a real uvicorn, as a client on a network sends: a request
line and headers arriving in small TCP segments, over-long URLs and headers, ``Expect:
100-continue``.

uvicorn runs in this process on a port the kernel picks (port 0) and is stopped by its fixture.
With uvicorn's defaults a URL over 16 KiB arriving in segments was refused by the h11 parser with a
plain-text 400 and an immediate close (a client still sending read a connection reset).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import uvicorn

from stream.core.events import MAX_ID_CHARS
from stream.core.settings import load_settings
from stream.ingest.collector import create_collector_app
from stream.ingest.gateway import CollectorConfig
from stream.serving.api import create_lookup_app
from stream.web.limits import (
    H11_MAX_INCOMPLETE_EVENT_SIZE,
    MAX_HEADER_BYTES,
    MAX_URL_BYTES,
    uvicorn_options,
)
from tests.support.fakes import FakeProducer

NOW_MS = 1_764_000_000_000


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    interim: tuple[int, ...] = ()  # 1xx answers before the final one

    def json(self) -> Any:
        return json.loads(self.body)


def serve(app: Any) -> Iterator[int]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", **uvicorn_options())
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def lookups_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("lookups")
    # No model (search answers 503) and no Redis: neither is reached by what is tested here.
    settings = load_settings(
        {}, model_dir=tmp / "no-model", index_dir=tmp / "no-index", redis_url="redis://127.0.0.1:1/0"
    )
    yield from serve(create_lookup_app(settings))


@pytest.fixture(scope="module")
def collector_port() -> Iterator[int]:
    app = create_collector_app(
        load_settings({}, events_topic="t.events"),
        producer_factory=lambda _: FakeProducer(),
        config=CollectorConfig(max_body_bytes=4096),
        clock_ms=lambda: NOW_MS,
    )
    yield from serve(app)


def read_answer(sock: socket.socket, *, head: bool = False) -> Answer:
    """One HTTP/1.1 response (after any 1xx), read to the end of its Content-Length (no body for
    an answer to HEAD)."""
    data = b""
    interim: list[int] = []
    while True:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before an answer: {data[:200]!r}"
            data += chunk
        head_bytes, _, data = data.partition(b"\r\n\r\n")
        status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        if 100 <= status < 200:
            interim.append(status)
            continue
        length = 0 if head else int(headers.get("content-length", "0"))
        while len(data) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed inside the body"
            data += chunk
        return Answer(status, headers, data[:length], tuple(interim))


def send_in_segments(port: int, request: bytes, segment: int = 1024) -> Answer:
    """Sends `request` in small segments, as a network delivers a long one, and reads the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(request), segment):
            sock.sendall(request[start : start + segment])
            time.sleep(0.0005)
        return read_answer(sock)


def get(target: str, headers: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n".encode()


LONG = 30_000  # bytes: over uvicorn's default 16 KiB buffer and over MAX_URL_BYTES


@pytest.mark.parametrize(
    "target",
    [
        "/v1/search?q=" + "x" * LONG,
        "/v1/search?q=" + quote("€" * (LONG // 9)),
        "/v1/users/" + "u" * LONG + "/recommendations",
        "/v1/recommendations?user_id=" + "u" * LONG,
        "/healthz?" + "p" * LONG,
    ],
    ids=["query", "encoded-query", "path-id", "query-id", "any-route"],
)
def test_lookups_answer_an_over_long_url_with_a_json_414(lookups_port: int, target: str) -> None:
    answer = send_in_segments(lookups_port, get(target))
    assert answer.status == 414
    assert answer.headers["content-type"] == "application/json"
    assert f"over the limit of {MAX_URL_BYTES} bytes" in answer.json()["detail"]


def test_a_url_under_the_bound_with_a_shops_cookies_reaches_the_app(lookups_port: int) -> None:
    # The longest id, every character 4 UTF-8 bytes percent-encoded, and a pasted query (cut to
    # 512 characters by the route) filling the URL up to its bound; a few KiB of cookies on top
    # take the request past uvicorn's default 16 KiB buffer.
    user_id = quote("\U0001f600" * MAX_ID_CHARS, safe="")
    target = f"/v1/search?k=10&user_id={user_id}&q="
    target += quote("\U0001f50e" * ((MAX_URL_BYTES - len(target)) // 12), safe="")
    assert MAX_URL_BYTES - 12 < len(target) <= MAX_URL_BYTES
    answer = send_in_segments(lookups_port, get(target, f"Cookie: session={'s' * 4000}\r\n"))
    assert answer.status == 503  # the route ran: search without a model
    assert "search is unavailable" in answer.json()["detail"]


def test_an_id_too_long_for_the_schema_but_under_the_url_bound_is_still_a_422(lookups_port: int) -> None:
    answer = send_in_segments(lookups_port, get("/v1/users/" + "u" * (MAX_ID_CHARS + 1) + "/recommendations"))
    assert answer.status == 422
    assert "at most 128" in json.dumps(answer.json())


def test_lookups_answer_oversized_headers_with_a_json_431(lookups_port: int) -> None:
    cookies = "".join(f"Cookie: c{n}={'v' * 4000}\r\n" for n in range(MAX_HEADER_BYTES // 4000 + 1))
    answer = send_in_segments(lookups_port, get("/healthz", cookies))
    assert answer.status == 431
    assert f"over the limit of {MAX_HEADER_BYTES} bytes" in answer.json()["detail"]


def test_head_on_a_lookup_route_is_a_get_without_body(lookups_port: int) -> None:
    with socket.create_connection(("127.0.0.1", lookups_port), timeout=10) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        answer = read_answer(sock, head=True)
        assert answer.status == 200
        assert answer.headers["content-length"] == str(len(b'{"status":"ok"}'))
        sock.settimeout(2)
        assert sock.recv(100) == b""  # no body follows


def test_collector_answers_an_over_long_url_with_a_json_414(collector_port: int) -> None:
    body = b"[]"
    request = (
        f"POST /v1/events?{'x' * LONG} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    answer = send_in_segments(collector_port, request)
    assert answer.status == 414
    assert answer.json()["errors"][0]["field"] == "URL"


def post_expecting_continue(port: int, body: bytes, declared: int | None = None) -> Answer:
    head = (
        "POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared if declared is not None else len(body)}\r\nExpect: 100-continue\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(5)
        first = sock.recv(65536)
        if first.startswith(b"HTTP/1.1 100"):
            # The server asked for the body: send it and read the final answer.
            sock.sendall(body)
            rest = first.partition(b"\r\n\r\n")[2]
            answer = read_answer(_Prefixed(sock, rest))  # type: ignore[arg-type]
            return Answer(answer.status, answer.headers, answer.body, (100,))
        return read_answer(_Prefixed(sock, first))  # type: ignore[arg-type]


class _Prefixed:
    """A socket whose first recv returns bytes already read."""

    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        self._sock = sock
        self._prefix = prefix

    def recv(self, size: int) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        return self._sock.recv(size)


def event_body() -> bytes:
    doc = {"event_id": "e-1", "user_id": "u1", "type": "view", "item_id": "sku-1", "ts_ms": NOW_MS - 1000}
    return json.dumps(doc).encode()


def test_expect_100_continue_gets_a_100_then_the_202(collector_port: int) -> None:
    answer = post_expecting_continue(collector_port, event_body())
    assert answer.interim == (100,)
    assert answer.status == 202


def test_expect_100_continue_over_the_body_limit_gets_the_413_without_a_100(collector_port: int) -> None:
    answer = post_expecting_continue(collector_port, b"", declared=1_000_000)
    assert answer.interim == ()
    assert answer.status == 413


@pytest.mark.parametrize("run", ["collector", "lookups"])
def test_the_entrypoints_run_uvicorn_with_the_transport_options(
    run: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    if run == "collector":
        from stream.ingest.collector import run_collector

        run_collector(load_settings({}), CollectorConfig())
    else:
        from click.testing import CliRunner

        from stream.cli.main import main

        result = CliRunner().invoke(main, ["serve-lookups", "--port", "28123"])
        assert result.exit_code == 0, result.output
    [kwargs] = calls
    assert kwargs["http"] == "h11"
    assert kwargs["h11_max_incomplete_event_size"] == H11_MAX_INCOMPLETE_EVENT_SIZE
