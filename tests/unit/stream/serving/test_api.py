"""``GET /v1/search`` on the lookup app: input checks, the no-model answer, and a served search.

No network: the Redis client is never used (no user is looked up in Redis) and the model is
either missing on purpose or replaced by the fakes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stream.core.events import MAX_QUERY_CHARS, truncate_query
from stream.core.settings import Settings, load_settings
from stream.serving.api import create_lookup_app
from stream.serving.search import SearchConfig, UserSignals
from stream.serving.search_service import SearchService
from tests.support.fakes import FakeCatalogue

FIELD_CASES = Path(__file__).resolve().parents[3] / "support" / "field_cases"
TITLES = {"a": "acme stapler", "b": "papyrus stapler", "c": "acme gel pens"}


class NoSignals:
    async def read(self, user_id: str) -> UserSignals | None:
        return None


def settings_for(tmp_path: Path) -> Settings:
    return load_settings({}, model_dir=tmp_path / "no-model", index_dir=tmp_path / "no-index")


@pytest.fixture
def no_model(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_lookup_app(settings_for(tmp_path))) as client:
        yield client


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    catalogue = FakeCatalogue(TITLES)

    def open_fake(settings: Settings, redis: Any) -> SearchService:
        return SearchService(catalogue.encoder, catalogue, NoSignals(), SearchConfig())

    monkeypatch.setattr(SearchService, "open", staticmethod(open_fake))
    with TestClient(create_lookup_app(settings_for(tmp_path))) as client:
        yield client


def errors(response: Any) -> list[tuple[str, str]]:
    return [(str(e["loc"][-1]), str(e["msg"])) for e in response.json()["detail"]]


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({}, "q", "required"),
        ({"q": ""}, "q", "at least 1"),
        ({"q": "   "}, "q", "empty or only whitespace"),
        ({"q": "\u200b"}, "q", "invisible"),
        ({"q": "\u200b\ufeff\u2060"}, "q", "invisible"),
        ({"q": "\u3000\u00a0 \u200c"}, "q", "invisible"),
        ({"q": "pens", "user_id": "\u200b"}, "user_id", "invisible"),
        # Default_Ignorable_Code_Point and blank fillers: GET /v1/search?q=%E3%85%A4 answered 200.
        ({"q": "\u3164"}, "q", "invisible"),
        ({"q": "\u115f\u1160\uffa0"}, "q", "invisible"),
        ({"q": "\u2800 \u2800"}, "q", "invisible"),
        ({"q": "\u034f\ufe0f\U000e0041"}, "q", "invisible"),
        ({"q": "pens", "user_id": "\u3164"}, "user_id", "invisible"),
        ({"q": "pens", "k": "0"}, "k", "greater than or equal to 1"),
        ({"q": "pens", "k": "101"}, "k", "less than or equal to 100"),
        ({"q": "pens", "k": "ten"}, "k", "valid integer"),
        ({"q": "pens", "user_id": ""}, "user_id", "at least 1"),
        ({"q": "pens", "user_id": "u" * 129}, "user_id", "at most 128"),
    ],
)
def test_malformed_searches_get_a_422_naming_the_field(
    fake_model: TestClient, params: dict[str, str], field: str, fragment: str
) -> None:
    response = fake_model.get("/v1/search", params=params)
    assert response.status_code == 422
    [(where, message)] = errors(response)
    assert where == field
    assert fragment in message


def test_a_search_for_an_anonymous_visitor_is_flagged_as_not_personalised(fake_model: TestClient) -> None:
    response = fake_model.get("/v1/search", params={"q": "  stapler ", "k": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "stapler"
    assert (body["personalised"], body["why"], body["blend_weight"]) == (False, "no user_id", 0.0)
    assert sorted(item["item_id"] for item in body["items"]) == ["a", "b"]
    assert set(body["items"][0]) == {"item_id", "title", "score", "query_score", "profile_score", "reason"}


def test_without_model_files_search_answers_503_naming_the_settings(no_model: TestClient) -> None:
    response = no_model.get("/v1/search", params={"q": "stapler"})
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "PROFILESTREAM_MODEL_DIR" in detail
    assert "PROFILESTREAM_INDEX_DIR" in detail
    # Input checks still come first, and the rest of the app is up.
    assert no_model.get("/v1/search", params={"q": " "}).status_code == 422
    assert no_model.get("/healthz").json() == {"status": "ok"}


def test_the_length_limit_applies_to_the_stripped_query(fake_model: TestClient) -> None:
    padded = "  " + "x" * MAX_QUERY_CHARS + "  "
    assert fake_model.get("/v1/search", params={"q": padded}).status_code == 200


def test_an_over_long_query_is_cut_as_the_event_schema_cuts_it(fake_model: TestClient) -> None:
    pasted = " stapler " + "x" * 900
    response = fake_model.get("/v1/search", params={"q": pasted})
    assert response.status_code == 200
    assert response.json()["query"] == truncate_query(pasted)
    assert len(response.json()["query"]) == MAX_QUERY_CHARS


def test_field_case_f15_zero_width_searches_are_empty(fake_model: TestClient) -> None:
    case = json.loads((FIELD_CASES / "f15-invisible-only-queries.json").read_bytes())
    for query in case["zero_width_queries"]:
        assert fake_model.get("/v1/search", params={"q": query}).status_code == 422
    assert fake_model.get("/v1/search", params={"q": case["emoji_only"]}).status_code == 200


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("/v1/users/%FF/recommendations", "path"),
        ("/v1/users/shop%2F%ED%A0%80/recommendations", "path"),
        ("/v1/recommendations?user_id=%FF%FE", "query"),
    ],
)
def test_an_id_that_is_not_utf8_once_percent_decoded_is_a_422(
    no_model: TestClient, url: str, part: str
) -> None:
    # The server decodes such bytes to U+FFFD: every id holding one read the same user's list.
    response = no_model.get(url)
    assert response.status_code == 422, response.text
    assert f"URL's {part} is not UTF-8" in response.json()["detail"]
