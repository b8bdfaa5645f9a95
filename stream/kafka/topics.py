"""Creating the Kafka topics profilestream owns, with their partition counts, before first use."""

from __future__ import annotations

import contextlib
import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream.core.errors import ServiceUnavailable
from stream.core.settings import Settings
from stream.kafka.security import kafka_python_security

log = logging.getLogger(__name__)


def kafka_unreachable(settings: Settings, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"Kafka at {settings.kafka_bootstrap_servers} did not answer ({exc.__class__.__name__}: {exc}); "
        "start it with `deploy/local/services up` or point PROFILESTREAM_KAFKA_BOOTSTRAP_SERVERS at a broker"
    )


def windows_changelog_topic(settings: Settings) -> str:
    """The compacted changelog of the workers' window table (Faust's name for it)."""
    return f"{settings.consumer_group}-windows-changelog"


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    """Configs a topic is created with.

    The events and dead-letter topics delete records after their retention
    (PROFILESTREAM_EVENTS_RETENTION_MS, PROFILESTREAM_DEAD_LETTER_RETENTION_MS): a `forget` removes
    the user's state in Redis and the window changelog, but the user's raw events stay in these
    two topics until their retention runs out. The changelog is compacted (its latest record per
    user is the state) and so keeps no forgotten window once compaction has run.
    """
    if name == windows_changelog_topic(settings):
        return {"cleanup.policy": "compact"}
    retention_ms = (
        settings.dead_letter_retention_ms
        if name == settings.dead_letter_topic
        else settings.events_retention_ms
    )
    return {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}


def ensure_topics(settings: Settings) -> None:
    """Create the events, dead-letter and window-changelog topics where missing.

    The changelog is created here, before any worker starts, rather than by Faust at the first
    worker's start-up, so that a worker's first table writes never race the topic's creation.

    An existing topic is left as it is; one with fewer partitions than configured is reported,
    since adding partitions later would move users between partitions.
    """
    changelog = windows_changelog_topic(settings)
    wanted = {
        settings.events_topic: settings.events_partitions,
        settings.dead_letter_topic: 1,
        changelog: settings.events_partitions,
    }
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_servers,
            client_id="profilestream-admin",
            request_timeout_ms=settings.kafka_request_timeout_ms,
            **kafka_python_security(settings),
        )
    except KafkaError as exc:
        raise kafka_unreachable(settings, exc) from exc
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(
                name,
                partitions,
                settings.kafka_replication_factor,
                topic_configs=topic_configs(settings, name),
            )
            for name, partitions in wanted.items()
            if name not in existing
        ]
        if missing:
            # Another worker may create a topic between our list and create calls.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
            log.info("created topics %s", ", ".join(f"{t.name}({t.num_partitions})" for t in missing))
        present = [name for name in wanted if name in existing]
        if present:
            _warn_on_partition_mismatch(admin, present, wanted)
    except KafkaError as exc:
        raise kafka_unreachable(settings, exc) from exc
    finally:
        admin.close()


def _warn_on_partition_mismatch(admin: KafkaAdminClient, names: list[str], wanted: dict[str, int]) -> None:
    for description in admin.describe_topics(names):
        name = description["name"]
        have = len(description["partitions"])
        if have != wanted[name]:
            log.warning(
                "topic %s has %d partitions, settings ask for %d; existing topics are not resized",
                name,
                have,
                wanted[name],
            )
