"""The collector as browsers, SDKs and proxies talk to it: declared charsets, Content-Encoding lists
and repeated headers, empty and chunked bodies, HEAD, and URLs or headers over their bounds."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from stream.core.settings import Settings, load_settings
from stream.ingest.body import MAX_CONTENT_CODINGS, decode_charset
from stream.web.limits import MAX_HEADER_BYTES, MAX_URL_BYTES
from tests.support.collector_app import collector_app
from tests.support.fakes import FakeProducer

NOW_MS = 1_764_000_000_000
QUERY = "café crème, 5 £, naïve €"  # é, è, ï, £ and € differ between the charsets below


def search_event(n: int = 0, query: str = QUERY) -> dict[str, Any]:
    return {"event_id": f"e-{n}", "user_id": "u1", "type": "search", "query": query, "ts_ms": NOW_MS - 1000}


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, events_topic="t.events")


def make_app(settings: Settings, producer: FakeProducer, **config: Any) -> Any:
    return collector_app(settings, producer, NOW_MS, **config)


def request(
    app: Any,
    content: bytes | AsyncIterator[bytes] = b"",
    headers: list[tuple[str, str]] | None = None,
    method: str = "POST",
    url: str = "/v1/events",
) -> httpx.Response:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as client:
            return await client.request(method, url, content=content, headers=headers or [])

    return asyncio.run(call())


def produced(producer: FakeProducer) -> list[dict[str, Any]]:
    return [json.loads(v or b"") for _, _, v in producer.sent]


def reason(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["reason"])


# --- declared charsets ---------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", ["application/json", "text/plain"])
@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("iso-8859-1", "latin-1"),
        ("ISO-8859-1", "latin-1"),
        ("latin1", "latin-1"),
        ("windows-1252", "cp1252"),
        ('"windows-1252"', "cp1252"),
        ("iso-8859-15", "iso8859-15"),
        ("utf-16", "utf-16"),
        ("utf-16le", "utf-16-le"),
        ("UTF-16BE", "utf-16-be"),
        ("utf-32", "utf-32"),
        ("utf-8", "utf-8"),
        ("utf-8", "utf-8-sig"),  # a BOM is read away
        ("utf-16le", "utf-16"),  # little-endian with its BOM
    ],
)
def test_a_declared_charset_is_honoured(settings: Settings, media_type: str, label: str, codec: str) -> None:
    producer = FakeProducer()
    # ISO-8859-1 has no euro sign.
    query = QUERY if codec != "latin-1" else QUERY.replace("€", "¤")
    body = json.dumps([search_event(0, query), search_event(1, query)], ensure_ascii=False).encode(codec)
    response = request(
        make_app(settings, producer), body, [("content-type", f"{media_type}; charset={label}")]
    )
    assert response.status_code == 202, response.text
    assert [e["query"] for e in produced(producer)] == [query, query]


def test_a_charset_applies_to_the_decompressed_body(settings: Settings) -> None:
    producer = FakeProducer()
    body = gzip.compress(json.dumps(search_event(), ensure_ascii=False).encode("cp1252"))
    headers = [("content-type", "text/plain;charset=windows-1252"), ("content-encoding", "gzip")]
    assert request(make_app(settings, producer), body, headers).status_code == 202
    assert [e["query"] for e in produced(producer)] == [QUERY]


@pytest.mark.parametrize(
    "charset", ["klingon", "x-user-defined", "base64", "rot13", "unicode_escape", "idna", ""]
)
def test_an_unknown_charset_is_a_415_naming_the_fix(settings: Settings, charset: str) -> None:
    producer = FakeProducer()
    response = request(
        make_app(settings, producer),
        json.dumps(search_event()).encode(),
        [("content-type", f"application/json; charset={charset}")],
    )
    assert response.status_code == 415
    (error,) = response.json()["errors"]
    assert error["field"] == "Content-Type"
    assert "send the body as UTF-8" in error["reason"]
    assert producer.sent == []


@pytest.mark.parametrize(
    ("charset", "body"),
    [
        ("utf-8", json.dumps(search_event()).encode()[:-2] + b"\xff\xfe}"),
        ("us-ascii", json.dumps(search_event(), ensure_ascii=False).encode()),
        ("windows-1252", b'{"query": "\x81"}'),  # 0x81 is unassigned in windows-1252
        ("utf-16", b'{"x": 1} '),  # odd length: not UTF-16
        ("utf-16le", "[\ud800]".encode("utf-16-le", "surrogatepass")),  # a lone surrogate
        ("shift_jis", b'{"q": "\x81"}'),  # a lead byte without its trail byte
    ],
)
def test_a_body_invalid_in_its_declared_charset_is_a_400_naming_it(
    settings: Settings, charset: str, body: bytes
) -> None:
    producer = FakeProducer()
    response = request(
        make_app(settings, producer), body, [("content-type", f"application/json; charset={charset}")]
    )
    assert response.status_code == 400, response.text
    text = reason(response)
    assert "UTF-8" in text
    if charset != "utf-8":  # UTF-8 is JSON's own: its error is the parser's ("not UTF-8 text")
        assert f"valid {decode_charset_name(charset)} text" in text
    assert producer.sent == []


def decode_charset_name(label: str) -> str:
    import codecs

    return codecs.lookup(label).name


def test_the_size_limit_applies_to_the_body_once_in_utf8() -> None:
    # 600 "€" are 600 bytes of windows-1252 and 1,800 of UTF-8.
    body = ("€" * 600).encode("cp1252")
    rejected = decode_charset(body, "text/plain; charset=windows-1252", 1000)
    assert not isinstance(rejected, bytes)
    assert rejected.status == 413
    assert "over the limit of 1000 bytes" in rejected.errors[0].reason
    assert decode_charset(body, "text/plain; charset=windows-1252", 1800) == ("€" * 600).encode()


# --- Content-Encoding lists and repeated headers -------------------------------------------------


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def applied(*codings: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """The codings applied in the order given (the order Content-Encoding lists them)."""

    def encode(data: bytes) -> bytes:
        for coding in codings:
            data = coding(data)
        return data

    return encode


@pytest.mark.parametrize(
    ("headers", "encode"),
    [
        ([("content-encoding", "gzip"), ("content-encoding", "gzip")], applied(gzip.compress, gzip.compress)),
        ([("content-encoding", "gzip, gzip")], applied(gzip.compress, gzip.compress)),
        ([("content-encoding", "identity, gzip")], applied(gzip.compress)),
        ([("content-encoding", "identity"), ("content-encoding", "gzip")], applied(gzip.compress)),
        ([("content-encoding", "deflate, gzip")], applied(zlib.compress, gzip.compress)),
        (
            [("content-encoding", "deflate"), ("content-encoding", "gzip")],
            applied(zlib.compress, gzip.compress),
        ),
        ([("content-encoding", "gzip,deflate")], applied(gzip.compress, deflate_raw)),
        ([("content-encoding", " GZIP ,  Identity ")], applied(gzip.compress)),
        ([("content-encoding", "identity, identity, identity, gzip")], applied(gzip.compress)),
        ([("content-encoding", "")], applied()),
    ],
)
def test_content_codings_are_undone_in_reverse_order_across_headers(
    settings: Settings, headers: list[tuple[str, str]], encode: Callable[[bytes], bytes]
) -> None:
    producer = FakeProducer()
    body = json.dumps([search_event(0), search_event(1)]).encode()
    response = request(
        make_app(settings, producer), encode(body), [("content-type", "application/json"), *headers]
    )
    assert response.status_code == 202, response.text
    assert [e["event_id"] for e in produced(producer)] == ["e-0", "e-1"]


@pytest.mark.parametrize(
    "headers",
    [
        [("content-encoding", "gzip, gzip, gzip")],
        [("content-encoding", "gzip"), ("content-encoding", "gzip"), ("content-encoding", "deflate")],
        [("content-encoding", "deflate, identity, gzip, gzip")],
    ],
)
def test_more_layers_than_the_bound_are_a_415_naming_it(
    settings: Settings, headers: list[tuple[str, str]]
) -> None:
    producer = FakeProducer()
    body = gzip.compress(gzip.compress(gzip.compress(b"[]")))
    response = request(make_app(settings, producer), body, [("content-type", "application/json"), *headers])
    assert response.status_code == 415
    assert f"over the limit of {MAX_CONTENT_CODINGS}" in reason(response)
    assert response.json()["errors"][0]["field"] == "Content-Encoding"


@pytest.mark.parametrize(
    "headers",
    [
        [("content-encoding", "gzip, br")],
        [("content-encoding", "br, gzip")],
        [("content-encoding", "gzip"), ("content-encoding", "zstd")],
        [("content-encoding", "compress"), ("content-encoding", "identity")],
        [("content-encoding", "gzip, gzip, gzip, br")],  # the unknown coding is named first
    ],
)
def test_an_unknown_coding_anywhere_is_a_415_naming_the_supported_ones(
    settings: Settings, headers: list[tuple[str, str]]
) -> None:
    producer = FakeProducer()
    response = request(
        make_app(settings, producer), gzip.compress(b"[]"), [("content-type", "application/json"), *headers]
    )
    assert response.status_code == 415
    assert "gzip, deflate, identity" in reason(response)
    assert producer.sent == []


BOMB_TEXT = b"[" + b" " * 5_000_000 + b"]"


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        # The outer layer is small; the inner one is a bomb.
        pytest.param(gzip.compress(gzip.compress(BOMB_TEXT)), "gzip, gzip", id="inner"),
        # The outer layer inflates to 5 MB of stored (level 0) gzip data.
        pytest.param(gzip.compress(gzip.compress(BOMB_TEXT, 0)), "gzip, gzip", id="outer"),
        pytest.param(gzip.compress(zlib.compress(BOMB_TEXT)), "deflate, gzip", id="inner-deflate"),
    ],
)
def test_each_layer_is_bounded_by_the_decompressed_size_limit(
    settings: Settings, body: bytes, encoding: str
) -> None:
    assert len(body) < 65_536
    producer = FakeProducer()
    headers = [("content-type", "application/json"), ("content-encoding", encoding)]
    response = request(make_app(settings, producer, max_body_bytes=65_536), body, headers)
    assert response.status_code == 413
    assert "over the limit of 65536 bytes" in reason(response)
    assert producer.sent == []


# --- empty and chunked bodies, HEAD ---------------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "gzip", "deflate", "identity", "gzip, gzip"])
def test_an_empty_body_is_a_400_whatever_its_encoding_label(settings: Settings, encoding: str | None) -> None:
    headers = [("content-type", "application/json")] + ([("content-encoding", encoding)] if encoding else [])
    response = request(make_app(settings, FakeProducer()), b"", headers)
    assert response.status_code == 400
    assert "body is empty" in reason(response)


def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    return gen()


@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_a_chunked_body_without_content_length_is_read(settings: Settings, encoding: str) -> None:
    producer = FakeProducer()
    body = json.dumps([search_event(n) for n in range(20)]).encode()
    body = gzip.compress(body) if encoding else body
    headers = [("content-type", "application/json")] + ([("content-encoding", encoding)] if encoding else [])
    response = request(make_app(settings, producer), chunks(body, 100), headers)
    assert response.status_code == 202, response.text
    assert len(producer.sent) == 20


def test_a_chunked_body_over_the_limit_is_a_413(settings: Settings) -> None:
    producer = FakeProducer()
    body = json.dumps([search_event(n) for n in range(200)]).encode()
    response = request(
        make_app(settings, producer, max_body_bytes=4096),
        chunks(body, 1000),
        [("content-type", "application/json")],
    )
    assert response.status_code == 413
    assert producer.sent == []


@pytest.mark.parametrize(("path", "status"), [("/healthz", 200), ("/static/profilestream.js", 200)])
def test_head_is_answered_as_get_without_the_body(settings: Settings, path: str, status: int) -> None:
    app = make_app(settings, FakeProducer())
    head = request(app, method="HEAD", url=path)
    get = request(app, method="GET", url=path)
    assert (head.status_code, get.status_code) == (status, status)
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))


# --- URL and headers over their bounds ------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/v1/events?" + "x" * MAX_URL_BYTES,
        "/v1/" + "e" * MAX_URL_BYTES,
        "/v1/events?writeKey=" + "%41" * 6000,
    ],
)
def test_a_url_over_the_bound_is_a_414_with_a_json_body_naming_it(settings: Settings, url: str) -> None:
    producer = FakeProducer()
    response = request(
        make_app(settings, producer),
        json.dumps(search_event()).encode(),
        [("content-type", "application/json")],
        url=url,
    )
    assert response.status_code == 414
    (error,) = response.json()["errors"]
    assert error["field"] == "URL"
    assert f"over the limit of {MAX_URL_BYTES} bytes" in error["reason"]
    assert producer.sent == []


def test_a_url_under_the_bound_reaches_the_route(settings: Settings) -> None:
    producer = FakeProducer()
    url = "/v1/events?pad=" + "x" * (MAX_URL_BYTES - 100)
    response = request(
        make_app(settings, producer),
        json.dumps(search_event()).encode(),
        [("content-type", "application/json")],
        url=url,
    )
    assert response.status_code == 202


def test_headers_over_the_bound_are_a_431_naming_it(settings: Settings) -> None:
    producer = FakeProducer()
    cookies = [("cookie", f"c{n}=" + "v" * 4000) for n in range(MAX_HEADER_BYTES // 4000 + 1)]
    response = request(
        make_app(settings, producer),
        json.dumps(search_event()).encode(),
        [("content-type", "application/json"), *cookies],
    )
    assert response.status_code == 431
    assert response.json()["errors"][0]["field"] == "headers"
    assert f"over the limit of {MAX_HEADER_BYTES} bytes" in reason(response)
    assert producer.sent == []


def test_a_cross_origin_page_can_read_a_414(settings: Settings) -> None:
    app = make_app(settings, FakeProducer(), cors_origins=("https://shop.example",))
    response = request(
        app,
        b"[]",
        [("content-type", "text/plain"), ("origin", "https://shop.example")],
        url="/v1/events?" + "x" * MAX_URL_BYTES,
    )
    assert response.status_code == 414
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
