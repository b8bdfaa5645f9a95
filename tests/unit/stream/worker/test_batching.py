"""Micro-batches: full, or due once nothing more waits (stream/worker/batching.py).

Run through a real Faust agent's test context (an in-memory channel; no broker is contacted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
import pytest

from stream.worker.batching import take_batches

Batch = list[Any]  # [taken at (s since start), done at (None while processed), values]


def run_agent(
    max_events: int,
    within_s: float,
    feed: Callable[[Any, list[Batch]], Awaitable[None]],
    *,
    process_s: float = 0.0,
    settle_s: float = 0.5,
    waiting: list[int] | None = None,
    on_add: Callable[[Any], None] | None = None,
) -> list[Batch]:
    """Batches an agent reading with `take_batches` got while `feed(agent, batches)` put values;
    `waiting` gets the records left in the stream's channel at the end of each batch's processing."""
    app = faust.App("batching-test", broker="kafka://127.0.0.1:1", store="memory://")
    batches: list[Batch] = []
    started = [0.0]

    @app.agent()
    async def collect(stream: faust.StreamT[int]) -> None:
        async for batch in take_batches(cast(faust.Stream[int], stream), max_events, within_s, on_add):
            entry: Batch = [time.monotonic() - started[0], None, [e.value for e in batch]]
            batches.append(entry)
            await asyncio.sleep(process_s)
            if waiting is not None:
                waiting.append(cast(Any, stream.channel).queue.qsize())
            entry[1] = time.monotonic() - started[0]

    async def main() -> None:
        async with collect.test_context() as agent:
            started[0] = time.monotonic()
            await feed(agent, batches)
            await asyncio.sleep(settle_s)

    asyncio.run(main())
    return batches


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_every_value_arrives_once_in_order_and_no_batch_exceeds_the_bound() -> None:
    async def feed(agent: Any, _: list[Batch]) -> None:
        for value in range(23):
            await agent.put(value, wait=False)

    batches = run_agent(5, 0.05, feed)
    assert [v for _, _, values in batches for v in values] == list(range(23))
    assert max(len(values) for _, _, values in batches) == 5


def test_a_batch_that_is_not_full_waits_until_due_after_the_previous_one_was_taken() -> None:
    async def feed(agent: Any, batches: list[Batch]) -> None:
        await agent.put(0, wait=False)  # the first batch is due at once
        await until(lambda: len(batches) == 1)
        await agent.put(1, wait=False)  # due only `within` after the first was taken

    batches = run_agent(100, 0.3, feed, settle_s=0.6)
    assert [values for _, _, values in batches] == [[0], [1]]
    assert batches[1][0] - batches[0][0] >= 0.29


def test_records_that_arrived_during_processing_go_at_once_when_due() -> None:
    """Faust's take_events would wait `within` again after the slow batch (fails this test)."""

    async def feed(agent: Any, batches: list[Batch]) -> None:
        await agent.put(0, wait=False)
        await until(lambda: len(batches) == 1)  # batch [0] is being processed (0.4 s)
        for value in range(1, 21):
            await agent.put(value, wait=False)

    batches = run_agent(100, 0.2, feed, process_s=0.4, settle_s=1.2)
    assert [values for _, _, values in batches][:2] == [[0], list(range(1, 21))]
    # Taken right after the first batch was done (the batch was due 0.2 s after the first was
    # taken, long before), with all twenty waiting records, not only the first of them.
    assert batches[1][0] - batches[0][1] < 0.1


def test_the_next_batch_fills_while_one_is_processed() -> None:
    """Records that arrive while a batch is processed leave the channel for the buffer, up to
    `max_events`, so Faust's per-record path runs beside the processing (issue 19 part 10);
    `take_events` left them in the channel until the batch was done (fails this test)."""

    async def feed(agent: Any, batches: list[Batch]) -> None:
        await agent.put(0, wait=False)
        await until(lambda: len(batches) == 1)  # batch [0] is being processed (0.4 s)
        for value in range(1, 9):
            await agent.put(value, wait=False)

    waiting: list[int] = []
    batches = run_agent(5, 0.05, feed, process_s=0.4, settle_s=1.5, waiting=waiting)
    assert [values for _, _, values in batches] == [[0], [1, 2, 3, 4, 5], [6, 7, 8]]
    # While [0] was processed, five records went to the buffer (it holds no more than a batch)
    # and three waited in the channel.
    assert waiting[0] == 3


def test_each_record_is_handed_to_on_add_as_the_buffer_takes_it() -> None:
    """`on_add` sees each record once, in order, when it enters the buffer: the records of the next
    batch while the one before is still processed (the worker decodes them then, issue 19 part
    11), not when their own batch is taken."""
    seen: list[tuple[int, int, bool]] = []  # value, batches taken by then, the first one done
    batches: list[Batch] = []

    def on_add(event: Any) -> None:
        seen.append((event.value, len(batches), bool(batches) and batches[0][1] is not None))

    async def feed(agent: Any, taken: list[Batch]) -> None:
        batches[:] = []
        await agent.put(0, wait=False)
        await until(lambda: len(taken) == 1)
        batches.append(taken[0])
        for value in range(1, 4):
            await agent.put(value, wait=False)

    result = run_agent(5, 0.05, feed, process_s=0.4, settle_s=1.0, on_add=on_add)
    assert [values for _, _, values in result] == [[0], [1, 2, 3]]
    assert [value for value, _, _ in seen] == [0, 1, 2, 3]
    # 1..3 reached on_add while batch [0] was processed, before their own batch was taken.
    assert all(taken == 1 and not first_done for value, taken, first_done in seen if value)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_events >= 1"):
        take_batches(None, 0, 0.1)  # type: ignore[arg-type]
