"""Personalised search end to end: real Kafka, a real worker, real Redis, the real MiniLM encoder.

A search event goes through Kafka to the worker; once Redis reflects it, the same user's next
search is personalised towards it, through the Python client and the HTTP endpoint alike.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from stream.core.events import Event, EventType
from stream.core.sample import sample_catalogue
from stream.core.settings import Settings, child_environment, load_settings
from stream.ingest.producer import EventProducer
from stream.kafka.topics import ensure_topics
from stream.redis.activity import RECENT_KIND
from stream.redis.client import redis_sync
from stream.redis.reco_store import EMB_KIND
from stream.serving.api import create_lookup_app
from stream.serving.lookups import RecoClient
from stream.serving.search import SearchResult
from tests.integration.conftest import ModelFiles
from tests.integration.worker import start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_S = 180
T0 = 1_764_000_000_000
USER = "searcher"


def items_of(brand: str, product: str) -> list[str]:
    """Sample-catalogue ids of a brand's items of one product line."""
    return [
        str(row["item_id"])
        for row in sample_catalogue()
        if row["brand"] == brand and str(row["title"]).endswith(product) and row["in_stock"]
    ]


def wait_until(what: str, ready: Callable[[], bool], worker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if worker.poll() is not None or time.monotonic() > deadline:
            state = "timed out" if worker.poll() is None else f"worker exited with {worker.returncode}"
            pytest.fail(f"{what} ({state}); worker log ends:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)


def search(settings: Settings, query: str, user_id: str | None, k: int = 20) -> SearchResult:
    async def call() -> SearchResult:
        client = RecoClient.from_settings(settings)
        try:
            return await client.search(query, user_id, k)
        finally:
            await client.close()

    return asyncio.run(call())


def best_rank(result: SearchResult, item_ids: list[str]) -> int:
    ranked = [hit.item_id for hit in result.items]
    return min((ranked.index(i) for i in item_ids if i in ranked), default=len(ranked))


def test_a_search_event_steers_the_next_search(isolated_both: Settings, tmp_path: Path) -> None:
    settings = isolated_both.model_copy(update={"search_blend_weight": 0.5})
    ensure_topics(settings)
    acme_pens, papyrus_staplers = items_of("Acme", "gel pens"), items_of("Papyrus", "stapler")
    assert acme_pens and papyrus_staplers
    redis = redis_sync(settings)
    emb_key, recent_key = settings.redis_key(EMB_KIND, USER), settings.redis_key(RECENT_KIND, USER)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        with EventProducer(settings) as producer:
            producer.send_many(
                Event(f"v{n}", USER, EventType.VIEW, T0 + n * 1000, item_id=item)
                for n, item in enumerate(acme_pens[:3])
            )
        wait_until("the views never reached Redis", lambda: redis.exists(emb_key) == 1, worker, log)
        emb_before = redis.get(emb_key)
        before = search(settings, "stapler", USER)
        assert (before.personalised, before.why) == (True, "live profile")
        assert before.items[0].reason is not None
        assert before.items[0].reason.startswith("because you viewed Acme")

        with EventProducer(settings) as producer:
            producer.send_many([Event("s1", USER, EventType.SEARCH, T0 + 10_000, query="Papyrus stapler")])
        wait_until(
            "the search event never reached Redis",
            lambda: redis.llen(recent_key) == 4 and redis.get(emb_key) != emb_before,
            worker,
            log,
        )
        after = search(settings, "stapler", USER)
        assert (after.personalised, after.why) == (True, "live profile and recent searches")
        assert best_rank(after, papyrus_staplers) < best_rank(before, papyrus_staplers)
        papyrus_top = after.items[best_rank(after, papyrus_staplers)]
        assert papyrus_top.reason == "because you searched 'Papyrus stapler'"

        # The HTTP endpoint serves the same ranking as the Python client.
        with TestClient(create_lookup_app(settings)) as http:
            body = http.get("/v1/search", params={"q": "stapler", "user_id": USER, "k": 20}).json()
        assert [i["item_id"] for i in body["items"]] == [hit.item_id for hit in after.items]
        assert (body["personalised"], body["why"]) == (True, after.why)

        with EventProducer(settings) as producer:
            producer.send_many([Event("f1", USER, EventType.FORGET, T0 + 20_000)])
        wait_until("the forget never reached Redis", lambda: redis.exists(emb_key) == 0, worker, log)
        forgotten = search(settings, "stapler", USER)
        assert (forgotten.personalised, forgotten.why) == (False, "forgotten user")
        assert forgotten.items == search(settings, "stapler", None).items
    finally:
        code = stop_worker(worker)
        redis.close()
    assert code == 0, log.read_text()[-2000:]


def test_evaluate_search_writes_the_report_and_plot(model_files: ModelFiles, tmp_path: Path) -> None:
    """`profilestream evaluate --task search` on a tiny amazon-office shaped folder."""
    rows = sample_catalogue(items=40)
    data = tmp_path / "office"
    data.mkdir()
    (data / "items.json").write_text(
        json.dumps({str(n): {"title": r["title"], "brand": r["brand"]} for n, r in enumerate(rows)})
    )
    with (data / "test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "history_item_id", "item_id"])
        for n in range(12):
            writer.writerow([f"u{n}", str([n, n + 1, n + 2]), str(n + 3)])
    settings = load_settings({}, model_dir=model_files.model_dir, index_dir=model_files.index_dir)
    env = child_environment(os.environ, settings) | {"HF_HUB_OFFLINE": "1"}
    out = tmp_path / "eval"
    args = ["evaluate", "--task", "search", str(data), "--limit", "10", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| query only |" in result.stdout
    report = json.loads((out / "search_eval.json").read_text())
    assert report["rows"] == 10
    assert {p["weight"] for p in report["sweep"]} >= {0.0, 0.3, 1.0}
    assert 0.0 <= report["personalised"]["ndcg_at_10"] <= 1.0
    assert (out / "search_eval_sweep.png").stat().st_size > 1000
