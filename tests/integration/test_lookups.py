"""The lookup server (uvicorn on a free port) over the real Redis: every id the schema accepts.

Field case f02: ids with ``/``, ``?``, ``#``, ``+``, ``=`` and ``..`` had profiles in Redis, yet
``GET /v1/users/{id}/recommendations`` with the id percent-encoded answered 404.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from stream.core.settings import Settings
from stream.redis.client import redis_sync
from stream.redis.reco_store import RECO_KIND
from stream.serving.api import create_lookup_app
from tests.integration.conftest import free_port
from tests.support.servers import serving_in_thread

pytestmark = pytest.mark.integration

FIELD_CASES = Path(__file__).resolve().parents[1] / "support" / "field_cases"


@contextmanager
def running_lookups(settings: Settings) -> Iterator[str]:
    port = free_port()
    with serving_in_thread(create_lookup_app(settings), port, "the lookup server", 60) as url:
        yield url


def test_field_case_f02_every_accepted_id_is_looked_up_over_http(isolated_both: Settings) -> None:
    isolated = isolated_both
    events = json.loads((FIELD_CASES / "f02-user-ids-with-path-characters.json").read_bytes())
    ids = [e["user_id"] for e in events] + [".", "a/../b", "%2F", "50% off", "x/recommendations", "ü ñ 🔥"]
    redis = redis_sync(isolated)
    try:
        for n, user_id in enumerate(ids):
            doc = {
                "items": [{"item_id": f"sku-{n}", "score": 1.0, "reason": "because"}],
                "model_version": "m",
                "window_newest_ts_ms": 1,
                "computed_at_ms": 2,
                "window_newest_event_id": "e",
            }
            redis.hset(isolated.redis_key(RECO_KIND, user_id), "json", json.dumps(doc))
        with running_lookups(isolated) as base:
            for n, user_id in enumerate(ids):
                # Dots encoded too: "." and ".." would otherwise be removed as relative path steps.
                segment = quote(user_id, safe="").replace(".", "%2E")
                by_path = httpx.get(f"{base}/v1/users/{segment}/recommendations", timeout=30)
                by_query = httpx.get(f"{base}/v1/recommendations", params={"user_id": user_id}, timeout=30)
                for response in (by_path, by_query):
                    assert response.status_code == 200, (user_id, response.text)
                    answer = response.json()
                    assert (answer["user_id"], answer["source"]) == (user_id, "profile")
                    assert answer["items"][0]["item_id"] == f"sku-{n}"
    finally:
        for user_id in ids:
            redis.delete(isolated.redis_key(RECO_KIND, user_id))
        redis.close()
