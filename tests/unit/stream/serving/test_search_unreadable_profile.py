"""Search over a user whose stored profile keys (emb, recent, forgotten) cannot be read.

Redis answered, so this is no outage: search answers the query-only ranking with `personalised`
false and a `why` saying the stored profile could not be read (never "profile store
unreachable"), logs one warning naming the key and cause, counts it in
``profilestream_lookups_unreadable_entries_total``, and never answers a null or NaN score.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from redis.exceptions import ResponseError

from stream.core.settings import Settings
from stream.redis.activity import RECENT_KIND
from stream.redis.reco_store import EMB_KIND, FORGOTTEN_KIND
from stream.serving.api import create_lookup_app
from stream.serving.lookups import RecoClient
from stream.serving.search import SearchConfig, UserSignals
from stream.serving.search_service import RedisSignals, SearchService
from tests.support.fakes import DIM, FakeCatalogue
from tests.unit.stream.serving.test_unreadable_entries import (
    USER,
    TypedStore,
    settings_for,
    unreadable_count,
    view_line,
    warnings_naming,
)

TITLES = {"acme-stapler": "acme stapler", "tidy-stapler": "tidy stapler", "acme-pens": "acme gel pens"}
LOGGER = "stream.serving.search_service"


def f32(values: Any) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def one_nan() -> bytes:
    vector = np.full(DIM, 1 / math.sqrt(DIM), dtype="<f4")
    vector[3] = np.nan
    return vector.tobytes()


UNREADABLE_EMB = {
    "all NaN": ("string", f32(np.full(DIM, np.nan))),
    "all inf": ("string", f32(np.full(DIM, np.inf))),
    "one NaN": ("string", one_nan()),
    "-inf": ("string", f32(np.full(DIM, -np.inf))),
    "another width": ("string", f32(np.ones(DIM * 2) / math.sqrt(DIM * 2))),
    "not float32 (5 bytes)": ("string", b"\x00" * 5),
    "empty": ("string", b""),
    "a hash (WRONGTYPE)": ("hash", {"x": b"y"}),
}


def key(tmp_path: Path, kind: str) -> str:
    return settings_for(tmp_path).redis_key(kind, USER)


@pytest.fixture
def catalogue() -> FakeCatalogue:
    return FakeCatalogue(TITLES)


@pytest.fixture
def store(catalogue: FakeCatalogue, tmp_path: Path) -> TypedStore:
    store = TypedStore()
    # A live vector that does reorder "stapler": the control that the others are not blended.
    tidy = catalogue.vectors[catalogue.row("tidy-stapler")]
    store.keys[key(tmp_path, EMB_KIND)] = ("string", f32(tidy))
    return store


@pytest.fixture
def app(
    tmp_path: Path, store: TypedStore, catalogue: FakeCatalogue, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    def open_fake(settings: Settings, redis: Any) -> SearchService:
        # The real Redis signal reads against the typed fake; only the model is a fake.
        signals = RedisSignals(redis, settings, catalogue.encoder.dim)
        return SearchService(catalogue.encoder, catalogue, signals, SearchConfig(blend_weight=0.5))

    monkeypatch.setattr(RecoClient, "from_settings", classmethod(lambda cls, s: cls(store, s)))
    monkeypatch.setattr(SearchService, "open", staticmethod(open_fake))
    with TestClient(create_lookup_app(settings_for(tmp_path)), raise_server_exceptions=False) as client:
        yield client


def search(app: TestClient, user_id: str | None = USER) -> dict[str, Any]:
    params = {"q": "stapler", "k": 3} | ({"user_id": user_id} if user_id else {})
    response = app.get("/v1/search", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    for item in body["items"]:
        # A NaN score is answered as null (or is invalid JSON): the order would be arbitrary.
        assert isinstance(item["score"], float) and math.isfinite(item["score"]), item
        assert isinstance(item["query_score"], float) and math.isfinite(item["query_score"]), item
    return body


def assert_query_only_because_unreadable(app: TestClient, body: dict[str, Any]) -> None:
    assert body["personalised"] is False and body["blend_weight"] == 0
    assert body["why"].startswith("stored profile could not be read"), body["why"]
    assert "unreachable" not in body["why"]
    assert body["why"].endswith("query ranking only")
    anonymous = search(app, None)
    assert body["items"] == anonymous["items"]


def test_a_readable_profile_still_personalises(app: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    # Guards the tests below against passing vacuously: this user's vector does reorder the query.
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        body = search(app)
    assert body["personalised"] is True and body["why"] == "live profile"
    assert body["items"] != search(app, None)["items"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert unreadable_count(app, EMB_KIND) == 0


@pytest.mark.parametrize("entry", UNREADABLE_EMB.values(), ids=UNREADABLE_EMB.keys())
def test_an_unreadable_live_vector_gives_the_query_ranking_and_says_why(
    app: TestClient, store: TypedStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, entry: Any
) -> None:
    store.keys[key(tmp_path, EMB_KIND)] = entry
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        body = search(app)
    assert_query_only_because_unreadable(app, body)
    assert "emb" in body["why"]
    assert key(tmp_path, EMB_KIND) not in body["why"]  # an answer does not show key names
    assert len(warnings_naming(caplog, key(tmp_path, EMB_KIND))) == 1
    assert unreadable_count(app, EMB_KIND) == 1


@pytest.mark.parametrize(
    "case",
    [
        (RECENT_KIND, ("string", b"x")),
        (FORGOTTEN_KIND, ("hash", {"a": b"b"})),
        (FORGOTTEN_KIND, ("string", b"yesterday")),
    ],
    ids=["recent WRONGTYPE", "forgotten WRONGTYPE", "forgotten not a time"],
)
def test_an_unreadable_activity_or_tombstone_key_is_unreadable_not_unreachable(
    app: TestClient, store: TypedStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: Any
) -> None:
    kind, entry = case
    store.keys[key(tmp_path, kind)] = entry
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        body = search(app)
    assert_query_only_because_unreadable(app, body)
    assert len(warnings_naming(caplog, key(tmp_path, kind))) == 1
    assert unreadable_count(app, kind) == 1


def test_an_unreadable_key_of_a_user_with_nothing_else_stored_is_still_named(
    app: TestClient, store: TypedStore, tmp_path: Path
) -> None:
    del store.keys[key(tmp_path, EMB_KIND)]
    store.keys[key(tmp_path, RECENT_KIND)] = ("hash", {"a": b"b"})
    body = search(app)
    assert_query_only_because_unreadable(app, body)
    assert unreadable_count(app, RECENT_KIND) == 1


def test_other_redis_errors_still_read_as_unreachable(app: TestClient, store: TypedStore) -> None:
    async def loading(key: str) -> None:
        raise ResponseError("LOADING Redis is loading the dataset in memory")

    store.get = loading  # type: ignore[method-assign]
    body = search(app)
    assert (body["personalised"], body["why"]) == (False, "profile store unreachable; query ranking only")
    assert unreadable_count(app, EMB_KIND) == 0


def test_signals_name_every_unreadable_key_and_use_no_activity(store: TypedStore, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store.keys[key(tmp_path, EMB_KIND)] = ("string", f32(np.full(DIM, np.nan)))
    store.keys[key(tmp_path, RECENT_KIND)] = ("list", [view_line("e1", 1_000)])
    store.keys[key(tmp_path, FORGOTTEN_KIND)] = ("hash", {"a": b"b"})
    signals = asyncio.run(RedisSignals(store, settings, DIM).read(USER))  # type: ignore[arg-type]
    assert signals is not None and signals.vector is None
    assert [(u.kind, u.key) for u in signals.unreadable] == [
        (FORGOTTEN_KIND, key(tmp_path, FORGOTTEN_KIND)),
        (EMB_KIND, key(tmp_path, EMB_KIND)),
    ]
    assert "NaN or infinite" in signals.unreadable[1].cause
    assert signals.usable_activity() == []


class DictSignals:
    def __init__(self, users: dict[str, UserSignals]) -> None:
        self.users = users

    async def read(self, user_id: str) -> UserSignals | None:
        return self.users.get(user_id)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_vector_from_any_signal_source_is_never_blended(
    catalogue: FakeCatalogue, value: float
) -> None:
    # The pure guard: a source other than Redis (or a future reader) cannot smuggle NaN in.
    signals = UserSignals(np.full(DIM, value, dtype=np.float32))
    svc = SearchService(catalogue.encoder, catalogue, DictSignals({"u": signals}), SearchConfig())
    result = asyncio.run(svc.search("stapler", "u", 3))
    assert not result.personalised
    assert "could not be read" in result.why and "NaN or infinite" in result.why
    assert all(math.isfinite(hit.score) for hit in result.items)
    assert [h.item_id for h in result.items] == [
        h.item_id for h in asyncio.run(svc.search("stapler", None, 3)).items
    ]
