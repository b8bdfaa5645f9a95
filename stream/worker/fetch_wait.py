"""The worker consumer's fetch wait, which Faust fixes at 1,500 ms.

aiokafka keeps one fetch request in flight per broker, and leaves out of it every partition whose
fetched records are still waiting to be taken. A busy worker always has some waiting, so the next
request often holds only partitions with nothing new (the assignor's topic, quiet partitions),
and the broker keeps such a request for the whole wait. New events on the busy partitions were
fetched up to 1.5 s late: at 1,000 events/s p99 freshness was 4.7 s, and 0.99 s with a 100 ms
wait (`bench/pipeline.py`, same machine and load). Faust has no setting for it; this wraps the
factory of its worker consumer so that the wait comes from `kafka_fetch_max_wait_ms`.

The same wrapper makes the consumer read committed records only (``isolation_level``
``read_committed``). Faust reads uncommitted records unless its own exactly-once mode is on, so a
transaction another producer (Kafka Streams, Flink, a transactional client) aborted was applied
to the windows as if it had happened.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_MARK = "__profilestream_fetch_wait__"
ISOLATION_LEVEL = "read_committed"


def use_fetch_max_wait(max_wait_ms: int) -> None:
    """Give every worker consumer created from now on a fetch wait of `max_wait_ms`, reading
    committed records only."""
    create = AIOKafkaConsumerThread._create_worker_consumer
    original = getattr(create, _MARK, create)
    AIOKafkaConsumerThread._create_worker_consumer = with_fetch_max_wait(original, max_wait_ms)  # type: ignore[method-assign]


def with_fetch_max_wait(create: Callable[..., Any], max_wait_ms: int) -> Callable[..., Any]:
    @functools.wraps(create)
    def create_worker_consumer(thread: Any, transport: Any) -> Any:
        consumer = create(thread, transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher; not started yet here.
        consumer._fetch_max_wait_ms = max_wait_ms
        consumer._isolation_level = ISOLATION_LEVEL
        return consumer

    setattr(create_worker_consumer, _MARK, create)
    return create_worker_consumer
