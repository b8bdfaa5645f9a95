"""Replay into the real Kafka: per-user order, namespaces, Kafka sources, rejects."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kafka.admin import KafkaAdminClient
from redis import Redis

from stream.cli.replay import replay_command
from stream.core.namespace import namespaced
from stream.core.settings import Settings
from stream.ingest.replay import ReplayOptions, SourceSpec, replay
from stream.ingest.sdk import ProfilestreamProducer
from tests.integration.test_collector import consume_all

pytestmark = pytest.mark.integration

BASE_TS_MS = 1_764_000_000_000


def write_events(path: Path, count: int, users: int = 300) -> dict[str, list[str]]:
    """`count` valid events, users interleaved pseudo-randomly; returns each user's ids in file order."""
    order: dict[str, list[str]] = defaultdict(list)
    with open(path, "w") as out:
        for n in range(count):
            user = f"u{(n * 7919 + n // 13) % users}"
            event_id = f"r-{n}"
            doc = {
                "event_id": event_id,
                "user_id": user,
                "type": "view",
                "item_id": f"i{n % 97}",
                "ts_ms": BASE_TS_MS + n,
            }
            out.write(json.dumps(doc) + "\n")
            order[user].append(event_id)
    return order


def per_user(records: list[tuple[bytes | None, dict[str, Any], int]]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = defaultdict(list)
    for key, value, _ in records:
        assert key == value["user_id"].encode()
        seen[value["user_id"]].append(value["event_id"])
    return dict(seen)


def topics(settings: Settings) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_replaying_100k_events_twice_keeps_identical_per_user_order(
    isolated: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "events.jsonl"
    expected = write_events(source, 100_000)
    options = ReplayOptions(progress=False, rejects_path=tmp_path / "rejects.jsonl")
    first = replay(isolated, SourceSpec(str(source)), options)
    # The second run shards users over two producer processes; order within a user must not change.
    second = replay(isolated, SourceSpec(str(source)), ReplayOptions(processes=2, progress=False))
    # The third sends event by event with kafka-python, as the collector and the SDK do.
    third = replay(isolated, SourceSpec(str(source)), ReplayOptions(progress=False, sender="kafka-python"))
    for report in (first, second, third):
        assert (report.read, report.produced, report.rejected) == (100_000, 100_000, 0)
    # The SDK leaves the partition to kafka-python's default partitioner.
    with ProfilestreamProducer(isolated) as sdk:
        for user in sorted(expected)[:50]:
            sdk.track(user, "view", item_id="i1", event_id=f"sdk-{user}")
    records = consume_all(isolated, isolated.events_topic)
    partitions_of: dict[str, set[int]] = defaultdict(set)
    for _, value, partition in records:
        partitions_of[value["user_id"]].add(partition)
    # Whichever sender wrote them, a user's events share one partition (the default partitioner's).
    assert all(len(partitions) == 1 for partitions in partitions_of.values())
    assert len({p for partitions in partitions_of.values() for p in partitions}) == isolated.events_partitions
    replayed = [record for record in records if not record[1]["event_id"].startswith("sdk-")]
    seen = per_user(replayed)
    assert seen == {user: ids * 3 for user, ids in expected.items()}


def test_namespace_runs_never_touch_the_default_topics_or_keys(isolated: Settings, tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    expected = write_events(source, 500, users=20)
    with open(source, "a") as out:
        out.write('{"event_id": "bad", "user_id": "u1", "type": "view", "ts_ms": 1}\n')
    runner = CliRunner()
    result = runner.invoke(
        replay_command,
        [str(source), "--namespace", "shadow-1", "--json", "--rejects", str(tmp_path / "rejects.jsonl")],
        obj=isolated,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    shadow = namespaced(isolated, "shadow-1")
    assert report["topic"] == shadow.events_topic
    assert (report["produced"], report["rejected"]) == (500, 1)
    assert per_user(consume_all(isolated, shadow.events_topic)) == expected
    existing = topics(isolated)
    assert isolated.events_topic not in existing
    assert isolated.dead_letter_topic not in existing
    redis = Redis.from_url(isolated.redis_url.get_secret_value())
    try:
        assert list(redis.scan_iter(match=f"{isolated.redis_key_prefix}:*")) == []
    finally:
        redis.close()
    reject = json.loads((tmp_path / "rejects.jsonl").read_text())
    assert (reject["position"], reject["field"]) == ("501", "ts_ms")


def test_replay_from_a_topic_by_offset_and_time_into_another(isolated: Settings, tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    write_events(source, 400, users=5)
    replay(isolated, SourceSpec(str(source)), ReplayOptions(progress=False))
    original = consume_all(isolated, isolated.events_topic)

    copy = isolated.model_copy(update={"events_topic": isolated.events_topic + ".copy"})
    report = replay(
        copy, SourceSpec(f"kafka://{isolated.events_topic}", from_offset=0), ReplayOptions(progress=False)
    )
    assert report.produced == 400
    assert per_user(consume_all(isolated, copy.events_topic)) == per_user(original)

    # A time range that lies entirely in the future selects nothing, and the replay still ends.
    later = isolated.model_copy(update={"events_topic": isolated.events_topic + ".later"})
    spec = SourceSpec(f"kafka://{isolated.events_topic}", from_ts_ms=2**41)
    assert replay(later, spec, ReplayOptions(progress=False)).read == 0
