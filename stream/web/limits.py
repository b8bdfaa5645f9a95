"""What the HTTP services (collector, lookups) answer at the transport's edges: a URL or headers
over their bounds, and ``HEAD``.

uvicorn's HTTP/1.1 parser (h11) keeps at most ``h11_max_incomplete_event_size`` bytes of a request
line and headers that have not fully arrived (16 KiB by default); past that it writes a plain-text
400 and closes the socket at once, and a client still sending its request (a 20 KB URL split into
TCP segments) reads a connection reset, not an answer. So the services run uvicorn with
`uvicorn_options` (that buffer at H11_MAX_INCOMPLETE_EVENT_SIZE, above the bounds below) and the
app answers whatever is over the bounds itself, before routing or any other work: 414 for a URL
over MAX_URL_BYTES, 431 for headers over MAX_HEADER_BYTES, each with a JSON body naming the limit.

``HEAD`` is answered as ``GET`` without the body (RFC 9110 section 9.3.2: health checkers, CDNs
and ``curl -I`` send it); FastAPI routes declared for GET alone would answer 405.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stream.core.events import MAX_ID_CHARS, MAX_QUERY_CHARS

# A URL (path and query string, as sent) holding the longest legal id and a query long enough to be
# cut to MAX_QUERY_CHARS, every character a 4-byte UTF-8 sequence percent-encoded (12 bytes), fits
# with room to spare: 12 * (128 + 512) = 7,680 bytes. Browsers and CDNs accept 8-32 KiB URLs.
MAX_URL_BYTES = 16 * 1024
# All header names and values: cookies of a shop's own domain can take several KiB.
MAX_HEADER_BYTES = 32 * 1024
# uvicorn's buffer for a request line and headers still arriving: over MAX_URL_BYTES plus
# MAX_HEADER_BYTES, so that every request the app refuses reaches the app. Memory per connection
# stays bounded by it.
H11_MAX_INCOMPLETE_EVENT_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class OverLimit:
    """Why a request is refused before any work: its HTTP status, the part (``URL`` or
    ``headers``) and the reason naming the limit."""

    status: int
    part: str
    reason: str


def uvicorn_options() -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` that let over-long requests reach the app.

    The h11 parser is named explicitly: with httptools installed uvicorn would pick that one, whose
    limits the buffer size below does not set.
    """
    return {"http": "h11", "h11_max_incomplete_event_size": H11_MAX_INCOMPLETE_EVENT_SIZE}


def check_request_size(
    scope: Scope, max_url_bytes: int = MAX_URL_BYTES, max_header_bytes: int = MAX_HEADER_BYTES
) -> OverLimit | None:
    """None when the request's URL and headers are within bounds (bytes, as sent), else why not."""
    raw_path = scope.get("raw_path") or str(scope.get("path", "")).encode()
    query = scope.get("query_string") or b""
    url_bytes = len(raw_path) + (len(query) + 1 if query else 0)
    if url_bytes > max_url_bytes:
        return OverLimit(
            414,
            "URL",
            f"the URL is {url_bytes} bytes, over the limit of {max_url_bytes} bytes; shorten it (ids "
            f"are at most {MAX_ID_CHARS} characters and queries are cut to {MAX_QUERY_CHARS}: a longer "
            "URL carries nothing more)",
        )
    header_bytes = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
    if header_bytes > max_header_bytes:
        return OverLimit(
            431,
            "headers",
            f"the request headers are {header_bytes} bytes, over the limit of {max_header_bytes} bytes; "
            "send fewer or smaller headers (cookies included)",
        )
    return None


class HttpEdges:
    """ASGI middleware: refuses requests over the URL and header bounds with 414/431 and a JSON
    body made by `render`, and answers ``HEAD`` as ``GET`` without the body."""

    def __init__(
        self,
        app: ASGIApp,
        render: Callable[[OverLimit], dict[str, Any]],
        max_url_bytes: int = MAX_URL_BYTES,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self._app = app
        self._render = render
        self._max_url_bytes = max_url_bytes
        self._max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        over = check_request_size(scope, self._max_url_bytes, self._max_header_bytes)
        if over is not None:
            response = JSONResponse(self._render(over), status_code=over.status)
            await response(scope, receive, _without_body(send) if scope["method"] == "HEAD" else send)
            return
        if scope["method"] != "HEAD":
            await self._app(scope, receive, send)
            return
        # A copy: the server reads the method from its own scope to leave the body out as well.
        await self._app({**scope, "method": "GET"}, receive, _without_body(send))


def _without_body(send: Send) -> Send:
    """`send` with every body chunk emptied; the headers (Content-Length included) stay as GET's."""

    async def send_headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_headers_only
