"""Dead letters are bounded and acknowledged by the broker before the batch goes on."""

from __future__ import annotations

import asyncio
from typing import Any

from stream.core.deadletter import HEADER_ORIGINAL_BYTES, DeadLetter, SourcePosition, header_pairs
from stream.worker.app import send_dead_letters
from stream.worker.metrics import WorkerMetrics


class SlowAckTopic:
    """Like a Faust topic: `send` queues the record and returns a future the broker's ack completes."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.acked = 0

    async def send(self, **record: Any) -> asyncio.Future[None]:
        self.sent.append(record)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def ack() -> None:
            self.acked += 1
            future.set_result(None)

        asyncio.get_running_loop().call_later(0.05, ack)
        return future

    def get_topic_name(self) -> str:
        return "dlq"


def test_send_dead_letters_returns_only_once_the_broker_acked_every_letter() -> None:
    topic = SlowAckTopic()
    letters = [
        DeadLetter(b"u", b"x" * 2_000_000, "$", "too big", SourcePosition("events", 0, n)) for n in range(3)
    ]

    async def run() -> int:
        await send_dead_letters(topic, letters, WorkerMetrics(), max_payload_bytes=1_000)
        return topic.acked

    assert asyncio.run(run()) == 3
    assert all(len(record["value"]) == 1_000 for record in topic.sent)
    assert all(dict(record["headers"])[HEADER_ORIGINAL_BYTES] == b"2000000" for record in topic.sent)


def test_header_pairs_reads_faust_lists_mappings_and_none() -> None:
    assert header_pairs(None) == ()
    assert header_pairs([("trace", b"1"), ("x", None)]) == (("trace", b"1"), ("x", None))
    assert header_pairs({"trace": b"1"}) == (("trace", b"1"),)
