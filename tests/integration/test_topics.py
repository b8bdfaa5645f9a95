"""`profilestream topics` creates the topics with their retention (what `forget` cannot delete)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from stream.core.settings import load_settings
from stream.kafka.topics import ensure_topics, windows_changelog_topic
from tests.integration.conftest import Services

pytestmark = pytest.mark.integration


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    """The topic's configuration; right after creation the broker may answer empty for a moment."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="profilestream-test")
    deadline = time.monotonic() + 30
    try:
        while True:
            response = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
            )
            configs = response["topic"][topic]
            if configs or time.monotonic() > deadline:
                return {key: value["value"] for key, value in configs.items()}
            time.sleep(0.2)
    finally:
        admin.close()


def test_events_and_dead_letter_topics_are_created_with_the_configured_retention(
    services: Services, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        {},
        kafka_bootstrap_servers=services.kafka_bootstrap,
        events_topic=f"t.retention-{tag}.events",
        dead_letter_topic=f"t.retention-{tag}.dlq",
        consumer_group=f"g-retention-{tag}",
        events_retention_ms=3 * 24 * 3600 * 1000,
        dead_letter_retention_ms=36 * 3600 * 1000,
        data_dir=tmp_path,
    )
    ensure_topics(settings)
    events = topic_config(services.kafka_bootstrap, settings.events_topic)
    dead_letters = topic_config(services.kafka_bootstrap, settings.dead_letter_topic)
    changelog = topic_config(services.kafka_bootstrap, windows_changelog_topic(settings))
    assert (events["retention.ms"], events["cleanup.policy"]) == (str(3 * 24 * 3600 * 1000), "delete")
    assert (dead_letters["retention.ms"], dead_letters["cleanup.policy"]) == (str(36 * 3600 * 1000), "delete")
    assert changelog["cleanup.policy"] == "compact"
