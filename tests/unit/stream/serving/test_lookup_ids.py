"""Lookups take exactly the ids events can carry (breaker report 14): an id the schema can never
hold is a 422 naming user_id and the schema's id rule, never a 200 with the popular fallback, a
line break included (it matched no route: a bare 404); ids are read in the spelling events
store (Unicode NFC)."""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from stream.serving.api import create_lookup_app
from stream.serving.lookups import RecoClient
from tests.unit.stream.serving.test_lookups import ProfileForEveryone, settings_for

RULE = "the event schema's id rule: not empty, at most 128 characters"


@pytest.fixture
def lookups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(RecoClient, "from_settings", classmethod(lambda cls, s: cls(ProfileForEveryone(), s)))
    with TestClient(create_lookup_app(settings_for(tmp_path))) as client:
        yield client


def raw_get(client: TestClient, path: str, params: dict[str, str] | None = None) -> httpx.Response:
    """Through httpx's ASGI transport: the path is decoded once, as uvicorn does."""

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lookups") as http:
            return await http.get(path, params=params)

    return asyncio.run(get())


def only_error(response: httpx.Response) -> tuple[list[Any], str]:
    [error] = response.json()["detail"]
    return error["loc"], error["msg"]


# (as percent-encoded in the path, the decoded id, what the reason says)
BAD_IDS = [
    ("u-plain%20", "u-plain ", "surrounding whitespace"),
    ("%20u-plain", " u-plain", "surrounding whitespace"),
    ("u-plain%09", "u-plain\t", "surrounding whitespace"),
    ("a%0Ab", "a\nb", "control characters"),
    ("a%0Db", "a\rb", "control characters"),
    ("a%0A", "a\n", "control characters"),
    ("%0A", "\n", "must not be empty"),
    ("a%00b", "a\x00b", "control characters"),
    ("u1%C2%A0", "u1\u00a0", "surrounding whitespace"),
    ("u1%E2%80%8B", "u1\u200b", "ends with the invisible character U+200B"),
    ("%E2%80%AEu1", "\u202eu1", "bidirectional control U+202E"),
    ("x" * 129, "x" * 129, "129 characters, over the limit of 128"),
    ("1E%2B3", "1E+3", "scientific notation"),
]


@pytest.mark.parametrize(("encoded", "user_id", "reason"), BAD_IDS, ids=[b[0][:20] for b in BAD_IDS])
def test_ids_no_event_can_carry_are_a_422_naming_user_id(
    lookups: TestClient, encoded: str, user_id: str, reason: str
) -> None:
    answers = {
        "path": raw_get(lookups, f"/v1/users/{encoded}/recommendations?k=1"),
        "query": raw_get(lookups, "/v1/recommendations", {"user_id": user_id}),
        "search": raw_get(lookups, "/v1/search", {"q": "pens", "user_id": user_id}),
        "console profile": raw_get(lookups, f"/v1/users/{encoded}/profile"),
    }
    for where, answer in answers.items():
        # Search too: this app has no model, so a valid id would get a 503, not a 422.
        assert answer.status_code == 422, (where, answer.text)
        loc, message = only_error(answer)
        assert loc[-1] == "user_id", (where, loc)
        assert "user_id must be an id an event can carry" in message
        assert reason in message and RULE in message, (where, message)


@pytest.mark.parametrize(
    "spelling", [unicodedata.normalize("NFD", "José-Zoë"), "José-Zoë", "Jose\u0301-Zoe\u0308"]
)
def test_ids_are_looked_up_in_the_spelling_events_store(lookups: TestClient, spelling: str) -> None:
    by_path = raw_get(lookups, f"/v1/users/{httpx.URL('/' + spelling).raw_path.decode()[1:]}/recommendations")
    by_query = raw_get(lookups, "/v1/recommendations", {"user_id": spelling})
    for answer in (by_path, by_query):
        assert answer.status_code == 200, answer.text
        assert answer.json()["user_id"] == "José-Zoë" == unicodedata.normalize("NFC", spelling)


def test_an_id_under_128_characters_only_in_nfc_is_looked_up(lookups: TestClient) -> None:
    # 100 "é" are 200 characters in NFD and 100 in NFC: events accept it, so lookups do.
    nfd = unicodedata.normalize("NFD", "é" * 100)
    assert len(nfd) == 200
    answer = raw_get(lookups, "/v1/recommendations", {"user_id": nfd})
    assert answer.status_code == 200, answer.text
    assert answer.json()["user_id"] == "é" * 100
