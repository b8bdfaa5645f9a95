"""The URL rule every route of the lookups server that reads a user id applies: UTF-8 or a 422."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from fastapi import HTTPException, Request


def require_utf8_url(request: Request, what: str = "the user id") -> None:
    """422 when the URL's path or query string is not UTF-8 once percent-decoded; the fix names
    `what` the client should percent-encode.

    The server decodes such bytes to U+FFFD, so every id holding an invalid byte (``%FF``) would
    read the one user "\ufffd"'s recommendations, and every such query would search "\ufffd".
    """
    for part, raw in (
        ("path", request.scope.get("raw_path", b"")),
        ("query", request.scope.get("query_string", b"")),
    ):
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HTTPException(
                status_code=422,
                detail=(
                    f"the URL's {part} is not UTF-8 once percent-decoded (byte {exc.start}); "
                    f"percent-encode the UTF-8 bytes of {what}"
                ),
            ) from exc
