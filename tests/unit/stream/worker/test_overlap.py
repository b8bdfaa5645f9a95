"""`stream.worker.overlap.alongside`: the recent-activity write runs during the compute, and a
failed compute never leaves it running behind the batch that is about to be retried."""

from __future__ import annotations

import asyncio

import pytest

from stream.worker.overlap import alongside


class ComputeFailed(Exception):
    pass


class ActivityFailed(Exception):
    pass


def test_the_side_write_runs_while_the_main_work_waits() -> None:
    order: list[str] = []

    async def side() -> None:
        order.append("side started")
        await asyncio.sleep(0)
        order.append("side done")

    async def main() -> int:
        # The compute thread's wait: the side write gets the loop meanwhile.
        await asyncio.sleep(0)
        order.append("main resumed")
        await asyncio.sleep(0.01)
        return 7

    assert asyncio.run(alongside(side(), main())) == 7
    assert order == ["side started", "main resumed", "side done"]


def test_a_failed_main_cancels_the_side_write_and_its_error_comes_out_unchanged() -> None:
    side_state: list[str] = []

    async def side() -> None:
        try:
            side_state.append("running")
            await asyncio.sleep(10)
            side_state.append("finished")
        except asyncio.CancelledError:
            side_state.append("cancelled")
            raise

    async def main() -> int:
        await asyncio.sleep(0)
        raise ComputeFailed("compute")

    async def run() -> None:
        with pytest.raises(ComputeFailed):
            await alongside(side(), main())
        # Nothing of the side write is left on the loop once alongside returns.
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    asyncio.run(run())
    assert side_state == ["running", "cancelled"]


def test_a_failed_side_write_fails_the_batch_after_the_main_work() -> None:
    finished: list[str] = []

    async def side() -> None:
        raise ActivityFailed("activity")

    async def main() -> int:
        await asyncio.sleep(0.01)
        finished.append("main")
        return 1

    with pytest.raises(ActivityFailed):
        asyncio.run(alongside(side(), main()))
    assert finished == ["main"]
