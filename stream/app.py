"""The Faust app: consume behaviour events per user, dead-letter bad ones, hand good ones to a sink.

Events are read in micro-batches (`batch_max_events` or `batch_max_wait_ms`, whichever comes
first); each batch is decoded, its invalid messages go to the dead-letter topic with their
original bytes and the reason, and its valid events go to the sink in one write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import cast

import faust
from faust.types import EventT

from stream.batch import RawMessage, decode_batch
from stream.deadletter import SourcePosition
from stream.events import EventLimits
from stream.settings import Settings
from stream.sinks import EventSink, RedisActivitySink

log = logging.getLogger(__name__)

SinkFactory = Callable[[Settings], EventSink]


def create_app(settings: Settings, sink_factory: SinkFactory = RedisActivitySink.from_settings) -> faust.App:
    app = faust.App(
        settings.consumer_group,
        broker=[f"kafka://{server}" for server in settings.kafka_servers],
        store=f"{settings.table_store}://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.events_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        # Our own topics are created by ensure_topics with explicit partition counts.
        topic_allow_declare=False,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_in_thread=False,
    )
    events_topic = app.topic(settings.events_topic, key_serializer="raw", value_serializer="raw")
    dead_letter_topic = app.topic(settings.dead_letter_topic, key_serializer="raw", value_serializer="raw")
    limits = EventLimits.from_settings(settings)

    @app.agent(events_topic, name="profilestream.events")
    async def process_events(stream: faust.StreamT[bytes]) -> None:
        sink = sink_factory(settings)
        try:
            # take_events lives on faust.Stream, which the agent receives, not on StreamT.
            async for batch in cast(faust.Stream[bytes], stream).take_events(
                settings.batch_max_events, within=settings.batch_max_wait_ms / 1000
            ):
                await _process_batch(batch, sink)
        finally:
            await sink.close()

    async def _process_batch(batch: Sequence[EventT[bytes]], sink: EventSink) -> None:
        started = time.perf_counter()
        messages = [
            RawMessage(
                key=event.message.key,
                value=event.message.value,
                source=SourcePosition(event.message.topic, event.message.partition, event.message.offset),
            )
            for event in batch
        ]
        decoded = decode_batch(messages, limits=limits, now_ms=int(time.time() * 1000))
        for letter in decoded.dead_letters:
            await dead_letter_topic.send(key=letter.key, value=letter.raw, headers=letter.headers())
        if decoded.dead_letters:
            first = decoded.dead_letters[0]
            log.warning(
                "dead-lettered %d messages to %s; first at %s: field %r: %s",
                len(decoded.dead_letters),
                settings.dead_letter_topic,
                first.source,
                first.field,
                first.reason,
            )
        await sink.write(decoded.events)
        log.info(
            "batch: %d events, %d dead letters, %.1f ms",
            len(decoded.events),
            len(decoded.dead_letters),
            (time.perf_counter() - started) * 1000,
        )

    return app


def run_worker(settings: Settings) -> None:
    """Run one worker until SIGINT/SIGTERM; several share the load as one consumer group."""
    from stream.topics import ensure_topics

    ensure_topics(settings)
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
