"""The lookup app's answers at the HTTP edges, through the ASGI app: URL and header bounds (exact
at the limit) and HEAD on every GET route."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from stream.core.settings import load_settings
from stream.serving.api import create_lookup_app
from stream.web.limits import MAX_HEADER_BYTES, MAX_URL_BYTES, check_request_size


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(
        {},
        model_dir=tmp_path / "no-model",
        index_dir=tmp_path / "no-index",
        redis_url="redis://127.0.0.1:1/0",
    )
    with TestClient(create_lookup_app(settings)) as test_client:
        yield test_client


def url_of(path: str, size: int) -> str:
    """`path` with a query string padding the URL (path, "?" and query) to `size` bytes."""
    return path + "?q=" + "x" * (size - len(path) - 3)


@pytest.mark.parametrize(
    "path", ["/v1/search", "/v1/recommendations", "/v1/users/u1/recommendations", "/healthz"]
)
def test_a_url_at_the_bound_passes_and_one_byte_over_is_a_414(client: TestClient, path: str) -> None:
    assert client.get(url_of(path, MAX_URL_BYTES)).status_code != 414
    over = client.get(url_of(path, MAX_URL_BYTES + 1))
    assert over.status_code == 414
    assert over.json()["detail"].startswith(f"the URL is {MAX_URL_BYTES + 1} bytes, over the limit")


def test_the_bounds_count_bytes_as_sent() -> None:
    scope = {"type": "http", "raw_path": b"/a", "query_string": b"", "headers": [(b"x", b"y" * 10)]}
    assert check_request_size(scope, max_url_bytes=2, max_header_bytes=15) is None
    # "/a?q": the "?" counts.
    assert check_request_size({**scope, "query_string": b"q"}, max_url_bytes=4, max_header_bytes=15) is None
    over_url = check_request_size({**scope, "query_string": b"q"}, max_url_bytes=3, max_header_bytes=15)
    assert over_url is not None and (over_url.status, over_url.part) == (414, "URL")
    over_headers = check_request_size(scope, max_url_bytes=2, max_header_bytes=14)
    assert over_headers is not None and (over_headers.status, over_headers.part) == (431, "headers")


def test_headers_over_the_bound_are_a_431(client: TestClient) -> None:
    response = client.get("/healthz", headers={"cookie": "c=" + "v" * MAX_HEADER_BYTES})
    assert response.status_code == 431
    assert f"over the limit of {MAX_HEADER_BYTES} bytes" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/healthz", 200),
        ("/console", 200),
        ("/metrics", 200),
        ("/v1/search?q=pens", 503),
        ("/v1/search", 422),
    ],
)
def test_head_answers_as_get_without_the_body(client: TestClient, path: str, status: int) -> None:
    get = client.get(path)
    head = client.head(path)
    assert (get.status_code, head.status_code) == (status, status)
    assert head.content == b""
    assert head.headers.get("content-type") == get.headers.get("content-type")


@pytest.mark.parametrize("raw", ["\u200bshoes", "shoes\ufeff", " \u2060shoes\u200b "])
def test_a_search_query_is_normalised_as_a_tracked_query(raw: str) -> None:
    from stream.core.events import normalise_query
    from stream.serving.search import clean_query

    assert clean_query(raw) == normalise_query(raw) == "shoes"
