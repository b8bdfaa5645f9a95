"""The peers' job is the worker's `items` job: same vectors, same top-K, same newer-only write."""

from __future__ import annotations

import json
import random
from typing import Any, cast

import numpy as np

from bench.peers.job import Entry, Job, add_event, parse, redis_args
from stream.core.events import EventType
from stream.core.settings import load_settings
from stream.core.window import Window, WindowConfig, WindowEvent, window_version
from stream.profiles.computer import ProfileComputer, ProfileConfig
from stream.redis.reco_store import EMB_KIND, FORGOTTEN_KIND, RECO_KIND, WRITE_IF_NEWER_SHA
from tests.support.fakes import FakeCatalogue

WORDS = ["stapler", "pen", "lamp", "paper", "ink", "label", "folder", "clip", "desk", "notebook", "tape"]
TYPES = [EventType.VIEW, EventType.CLICK, EventType.SEARCH, EventType.ADD_TO_CART, EventType.PURCHASE]


def catalogue() -> FakeCatalogue:
    rng = random.Random(3)
    titles = {f"sku-{n:03d}": " ".join(rng.sample(WORDS, 3)) + f" model{n}" for n in range(60)}
    return FakeCatalogue(titles, out_of_stock={"sku-004", "sku-017"})


def windows(cat: FakeCatalogue, users: int = 30) -> dict[str, list[WindowEvent]]:
    rng = random.Random(11)
    result = {}
    for u in range(users):
        ts = 1_764_000_000_000 + rng.randrange(10**6)
        events = []
        for n in range(rng.randrange(1, 12)):
            ts += rng.randrange(1, 3 * 24 * 3600 * 1000)
            kind = rng.choice(TYPES)
            search = kind is EventType.SEARCH
            events.append(
                WindowEvent(
                    event_id=f"e{u}-{n}",
                    type=kind,
                    ts_ms=ts,
                    item_id=None if search else rng.choice(list(cat.ids)),
                    query=rng.choice(WORDS) if search else None,
                )
            )
        result[f"u{u}"] = events
    return result


def job_for(cat: FakeCatalogue, config: WindowConfig, top_k: int) -> Job:
    return Job(
        ids=cat.ids,
        vectors=cat.vectors,
        in_stock=cat.in_stock,
        rows={item: n for n, item in enumerate(cat.ids)},
        titles=cat.titles,
        encoder=cast(Any, cat.encoder),
        type_weights={t.value: w for t, w in config.type_weights.items()},
        half_life_ms=float(config.half_life_ms),
        max_events=config.max_events,
        top_k=top_k,
        prefix="t",
        ttl_s=0,
    )


def test_the_peers_rank_what_the_worker_ranks() -> None:
    cat = catalogue()
    config = WindowConfig()
    computer = ProfileComputer(cat.encoder, cat, ProfileConfig(window=config, top_k=8))
    user_events = windows(cat)
    profiles = {
        p.user_id: p for p in computer.compute([(u, Window(events=tuple(e))) for u, e in user_events.items()])
    }
    peer_windows = {
        u: [(e.ts_ms, e.event_id, e.type.value, e.item_id, e.query) for e in events]
        for u, events in user_events.items()
    }
    calls = redis_args(job_for(cat, config, top_k=8), peer_windows, now_ms=1)
    settings = load_settings({}, redis_key_prefix="t")
    by_key = {settings.redis_key(RECO_KIND, user): user for user in profiles}
    assert {call[2] for call in calls} == set(by_key)
    for call in calls:
        sha, nkeys, reco_key, emb_key, forgotten_key, newest_ts, version, payload, vector, ttl = call
        profile = profiles[by_key[reco_key]]
        assert (sha, nkeys, emb_key, forgotten_key, ttl) == (
            WRITE_IF_NEWER_SHA,
            3,
            settings.redis_key(EMB_KIND, profile.user_id),
            settings.redis_key(FORGOTTEN_KIND, profile.user_id),
            0,
        )
        assert (newest_ts, version) == (profile.window_newest_ts_ms, profile.window_version)
        np.testing.assert_allclose(np.frombuffer(vector, "<f4"), profile.vector, atol=1e-5)
        items = json.loads(payload)["items"]
        assert [i["item_id"] for i in items] == [r.item_id for r in profile.items]
        np.testing.assert_allclose([i["score"] for i in items], [r.score for r in profile.items], atol=1e-5)


def test_a_window_keeps_the_newest_events_in_time_order_once_each() -> None:
    window: list[Entry] = []
    for entry in [(3, "c", "view", "a", None), (1, "a", "view", "b", None), (3, "c", "view", "a", None)]:
        add_event(window, entry, max_events=2)
    add_event(window, (2, "b", "click", "c", None), max_events=2)
    assert window == [(2, "b", "click", "c", None), (3, "c", "view", "a", None)]
    assert window_version(
        Window(events=tuple(WindowEvent(e[1], EventType(e[2]), e[0], e[3], e[4]) for e in window))
    ) == "".join(f"{e[0]:016d}{e[1]}\x00" for e in reversed(window))


def test_parse_drops_events_without_the_fields_the_job_reads() -> None:
    assert parse({"user_id": "u", "event_id": "e", "type": "view", "ts_ms": 5, "item_id": "i"}) == (
        5,
        "e",
        "view",
        "i",
        None,
    )
    assert parse({"user_id": "u", "event_id": "e", "type": "view", "ts_ms": "5"}) is None
