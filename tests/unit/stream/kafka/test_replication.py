"""Replicated topics and acks=all: the factor follows the cluster (or is refused), every topic
carries min.insync.replicas, and every producer waits for all in-sync replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import pytest

from stream.core.errors import ConfigError
from stream.core.settings import Settings, load_settings
from stream.kafka import bulk_sender, producer, topics
from stream.kafka.topics import Replication, replication_for, topic_configs, windows_changelog_topic


def settings(**overrides: Any) -> Settings:
    return load_settings({}, events_topic="e", dead_letter_topic="d", consumer_group="g", **overrides)


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [(1, Replication(1, 1)), (2, Replication(2, 1)), (3, Replication(3, 2)), (6, Replication(3, 2))],
)
def test_the_default_takes_as_many_copies_as_brokers_up_to_three(brokers: int, expected: Replication) -> None:
    assert replication_for(settings(), brokers) == expected


def test_an_explicit_factor_is_kept_where_the_cluster_allows_it() -> None:
    assert replication_for(settings(kafka_replication_factor=2), 5) == Replication(2, 1)
    assert replication_for(settings(kafka_replication_factor=5), 5) == Replication(5, 2)


def test_a_factor_above_the_live_brokers_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        replication_for(settings(kafka_replication_factor=3), 1)
    message = str(caught.value)
    assert "PROFILESTREAM_KAFKA_REPLICATION_FACTOR=3" in message
    assert "1 live broker;" in message and "set it to 1 or less" in message


def test_every_created_topic_carries_min_insync_replicas() -> None:
    s = settings()
    for name in (s.events_topic, s.dead_letter_topic, windows_changelog_topic(s)):
        assert topic_configs(s, name, Replication(3, 2))["min.insync.replicas"] == "2"
    assert topic_configs(s, windows_changelog_topic(s), Replication(3, 2))["cleanup.policy"] == "compact"


class FakeAdmin:
    """The KafkaAdminClient calls ensure_topics makes, on a cluster of three brokers."""

    created: ClassVar[list[Any]] = []

    def __init__(self, **_: Any) -> None:
        pass

    def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"broker_id": n, "is_fenced": False} for n in (1, 2, 3)]}

    def list_topics(self) -> list[str]:
        return []

    def create_topics(self, new_topics: list[Any]) -> None:
        FakeAdmin.created = list(new_topics)

    def close(self) -> None:
        pass


def test_ensure_topics_replicates_by_the_clusters_brokers() -> None:
    s = settings()
    with mock.patch.object(topics, "KafkaAdminClient", FakeAdmin):
        assert topics.ensure_topics(s) == Replication(3, 2)
    assert {t.name: t.replication_factor for t in FakeAdmin.created} == {
        "e": 3,
        "d": 3,
        windows_changelog_topic(s): 3,
    }
    assert {t.topic_configs["min.insync.replicas"] for t in FakeAdmin.created} == {"2"}


def test_a_fenced_broker_does_not_count() -> None:
    class TwoLive(FakeAdmin):
        def describe_cluster(self) -> dict[str, Any]:
            brokers = super().describe_cluster()["brokers"]
            brokers[2]["is_fenced"] = True
            return {"brokers": brokers}

    with mock.patch.object(topics, "KafkaAdminClient", TwoLive):
        assert topics.ensure_topics(settings()) == Replication(2, 1)
        with pytest.raises(ConfigError):
            topics.ensure_topics(settings(kafka_replication_factor=3))


def test_every_producer_waits_for_all_in_sync_replicas() -> None:
    s = settings()
    with mock.patch.object(producer, "KafkaProducer") as kafka_python:
        producer.kafka_producer(s)
    assert kafka_python.call_args.kwargs["acks"] == "all"
    with mock.patch("aiokafka.AIOKafkaProducer") as aiokafka:
        bulk_sender.aiokafka_producer(s, bulk_sender.BatchTuning())
    assert aiokafka.call_args.kwargs["acks"] == "all"
    # The worker's Faust producer sends dead letters and changelog records: -1 is "all".
    from stream.worker.app import create_app

    app = create_app(settings(kafka_replication_factor=3))
    assert app.conf.producer_acks == -1
    assert app.conf.topic_replication_factor == 3


def test_the_worker_hands_the_resolved_factor_to_faust(tmp_path: Path) -> None:
    from stream.worker import app as worker_app

    class Built(Exception):
        pass

    built: list[Settings] = []

    def fake_create_app(s: Settings) -> Any:
        built.append(s)
        raise Built

    with (
        mock.patch.object(topics, "ensure_topics", return_value=Replication(3, 2)),
        mock.patch.object(worker_app, "create_app", fake_create_app),
        mock.patch.object(worker_app, "use_fetch_max_wait"),
        mock.patch("gc.set_threshold"),
        pytest.raises(Built),
    ):
        worker_app.run_worker(settings(data_dir=tmp_path))
    assert built[0].kafka_replication_factor == 3
