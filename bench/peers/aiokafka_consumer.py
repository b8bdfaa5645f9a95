"""The `items`-mode job as a bare aiokafka consumer: the floor for this job in Python.

One consumer in the group, `getmany` until 500 events or 200 ms (the worker's batch bounds), the
windows in a dict in memory, the job's maths inline on the event loop, one Redis pipeline per
batch, then a commit. Configured by the same PROFILESTREAM_* environment as the worker.

    python -m bench.peers.aiokafka_consumer --metrics-port 9101
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.peers.job import WRITE_IF_NEWER_LUA, Entry, Job, PeerMetrics, add_event, parse, redis_args
from stream.core.settings import load_settings
from stream.redis.client import redis_async

log = logging.getLogger(__name__)


async def run(metrics_port: int) -> None:
    settings = load_settings({})
    job = Job.load(settings)
    metrics = PeerMetrics()
    metrics.serve(metrics_port)
    redis = redis_async(settings)
    await redis.script_load(WRITE_IF_NEWER_LUA)
    consumer = AIOKafkaConsumer(
        settings.events_topic,
        bootstrap_servers=settings.kafka_servers,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    windows: dict[str, list[Entry]] = {}
    max_events, wait_s = settings.batch_max_events, settings.batch_max_wait_ms / 1000
    await consumer.start()
    try:
        while True:
            batch: list[Any] = []
            deadline = time.monotonic() + wait_s
            while len(batch) < max_events and (left := deadline - time.monotonic()) > 0:
                fetched = await consumer.getmany(
                    timeout_ms=int(left * 1000), max_records=max_events - len(batch)
                )
                for records in fetched.values():
                    batch.extend(records)
            if not batch:
                continue
            changed: dict[str, list[Entry]] = {}
            valid = 0
            for record in batch:
                try:
                    value = json.loads(record.value)
                    entry = parse(value)
                except ValueError:
                    entry = None
                if entry is None:
                    continue
                valid += 1
                user = value["user_id"]
                changed[user] = add_event(windows.setdefault(user, []), entry, job.max_events)
            args = redis_args(job, changed, int(time.time() * 1000))
            async with redis.pipeline(transaction=False) as pipe:
                for call in args:
                    pipe.evalsha(*call)
                await pipe.execute()
            now_s = time.time()
            for record in batch:
                metrics.freshness_ms.observe(max(0.0, now_s * 1000 - record.timestamp))
            metrics.events.inc(valid)
            await consumer.commit()
    finally:
        await consumer.stop()
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args.metrics_port))


if __name__ == "__main__":
    main()
