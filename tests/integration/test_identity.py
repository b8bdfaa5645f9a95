"""Anonymous to known on real Kafka and Redis, with the real MiniLM encoder.

A visitor browses under an anonymous id (its own profile), then logs in: the worker owning the
anonymous id's partition moves the window to the known user through Kafka and removes the
anonymous keys; the known user's Redis entry must equal the offline recomputation of the merged
window (`stream.core.identity.resolve_identities`), also when the worker is SIGKILLed between
sending the moved events and clearing the anonymous window. A forget of either id forgets both.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from redis import Redis

from stream.core.events import Event, EventType
from stream.core.identity import MERGED_FROM
from stream.core.sample import SampleSpec, sample_events
from stream.core.settings import Settings
from stream.ingest.producer import EventProducer
from stream.kafka.topics import ensure_topics
from stream.redis.activity import RECENT_KIND
from stream.redis.identity import ALIAS_KIND, ALIASES_KIND
from stream.redis.reco_store import EMB_KIND, FORGOTTEN_KIND, RECO_KIND
from tests.integration import convergence
from tests.integration.convergence import converge, offline
from tests.integration.test_collector import consume_all
from tests.integration.worker import start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Sample users renamed: two visitors who log in, their accounts, and a visitor who never does.
NAMES = {
    "u0000": "anon-a",
    "u0001": "user-a",
    "u0002": "anon-b",
    "u0003": "user-b",
    "u0004": "anon-c",
}


def browsing() -> list[Event]:
    events = sample_events(SampleSpec(users=5, events=90, items=500, seed=41, zipf_s=0.2))
    return [
        Event(e.event_id, NAMES[e.user_id], e.type, e.ts_ms, e.item_id, e.query, e.session_id) for e in events
    ]


def login(anonymous: str, known: str, ts_ms: int) -> Event:
    return Event(f"login-{anonymous}", anonymous, EventType.IDENTIFY, ts_ms, known_user_id=known)


def forget(user: str, received_ms: int) -> Event:
    return Event(f"forget-{user}", user, EventType.FORGET, received_ms, received_ms=received_ms)


def keys_of(settings: Settings, user: str, kinds: tuple[str, ...]) -> dict[str, bool]:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        return {kind: bool(redis.exists(settings.redis_key(kind, user))) for kind in kinds}
    finally:
        redis.close()


def wait_for(what: str, check: object, worker: object, log: Path) -> None:
    deadline = time.monotonic() + convergence.CONVERGE_TIMEOUT_S
    while not check():  # type: ignore[operator]
        if worker.poll() is not None or time.monotonic() > deadline:  # type: ignore[attr-defined]
            pytest.fail(f"{what}: not reached\n{log.read_text(errors='replace')[-2500:]}")
        time.sleep(0.5)


def assert_anonymous_keys_gone(settings: Settings, *anonymous: str) -> None:
    for user in anonymous:
        assert keys_of(settings, user, (RECO_KIND, EMB_KIND, RECENT_KIND)) == {
            RECO_KIND: False,
            EMB_KIND: False,
            RECENT_KIND: False,
        }, user


def test_a_login_moves_the_anonymous_window_and_a_forget_of_either_id_forgets_both(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated.model_copy(update={"batch_max_events": 50, "batch_max_wait_ms": 100})
    ensure_topics(settings)
    events = browsing()
    newest = max(e.ts_ms for e in events)
    logins = [login("anon-a", "user-a", newest + 1_000), login("anon-b", "user-b", newest + 1_000)]
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        # Anonymous browsing first: each visitor gets a profile under the anonymous id.
        with EventProducer(settings) as producer:
            producer.send_many(events)
        converge(settings, offline(settings, events), worker, log)
        assert keys_of(settings, "anon-a", (RECO_KIND,)) == {RECO_KIND: True}

        with EventProducer(settings) as producer:
            producer.send_many(logins)
        expected = offline(settings, events + logins)
        assert set(expected) == {"user-a", "user-b", "anon-c"}
        moved = {"anon-a": "user-a", "anon-b": "user-b"}
        before = offline(settings, events)
        # The merged windows hold the anonymous visitors' events too: other recommendations.
        assert all(expected[known] != before[known] for known in moved.values())
        converge(settings, expected, worker, log)
        wait_for(
            "anonymous keys removed",
            lambda: all(not any(keys_of(settings, a, (RECO_KIND, EMB_KIND)).values()) for a in moved),
            worker,
            log,
        )
        assert_anonymous_keys_gone(settings, *moved)
        assert keys_of(settings, "anon-a", (ALIAS_KIND,)) == {ALIAS_KIND: True}

        # A forget of the anonymous id forgets the known user it joined; one of the known id
        # forgets the anonymous one (a tombstone each, so an old replay brings neither back).
        forgets = [forget("anon-a", newest + 5_000), forget("user-b", newest + 5_000)]
        with EventProducer(settings) as producer:
            producer.send_many(forgets)
        everyone = ["anon-a", "user-a", "anon-b", "user-b"]
        wait_for(
            "both ids of each pair forgotten",
            lambda: all(keys_of(settings, u, (FORGOTTEN_KIND,))[FORGOTTEN_KIND] for u in everyone),
            worker,
            log,
        )
        for user in everyone:
            assert keys_of(settings, user, (RECO_KIND, EMB_KIND, ALIAS_KIND, ALIASES_KIND)) == {
                RECO_KIND: False,
                EMB_KIND: False,
                ALIAS_KIND: False,
                ALIASES_KIND: False,
            }, user
        # The visitor who never logged in keeps their profile.
        assert keys_of(settings, "anon-c", (RECO_KIND,)) == {RECO_KIND: True}
    finally:
        assert stop_worker(worker) == 0


def test_a_worker_killed_after_sending_the_moved_window_converges_without_duplicates(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated.model_copy(update={"batch_max_events": 200, "batch_max_wait_ms": 100})
    ensure_topics(settings)
    events = browsing()
    newest = max(e.ts_ms for e in events)
    all_events = [*events, login("anon-a", "user-a", newest + 1_000)]
    expected = offline(settings, all_events)
    log = tmp_path / "worker.log"
    with EventProducer(settings) as producer:
        producer.send_many(all_events)
    # Killed once the broker acknowledged the moved events, before the anonymous window was
    # cleared, its keys deleted or the position stored.
    crashing = start_worker(settings, log, module=("tests.integration.crashing_worker", "identity-kill"))
    try:
        assert crashing.wait(timeout=convergence.CONVERGE_TIMEOUT_S) == -9
    finally:
        stop_worker(crashing)
    worker = start_worker(settings, log)
    try:
        converge(settings, expected, worker, log)
        wait_for(
            "anonymous keys removed",
            lambda: not any(keys_of(settings, "anon-a", (RECO_KIND, EMB_KIND)).values()),
            worker,
            log,
        )
        assert_anonymous_keys_gone(settings, "anon-a")
    finally:
        assert stop_worker(worker) == 0
    # The window was moved (usually twice: the restarted worker sends it again), and the known
    # user's window took each moved event once (the Redis entry equals the offline one, whose
    # window has no repeats). One fresh-clone run of 2026-11-30 saw a single send: the restarted
    # worker did not send the window again, not yet explained (see stream/worker/README.md).
    moved = [
        v for k, v, _ in consume_all(settings, settings.events_topic) if MERGED_FROM in v.get("context", {})
    ]
    ids = [v["event_id"] for v in moved]
    assert len(ids) >= len(set(ids)) > 0
