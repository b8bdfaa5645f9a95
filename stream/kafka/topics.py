"""Creating the Kafka topics profilestream owns, with their partition counts, before first use."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream.core.errors import ConfigError, ServiceUnavailable
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


@dataclass(frozen=True, slots=True)
class Replication:
    """How many copies of each partition a topic keeps, and how many must hold a record before an
    acks=all producer (every producer of profilestream) is told it landed."""

    factor: int
    min_insync_replicas: int


MAX_AUTO_REPLICATION_FACTOR = 3


def replication_for(settings: Settings, brokers: int) -> Replication:
    """The replication of created topics on a cluster of `brokers` live brokers.

    `PROFILESTREAM_KAFKA_REPLICATION_FACTOR` 0 (the default) takes as many copies as there are
    brokers, at most 3; a factor above the brokers is refused here with the fix, rather than by
    the broker's bare INVALID_REPLICATION_FACTOR. Three copies with min.insync.replicas 2 let one
    broker die without losing an acknowledged record and without refusing writes; fewer copies
    accept a record held by one.
    """
    wanted = settings.kafka_replication_factor
    if wanted > brokers:
        raise ConfigError(
            f"PROFILESTREAM_KAFKA_REPLICATION_FACTOR={wanted}, but the Kafka cluster at "
            f"{settings.kafka_bootstrap_servers} has {brokers} live broker{'s' if brokers != 1 else ''}; "
            f"set it to {brokers} or less (0: as many as there are brokers, at most "
            f"{MAX_AUTO_REPLICATION_FACTOR}), or start the missing brokers"
        )
    factor = wanted or max(1, min(MAX_AUTO_REPLICATION_FACTOR, brokers))
    return Replication(factor, 2 if factor >= 3 else 1)


def live_brokers(admin: KafkaAdminClient) -> int:
    """Brokers of the cluster that can hold replicas now (a fenced broker, one that stopped
    heartbeating to the controller, cannot)."""
    return sum(1 for broker in admin.describe_cluster()["brokers"] if not broker.get("is_fenced"))


def topic_configs(settings: Settings, name: str, replication: Replication | None = None) -> dict[str, str]:
    """Configs a topic is created with.

    The events and dead-letter topics delete records after their retention
    (PROFILESTREAM_EVENTS_RETENTION_MS, PROFILESTREAM_DEAD_LETTER_RETENTION_MS): a `forget` removes
    the user's state in Redis and the window changelog, but the user's raw events stay in these
    two topics until their retention runs out. The changelog is compacted (its latest record per
    user is the state) and so keeps no forgotten window once compaction has run.

    min.insync.replicas is set on every topic (`replication_for`), not left to the broker's
    default, so a topic's durability does not depend on how its cluster was configured.
    """
    durability = (
        {"min.insync.replicas": str(replication.min_insync_replicas)} if replication is not None else {}
    )
    if name == windows_changelog_topic(settings):
        return {"cleanup.policy": "compact"} | durability
    retention_ms = (
        settings.dead_letter_retention_ms
        if name == settings.dead_letter_topic
        else settings.events_retention_ms
    )
    return {"cleanup.policy": "delete", "retention.ms": str(retention_ms)} | durability


class PartitionCountMismatch(ConfigError):
    """The events topic has another partition count than PROFILESTREAM_EVENTS_PARTITIONS."""


def ensure_topics(settings: Settings, *, refuse_partition_mismatch: bool = False) -> Replication:
    """Create the events, dead-letter and window-changelog topics where missing; return the
    replication they are created with (`replication_for` the cluster's live brokers), which the
    worker hands on to the topics Faust creates itself.

    The changelog is created here, before any worker starts, rather than by Faust at the first
    worker's start-up, so that a worker's first table writes never race the topic's creation.

    An existing topic is left as it is; one with fewer partitions than configured is reported,
    since adding partitions later would move users between partitions, and so is one with fewer
    copies than the cluster now gives new topics. With `refuse_partition_mismatch` (the worker)
    an events topic of another partition count raises PartitionCountMismatch before anything is
    created (`events_partitions_mismatch`).
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
        replication = replication_for(settings, live_brokers(admin))
        existing = set(admin.list_topics())
        if refuse_partition_mismatch and settings.events_topic in existing:
            mismatch = events_partitions_mismatch(settings, admin)
            if mismatch is not None:
                raise PartitionCountMismatch(mismatch)
        missing = [
            NewTopic(
                name,
                partitions,
                replication.factor,
                topic_configs=topic_configs(settings, name, replication),
            )
            for name, partitions in wanted.items()
            if name not in existing
        ]
        if missing:
            # Another worker may create a topic between our list and create calls.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
            log.info(
                "created topics %s with replication factor %d, min.insync.replicas %d",
                ", ".join(f"{t.name}({t.num_partitions})" for t in missing),
                replication.factor,
                replication.min_insync_replicas,
            )
        present = [name for name in wanted if name in existing]
        if present:
            _warn_on_mismatch(admin, present, wanted, replication)
    except KafkaError as exc:
        raise kafka_unreachable(settings, exc) from exc
    finally:
        admin.close()
    return replication


def _warn_on_mismatch(
    admin: KafkaAdminClient, names: list[str], wanted: dict[str, int], replication: Replication
) -> None:
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
        copies = min((len(p["replica_nodes"]) for p in description["partitions"]), default=replication.factor)
        if copies < replication.factor:
            log.warning(
                "topic %s keeps %d copies of its partitions where new topics get %d; existing topics "
                "are not re-replicated (kafka-reassign-partitions does that)",
                name,
                copies,
                replication.factor,
            )


def events_partitions_mismatch(settings: Settings, admin: KafkaAdminClient) -> str | None:
    """Why the events topic cannot be consumed with PROFILESTREAM_EVENTS_PARTITIONS, or None.

    The worker places each user's window, its changelog record and each partition's position by
    murmur2(key) modulo that setting, and sends a record found on another partition than that
    formula gives back to its user's partition (`stream.worker.reroute`). With a topic of another
    partition count producers place users by the topic's count, the two disagree for most users,
    and a partition past the setting has no position key at all; so any difference is refused.
    Adopting the topic's count instead would move every user's changelog record to another
    partition of the existing changelog topic (its count is fixed at creation), which the tables
    cannot survive without a rebuild.
    """
    descriptions = admin.describe_topics([settings.events_topic])
    have = next((len(d["partitions"]) for d in descriptions if d["name"] == settings.events_topic), 0)
    if have in (0, settings.events_partitions):
        return None
    return (
        f"the events topic {settings.events_topic} has {have} partitions but "
        f"PROFILESTREAM_EVENTS_PARTITIONS={settings.events_partitions}; set "
        f"PROFILESTREAM_EVENTS_PARTITIONS={have} (a topic is never resized by profilestream; a "
        "new partition count needs a new events topic and a replay into it)"
    )
