"""What the lookups say about `score`: a ranking score (cosine + prior + co-occurrence term) rounded
to 6 decimals that can exceed 1, documented where the API is (/docs, the client's record) and served
as the worker stored it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from stream.core.records import Recommendation, UserProfile
from stream.core.settings import load_settings
from stream.serving.api import create_lookup_app
from stream.serving.lookups import RecoClient, RecoResult

ROUTES = ["/v1/users/{user_id}/recommendations", "/v1/recommendations"]
# The worker's ranking score: cosine 0.93 + prior 0.21 + co-occurrence 0.0741234..., as float32.
STORED = [
    Recommendation("sku-1", float(np.float32(1.2141234)), "because you viewed X"),
    Recommendation("sku-2", -0.05, None),
]


class StoredPayload:
    """The async Redis surface RecoClient reads, holding one payload the worker wrote."""

    def __init__(self, payload: dict[str, object]) -> None:
        self.raw = json.dumps(payload).encode()

    async def hget(self, key: str, field: str) -> bytes:
        return self.raw

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


def profile_payload() -> dict[str, object]:
    profile = UserProfile("u1", tuple(STORED), np.zeros(2, np.float32), "m1", "w1", 5, "e-5")
    return profile.payload(computed_at_ms=6)


@pytest.fixture
def lookups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    payload = profile_payload()
    monkeypatch.setattr(
        RecoClient, "from_settings", classmethod(lambda cls, s: cls(StoredPayload(payload), s))
    )
    settings = load_settings({}, model_dir=tmp_path / "no-model", index_dir=tmp_path / "no-index")
    with TestClient(create_lookup_app(settings)) as client:
        yield client


@pytest.mark.parametrize("route", ROUTES)
def test_the_openapi_document_says_what_score_is(lookups: TestClient, route: str) -> None:
    description = lookups.get("/openapi.json").json()["paths"][route]["get"]["description"]
    for claim in (
        "not a probability",
        "cosine",
        "popularity prior",
        "co-occurrence term",
        "6 decimals",
        "exceed 1",
    ):
        assert claim in description, claim
    assert '"popular"' in description


def test_the_python_client_documents_score() -> None:
    for claim in ("not a probability", "6 decimals", "can exceed 1", "popular"):
        assert claim in (RecoResult.__doc__ or ""), claim


@pytest.mark.parametrize("route", ["/v1/users/u1/recommendations", "/v1/recommendations?user_id=u1"])
def test_a_score_over_1_is_served_rounded_to_6_decimals(lookups: TestClient, route: str) -> None:
    answer = lookups.get(route).json()
    assert answer["source"] == "profile"
    assert [item["score"] for item in answer["items"]] == [1.214123, -0.05]
