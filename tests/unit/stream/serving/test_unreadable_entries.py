"""Stored entries lookups cannot read, and ids whose URL is not UTF-8, on every user-id route.

An entry another writer left (corrupt bytes, an older payload format, missing fields, a key of
another Redis type) is not an outage: the answer is the popular fallback (recommendations) or
"nothing stored" (console), with `why` naming the cause, one warning naming the key, and a count
in ``/metrics``; never a 500, and never a 503 that asks for a retry that cannot help.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ResponseError

from stream.core.records import Recommendation, UserProfile
from stream.core.settings import Settings, load_settings
from stream.redis.activity import RECENT_KIND
from stream.redis.reco_store import FORGOTTEN_KIND, RECO_KIND, popular_key, read_reco_payload
from stream.serving import lookups
from stream.serving.api import create_lookup_app
from stream.serving.lookups import RecoClient
from stream.serving.search_service import RedisSignals

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
USER = "u-1"
PAYLOAD = {
    "user_id": USER,
    "items": [{"item_id": "sku-9", "score": 1.2, "reason": "because you viewed sku-1"}],
    "model_version": "m1",
    "window_newest_ts_ms": 1_000,
    "window_newest_event_id": "e-7",
    "window_newest_received_ms": 1_000,
    "computed_at_ms": 1_500,
    "source": "profile",
}


class TypedStore:
    """An in-memory Redis of typed keys: reading a key as another type is WRONGTYPE, as in Redis."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, Any]] = {}
        self.read: list[str] = []

    def _value(self, key: str, kind: str) -> Any:
        self.read.append(key)
        if key not in self.keys:
            return None
        found, value = self.keys[key]
        if found != kind:
            raise ResponseError(WRONGTYPE)
        return value

    async def hget(self, key: str, field: str) -> Any:
        value = self._value(key, "hash")
        return None if value is None else value.get(field)

    async def get(self, key: str) -> Any:
        return self._value(key, "string")

    async def lrange(self, key: str, start: int, end: int) -> list[Any]:
        return list(self._value(key, "list") or [])

    async def zrevrange(self, key: str, start: int, end: int, withscores: bool = False) -> list[Any]:
        ranked = sorted((self._value(key, "zset") or {}).items(), key=lambda kv: -kv[1])
        return ranked[start : end + 1]

    def pipeline(self, transaction: bool = True) -> TypedPipeline:
        return TypedPipeline(self)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


class TypedPipeline:
    """redis-py's pipeline: errors raised at execute, or returned in place with raise_on_error=False."""

    def __init__(self, store: TypedStore) -> None:
        self.store = store
        self.calls: list[Any] = []

    def hget(self, key: str, field: str) -> None:
        self.calls.append(self.store.hget(key, field))

    def lrange(self, key: str, start: int, end: int) -> None:
        self.calls.append(self.store.lrange(key, start, end))

    def get(self, key: str) -> None:
        self.calls.append(self.store.get(key))

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        results: list[Any] = []
        for call in self.calls:
            try:
                results.append(await call)
            except ResponseError as exc:
                results.append(exc)
        errors = [r for r in results if isinstance(r, Exception)]
        if raise_on_error and errors:
            raise errors[0]
        return results


def settings_for(tmp_path: Path) -> Settings:
    return load_settings({}, model_dir=tmp_path / "no-model", index_dir=tmp_path / "no-index")


@pytest.fixture
def store(tmp_path: Path) -> TypedStore:
    store = TypedStore()
    store.keys[popular_key(settings_for(tmp_path))] = ("zset", {b"sku-1": 4.0, b"sku-2": 2.0})
    return store


@pytest.fixture
def app(tmp_path: Path, store: TypedStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(RecoClient, "from_settings", classmethod(lambda cls, s: cls(store, s)))
    with TestClient(create_lookup_app(settings_for(tmp_path)), raise_server_exceptions=False) as client:
        yield client


def reco_key(tmp_path: Path, user_id: str = USER) -> str:
    return settings_for(tmp_path).redis_key(RECO_KIND, user_id)


UNREADABLE_RECO = {
    "not JSON": ("hash", {"json": b"not json"}),
    "not UTF-8": ("hash", {"json": b"\xff\xfe"}),
    "older format": ("hash", {"json": json.dumps({"items": [["sku-1", 0.5]]}).encode()}),
    "fields missing": ("hash", {"json": json.dumps({"items": []}).encode()}),
    "no model_version": ("hash", {"json": json.dumps({**PAYLOAD, "model_version": None}).encode()}),
    "score as text": (
        "hash",
        {"json": json.dumps({**PAYLOAD, "items": [{"item_id": "a", "score": "1", "reason": None}]}).encode()},
    ),
    "a JSON list": ("hash", {"json": b"[1, 2]"}),
    "a string key (WRONGTYPE)": ("string", b"x"),
}


def unreadable_count(client: TestClient, kind: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if (
                sample.name == "profilestream_lookups_unreadable_entries_total"
                and sample.labels["kind"] == kind
            ):
                return float(sample.value)
    return 0.0


def warnings_naming(caplog: pytest.LogCaptureFixture, key: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and key in r.getMessage()]


@pytest.mark.parametrize("entry", UNREADABLE_RECO.values(), ids=UNREADABLE_RECO.keys())
def test_an_unreadable_reco_entry_answers_the_popular_fallback_and_says_why(
    app: TestClient, store: TypedStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, entry: Any
) -> None:
    store.keys[reco_key(tmp_path)] = entry
    with caplog.at_level(logging.WARNING, logger="stream.serving.lookups"):
        response = app.get(f"/v1/users/{USER}/recommendations?k=2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "popular"
    assert [i["item_id"] for i in body["items"]] == ["sku-1", "sku-2"]
    assert "stored reco entry unreadable" in body["why"]
    assert len(warnings_naming(caplog, reco_key(tmp_path))) == 1
    assert unreadable_count(app, RECO_KIND) == 1


@pytest.mark.parametrize("entry", UNREADABLE_RECO.values(), ids=UNREADABLE_RECO.keys())
def test_an_unreadable_reco_entry_shows_nothing_stored_in_the_console(
    app: TestClient, store: TypedStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, entry: Any
) -> None:
    store.keys[reco_key(tmp_path)] = entry
    with caplog.at_level(logging.WARNING, logger="stream.serving.lookups"):
        response = app.get(f"/v1/users/{USER}/profile")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "none" and body["items"] == []
    assert "stored reco entry unreadable" in body["why"]
    assert len(warnings_naming(caplog, reco_key(tmp_path))) == 1
    assert unreadable_count(app, RECO_KIND) == 1


def test_the_payload_the_worker_writes_is_one_readers_accept() -> None:
    # The seam between writer and readers: a field renamed on one side fails here, not in serving.
    profile = UserProfile(
        user_id=USER,
        items=(Recommendation("sku-1", np.float32(0.8123456).item(), None), Recommendation("sku-2", 2, "r")),
        vector=np.zeros(4, dtype=np.float32),
        model_version="m",
        window_version="w",
        window_newest_ts_ms=10,
        window_newest_event_id="e1",
    )
    stored = read_reco_payload(orjson.dumps(profile.payload(computed_at_ms=20)))
    assert [(i.item_id, i.reason) for i in stored.items] == [("sku-1", None), ("sku-2", "r")]
    assert (stored.model_version, stored.window_newest_ts_ms, stored.computed_at_ms) == ("m", 10, 20)
    assert stored.window_newest_event_id == "e1"


def test_a_readable_entry_still_answers_the_profile(
    app: TestClient, store: TypedStore, tmp_path: Path
) -> None:
    store.keys[reco_key(tmp_path)] = ("hash", {"json": json.dumps(PAYLOAD).encode()})
    body = app.get(f"/v1/users/{USER}/recommendations").json()
    assert body["source"] == "profile" and body["why"] is None
    assert body["items"] == [{"item_id": "sku-9", "score": 1.2, "reason": "because you viewed sku-1"}]
    profile = app.get(f"/v1/users/{USER}/profile").json()
    assert profile["source"] == "profile" and profile["why"] is None and profile["freshness_ms"] == 500
    assert unreadable_count(app, RECO_KIND) == 0


def test_an_unknown_user_gets_the_fallback_with_no_warning(
    app: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="stream.serving.lookups"):
        body = app.get("/v1/users/nobody/recommendations").json()
    assert body["source"] == "popular" and body["why"] == lookups.NO_PROFILE
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_console_reads_what_it_can_when_recent_and_forgotten_are_unreadable(
    app: TestClient, store: TypedStore, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    store.keys[reco_key(tmp_path)] = ("hash", {"json": json.dumps(PAYLOAD).encode()})
    store.keys[settings.redis_key(RECENT_KIND, USER)] = ("string", b"x")
    store.keys[settings.redis_key(FORGOTTEN_KIND, USER)] = ("string", b"yesterday")
    response = app.get(f"/v1/users/{USER}/profile")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "profile" and body["window"] == [] and body["forgotten_ts_ms"] is None
    assert (
        "stored recent entry unreadable" in body["why"] and "stored forgotten entry unreadable" in body["why"]
    )
    assert unreadable_count(app, RECENT_KIND) == 1 and unreadable_count(app, FORGOTTEN_KIND) == 1


def view_line(event_id: str, ts_ms: int) -> bytes:
    return json.dumps({"event_id": event_id, "type": "view", "ts_ms": ts_ms, "item_id": "sku-1"}).encode()


def test_an_unreadable_forget_tombstone_hides_all_activity_in_the_console(
    app: TestClient, store: TypedStore, tmp_path: Path
) -> None:
    # The user asked to be forgotten at a time we cannot read: showing their events could show
    # ones from before the forget.
    settings = settings_for(tmp_path)
    store.keys[settings.redis_key(RECENT_KIND, USER)] = (
        "list",
        [view_line("e1", 1_000), view_line("e2", 2_000)],
    )
    assert len(app.get(f"/v1/users/{USER}/profile").json()["window"]) == 2
    store.keys[settings.redis_key(FORGOTTEN_KIND, USER)] = ("string", b"\xff")
    response = app.get(f"/v1/users/{USER}/profile")
    assert response.status_code == 200, response.text
    assert response.json()["window"] == []
    assert "stored forgotten entry unreadable" in response.json()["why"]


def test_search_signals_with_an_unreadable_forget_tombstone_use_no_activity(
    store: TypedStore, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    store.keys[settings.redis_key(RECENT_KIND, USER)] = ("list", [view_line("e1", 1_000)])
    store.keys[settings.redis_key(FORGOTTEN_KIND, USER)] = ("string", b"yesterday")
    signals = asyncio.run(RedisSignals(store, settings).read(USER))  # type: ignore[arg-type]
    assert signals is not None and signals.activity and signals.usable_activity() == []


def test_an_unreadable_popular_set_leaves_the_fallback_empty_not_failed(
    app: TestClient, store: TypedStore, tmp_path: Path
) -> None:
    store.keys[popular_key(settings_for(tmp_path))] = ("hash", {"x": b"1"})
    response = app.get("/v1/users/nobody/recommendations")
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []
    assert "stored popular entry unreadable" in response.json()["why"]


def test_a_popular_member_that_is_not_utf8_is_skipped(
    app: TestClient, store: TypedStore, tmp_path: Path
) -> None:
    store.keys[popular_key(settings_for(tmp_path))] = ("zset", {b"\xff": 9.0, b"sku-1": 4.0, b"sku-2": 2.0})
    response = app.get("/v1/users/nobody/recommendations?k=3")
    assert response.status_code == 200, response.text
    assert [(i["item_id"], i["score"]) for i in response.json()["items"]] == [("sku-1", 1.0), ("sku-2", 0.5)]


def test_other_redis_errors_are_still_an_outage(app: TestClient, store: TypedStore) -> None:
    async def refused(key: str, field: str) -> None:
        raise ResponseError("LOADING Redis is loading the dataset in memory")

    store.hget = refused  # type: ignore[method-assign]
    response = app.get(f"/v1/users/{USER}/recommendations")
    assert response.status_code == 503
    assert response.headers["Retry-After"]


def test_newest_event_id_of_an_unreadable_entry_is_none(store: TypedStore, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    client = RecoClient(store, settings)  # type: ignore[arg-type]
    store.keys[reco_key(tmp_path)] = ("hash", {"json": b"{"})
    assert asyncio.run(client.newest_event_id(USER)) is None
    store.keys[reco_key(tmp_path)] = ("hash", {"json": json.dumps(PAYLOAD).encode()})
    assert asyncio.run(client.newest_event_id(USER)) == "e-7"


def test_recent_activity_skips_lines_it_cannot_read(
    store: TypedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path)
    monkeypatch.setattr(lookups, "redis_async", lambda s: store)
    good = json.dumps({"event_id": "e1", "type": "view"}).encode()
    store.keys[settings.redis_key(RECENT_KIND, USER)] = ("list", [b"\xff", good, b"[1]", b"nope"])
    assert asyncio.run(lookups.recent_activity(settings, USER)) == [{"event_id": "e1", "type": "view"}]
    store.keys[settings.redis_key(RECENT_KIND, USER)] = ("string", b"x")
    assert asyncio.run(lookups.recent_activity(settings, USER)) == []


# --- one URL rule for every route that takes a user id in the path --------------------------------


def user_id_routes(client: TestClient) -> list[str]:
    """Every documented route with the user id in its path (the OpenAPI schema lists the routes
    of included routers too, whatever FastAPI's internal route objects look like)."""
    return sorted(path for path in client.app.openapi()["paths"] if "{user_id}" in path)  # type: ignore[attr-defined]


def test_the_user_id_routes_are_the_ones_expected(app: TestClient) -> None:
    # Guards the test below against passing vacuously: a new user-id route joins it by itself.
    assert user_id_routes(app) == [
        "/v1/users/{user_id}/profile",
        "/v1/users/{user_id}/recommendations",
    ]


@pytest.mark.parametrize("encoded", ["%FF", "caf%E9"])
def test_every_user_id_route_refuses_an_id_that_is_not_utf8(
    app: TestClient, store: TypedStore, encoded: str
) -> None:
    for template in user_id_routes(app):
        store.read.clear()
        response = app.get(template.replace("{user_id}", encoded))
        assert response.status_code == 422, (template, response.text)
        assert "not UTF-8 once percent-decoded" in response.json()["detail"], template
        assert store.read == [], template  # refused before any Redis read


def test_a_hot_users_unreadable_entry_is_counted_every_time_but_logged_once_per_interval(
    app: TestClient, store: TypedStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store.keys[reco_key(tmp_path)] = UNREADABLE_RECO["not JSON"]
    with caplog.at_level(logging.WARNING, logger="stream.serving.lookups"):
        for _ in range(50):
            assert app.get(f"/v1/users/{USER}/recommendations").status_code == 200
    assert unreadable_count(app, RECO_KIND) == 50
    assert len(warnings_naming(caplog, reco_key(tmp_path))) == 1
