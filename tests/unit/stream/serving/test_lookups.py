"""Lookups over HTTP for every user id the schema accepts, and when Redis refuses or hangs.

Ids: a fake Redis holds a profile for any id, so a lookup answers ``source: profile`` exactly when
the id reached it intact. Redis down: a closed port (refused) and a listening socket that never
accepts (the kernel completes the handshake, nothing ever answers: a paused or wedged Redis).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from stream.core.errors import InvalidEvent
from stream.core.events import MAX_ID_CHARS, EventLimits, event_from_dict, valid_id
from stream.core.settings import Settings, load_settings
from stream.serving.api import create_lookup_app
from stream.serving.lookups import RecoClient
from stream.serving.search import SearchConfig
from stream.serving.search_service import RedisSignals, SearchService
from tests.support.fakes import FakeCatalogue

FIELD_CASES = Path(__file__).resolve().parents[3] / "support" / "field_cases"
BUDGET_MS = 300


class ProfileForEveryone:
    """The async Redis surface RecoClient reads, with a stored profile for every user id."""

    async def hget(self, key: str, field: str) -> bytes:
        return json.dumps(
            {
                "items": [{"item_id": "sku-1", "score": 0.9, "reason": "because"}],
                "model_version": "m1",
                "window_newest_ts_ms": 1,
                "computed_at_ms": 2,
                "window_newest_event_id": "e-1",
            }
        ).encode()

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    return load_settings({}, model_dir=tmp_path / "no-model", index_dir=tmp_path / "no-index", **changes)


@pytest.fixture
def lookups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(
        RecoClient,
        "from_settings",
        classmethod(lambda cls, s: cls(ProfileForEveryone(), s)),
    )
    with TestClient(create_lookup_app(settings_for(tmp_path))) as client:
        yield client


def path_segment(user_id: str) -> str:
    """The id percent-encoded as one path segment; dots too, or "." and ".." would be read as
    relative path steps and removed (by this client, by browsers and by proxies)."""
    return quote(user_id, safe="").replace(".", "%2E")


def looked_up(client: TestClient, user_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both forms, through httpx's ASGI transport: it decodes the path once, as uvicorn does
    (Starlette's TestClient decodes it twice, so "%252F" would arrive as "/")."""

    async def get(path: str, params: dict[str, str] | None = None) -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lookups") as http:
            return await http.get(path, params=params)

    by_path = asyncio.run(get(f"/v1/users/{path_segment(user_id)}/recommendations"))
    by_query = asyncio.run(get("/v1/recommendations", {"user_id": user_id}))
    assert by_path.status_code == 200, (user_id, by_path.text)
    assert by_query.status_code == 200, (user_id, by_query.text)
    return by_path.json(), by_query.json()


def test_field_case_f02_ids_with_path_characters_are_looked_up(lookups: TestClient) -> None:
    events = json.loads((FIELD_CASES / "f02-user-ids-with-path-characters.json").read_bytes())
    ids = [e["user_id"] for e in events] + [
        "a/../b",
        "=",
        "+",
        "#",
        "?",
        ".",
        "%2F",
        "a b",
        "x/recommendations",
    ]
    assert {"shop-eu/4711", "k3J/9+aQ==", "user?id=7#x", ".."} <= set(ids)
    for user_id in ids:
        for answer in looked_up(lookups, user_id):
            assert (answer["user_id"], answer["source"]) == (user_id, "profile")


def schema_accepts(user_id: str) -> bool:
    doc = {"event_id": "e", "user_id": user_id, "type": "forget", "ts_ms": 1_700_000_000_000}
    try:
        event_from_dict(doc, limits=EventLimits(), now_ms=1_700_000_000_000)
    except InvalidEvent:
        return False
    return True


# The schema's id alphabet: any character but C0 controls and lone surrogates (which
# st.characters leaves out by default; the schema filter would too).
schema_ids = st.text(
    alphabet=st.characters(exclude_characters=[chr(c) for c in range(32)]),
    min_size=1,
    max_size=MAX_ID_CHARS,
).filter(schema_accepts)


@given(user_id=st.one_of(schema_ids, st.sampled_from(["..", ".", "/", "?#", "a/..", "+="])))
@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_every_id_the_schema_accepts_can_be_looked_up(lookups: TestClient, user_id: str) -> None:
    for answer in looked_up(lookups, user_id):
        # The id as events store it: NFC, "42.0" as "42" (stream.core.events.valid_id).
        assert answer["user_id"] == valid_id(user_id, "user_id")
        assert answer["source"] == "profile"


@pytest.mark.parametrize("user_id", ["\u200b", "\ufeff\u2060", "\u3000\u00a0"])
def test_invisible_only_ids_are_a_422(lookups: TestClient, user_id: str) -> None:
    assert lookups.get(f"/v1/users/{path_segment(user_id)}/recommendations").status_code == 422
    assert lookups.get("/v1/recommendations", params={"user_id": user_id}).status_code == 422


# --- Redis refused or hanging (field case f12) ----------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A socket that listens and never accepts: connections open, and no byte ever comes back."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def down_app(tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    catalogue = FakeCatalogue({"a": "acme stapler", "b": "papyrus stapler"})

    def open_fake(settings: Settings, redis: Any) -> SearchService:
        # The real Redis signal reads, against the dead Redis; only the model is a fake.
        return SearchService(
            catalogue.encoder,
            catalogue,
            RedisSignals(redis, settings),
            SearchConfig(),
            redis_budget_ms=settings.lookup_redis_budget_ms,
        )

    monkeypatch.setattr(SearchService, "open", staticmethod(open_fake))
    settings = settings_for(
        tmp_path, redis_url=f"redis://127.0.0.1:{port}/0", lookup_redis_budget_ms=BUDGET_MS
    )
    return TestClient(create_lookup_app(settings))


@pytest.mark.parametrize("failure", ["refused", "hangs"])
def test_redis_down_gives_a_bounded_503_with_retry_after_or_the_query_ranking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hanging_port: int, failure: str
) -> None:
    port = closed_port() if failure == "refused" else hanging_port
    with down_app(tmp_path, port, monkeypatch) as client:
        for path, params in (
            ("/v1/users/fake-user-fg/recommendations", {"k": 2}),
            ("/v1/recommendations", {"user_id": "fake-user-fg"}),
        ):
            started = time.monotonic()
            response = client.get(path, params=params)
            assert time.monotonic() - started < 5 * BUDGET_MS / 1000
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/json"
            assert int(response.headers["retry-after"]) > 0
            assert "Redis" in response.json()["detail"]
            if failure == "hangs":
                assert f"{BUDGET_MS} ms" in response.json()["detail"]

        started = time.monotonic()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert time.monotonic() - started < 5 * BUDGET_MS / 1000

        # Search keeps answering, by the query alone, and says why.
        started = time.monotonic()
        found = client.get("/v1/search", params={"q": "stapler", "user_id": "fake-user-fg"})
        assert time.monotonic() - started < 5 * BUDGET_MS / 1000
        assert found.status_code == 200
        assert (found.json()["personalised"], found.json()["why"]) == (
            False,
            "profile store unreachable; query ranking only",
        )
