"""The `items`-mode job as a Quix Streams application.

The per-user window lives in Quix's state (RocksDB, changelogged to Kafka, like the worker's Faust
table); a stateful `apply` adds each event to its user's window; a batching sink receives the new
windows and, at each checkpoint, computes and writes the changed users' recommendations. The
checkpoint comes every 200 ms or 500 messages (`commit_interval`, `commit_every`: the worker's
batch bounds), so a sink flush is one micro-batch. The sink handles all partitions' windows of a
checkpoint together (one product and one Redis pipeline), where `BatchingSink.write` would be
called once per partition. Configured by the same PROFILESTREAM_* environment as the worker.

    python -m bench.peers.quix_app --metrics-port 9102 --state-dir /tmp/quix-state
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from quixstreams import Application, State
from quixstreams.sinks import BatchingSink, SinkBatch
from redis import Redis

from bench.peers.job import WRITE_IF_NEWER_LUA, Entry, Job, PeerMetrics, add_event, parse, redis_args
from stream.core.settings import load_settings
from stream.redis.client import redis_sync

log = logging.getLogger(__name__)


class RecommendationSink(BatchingSink):
    """Computes and writes the recommendations of the users whose window changed."""

    def __init__(self, job: Job, redis: Redis, metrics: PeerMetrics) -> None:
        super().__init__()
        self.job = job
        self.redis = redis
        self.metrics = metrics

    def setup(self) -> None:
        self.redis.script_load(WRITE_IF_NEWER_LUA)

    def write(self, batch: SinkBatch) -> None:  # one partition; flush below takes them all
        self._write(list(batch))

    def flush(self) -> None:
        try:
            self._write([item for batch in self._batches.values() for item in batch])
        finally:
            self._batches.clear()

    def _write(self, items: list[Any]) -> None:
        if not items:
            return
        windows = {item.value["user"]: item.value["window"] for item in items}
        args = redis_args(self.job, windows, int(time.time() * 1000))
        pipe = self.redis.pipeline(transaction=False)
        for call in args:
            pipe.evalsha(*call)
        pipe.execute()
        now_ms = time.time() * 1000
        for item in items:
            self.metrics.freshness_ms.observe(max(0.0, now_ms - item.timestamp))
        self.metrics.events.inc(len(items))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings({})
    job = Job.load(settings)
    metrics = PeerMetrics()
    metrics.serve(args.metrics_port)
    app = Application(
        broker_address=",".join(settings.kafka_servers),
        consumer_group=settings.consumer_group,
        auto_offset_reset="earliest",
        commit_interval=settings.batch_max_wait_ms / 1000,
        commit_every=settings.batch_max_events,
        state_dir=args.state_dir,
        loglevel="WARNING",
        # librdkafka's default fetch wait is 500 ms; the worker's is set lower for the same reason.
        consumer_extra_config={"fetch.wait.max.ms": settings.kafka_fetch_max_wait_ms},
    )
    topic = app.topic(settings.events_topic, key_deserializer="str", value_deserializer="json")
    sdf = app.dataframe(topic)

    def update_window(value: dict[str, Any], state: State[str, Any]) -> dict[str, Any] | None:
        entry = parse(value)
        if entry is None:
            return None
        window: list[Entry] = add_event(state.get("window", []), entry, job.max_events)
        state.set("window", window)
        return {"user": value["user_id"], "window": window}

    sdf = sdf.apply(update_window, stateful=True).filter(lambda value: value is not None)
    client = redis_sync(settings)
    if not isinstance(client, Redis):  # the peer writes a whole batch in one pipeline, as v1 did
        raise SystemExit("the quix peer runs against a single Redis: set PROFILESTREAM_REDIS_CLUSTER=false")
    sdf.sink(RecommendationSink(job, client, metrics))
    app.run()


if __name__ == "__main__":
    main()
