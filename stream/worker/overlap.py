"""Run a side write while the batch's main work goes on, and never leave it behind.

The recent-activity write needs no profile, so the worker sends it before the compute: Redis
runs its scripts while the compute thread works (`stream.worker.app`, issue 19). A side task
started that way must not outlive its batch: when the main work fails, the batch is retried, and
a side write still running would race the retry's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def alongside(side: Coroutine[Any, Any, None], main: Awaitable[T]) -> T:
    """Run ``side`` as a task while awaiting ``main``; return ``main``'s result once both are done.

    If ``main`` raises (or is cancelled), ``side`` is cancelled and awaited, and ``main``'s
    exception propagates unchanged. If ``main`` succeeds and ``side`` raised, ``side``'s
    exception propagates. ``side`` must be safe to repeat: the caller retries the whole batch.
    """
    task = asyncio.ensure_future(side)
    try:
        result = await main
    except BaseException:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    await task
    return result
