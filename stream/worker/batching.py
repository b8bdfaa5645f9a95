"""Micro-batches from a Faust stream: full, or due and nothing more waiting.

A batch is taken when it holds `max_events`, or once `within_s` have passed since the previous
batch was taken and no more records are waiting in the stream's channel (a commit interval, as
Quix Streams' `commit_interval`). Faust's `Stream.take_events` instead waits up to `within_s`
after the previous batch was *done*, for a batch that is not full, although the records that
arrived while that batch was processed have been waiting all along: at 1,000 events/s one worker
spent about 230 ms per batch in that wait (bench/README.md, issue 19 part 5), and the wait made
the batches, and so their processing, longer still.

Taking a due batch only once the channel is empty keeps batches as large as what has arrived:
taking whatever the buffer held the moment the time was up gave batches of a few records while
hundreds waited behind them, and small batches cost more per event.

While a batch is processed the buffer fills the next one, up to `max_events` (then the records
wait in the channel, whose bound pauses fetching): Faust's per-record path, the largest share of
the worker's event loop, then runs while the batch's compute does, not after it (`take_events`
takes nothing more meanwhile, which made the two take turns; issue 19 part 10). At most two
batches are held: the one processed and the next. The batch's events are acknowledged once the
consumer asks for the next batch; acknowledgements are off for the stream while it is read this
way.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import faust
from faust.types import ChannelT, EventT
from mode.utils.locks import Event

log = logging.getLogger(__name__)


def take_batches(
    stream: faust.Stream[Any],
    max_events: int,
    within_s: float,
    on_add: Callable[[EventT[Any]], None] | None = None,
) -> AsyncIterator[list[EventT[Any]]]:
    """Yield the stream's events in batches of 1..`max_events` (see the module docstring).

    `on_add` is called with each event as the buffer takes it (so while the batch before is
    processed, as a rule): per-record work that needs no earlier batch goes there. It must not
    raise; if it does, the stream crashes as for any error of the buffer.

    Raises ValueError when `max_events` < 1 or `within_s` < 0.
    """
    if max_events < 1 or within_s < 0:
        raise ValueError(f"need max_events >= 1 and within_s >= 0, got {max_events} and {within_s}")
    return _BatchBuffer(stream, max_events, within_s, on_add).batches()


class _BatchBuffer:
    def __init__(
        self,
        stream: faust.Stream[Any],
        max_events: int,
        within_s: float,
        on_add: Callable[[EventT[Any]], None] | None,
    ) -> None:
        self._stream = stream
        self._max_events = max_events
        self._within_s = within_s
        self._on_add = on_add
        self._events: list[EventT[Any]] = []
        self._wake = Event()  # set when the buffer gets its first event or becomes full
        self._consumed = Event()
        self._channel = aiter(stream.channel)
        self._taken_at = -math.inf

    async def add(self, value: Any) -> Any:
        """The stream's processor: buffer the current event (waits while the buffer is full)."""
        try:
            event = self._stream.current_event
            if event is None:
                raise RuntimeError("a record reached the batch buffer without its event")
            if self._on_add is not None:
                self._on_add(event)
            self._events.append(event)
            if len(self._events) == 1 or self._full():
                self._wake.set()
            if self._full():
                # Strict: no batch holds more than max_events.
                self._consumed.clear()
                await self._stream.wait(self._consumed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("adding a record to the batch buffer failed")
            await self._stream.crash(exc)
        return value

    def _full(self) -> bool:
        return len(self._events) >= self._max_events

    async def _until_due(self) -> None:
        """Return when the buffer is full, or due with nothing more waiting, or the stream stops."""
        loop = asyncio.get_running_loop()
        stream = self._stream
        while not self._full() and not stream.should_stop:
            left = self._taken_at + self._within_s - loop.time()
            if left > 0 or not self._events:
                self._wake.clear()
                await stream.wait(self._wake, timeout=left if left > 0 else max(self._within_s, 0.05))
            elif self._channel.queue.empty():  # type: ignore[attr-defined]  # a Channel clone
                return
            else:
                # Due, but records wait in the channel: let the stream's drainer add them (it
                # adds all it can before it yields); take the batch if it added none.
                before = len(self._events)
                await asyncio.sleep(0)
                if len(self._events) == before:
                    return

    async def batches(self) -> AsyncIterator[list[EventT[Any]]]:
        stream = self._stream
        enable_acks = stream.enable_acks
        stream.enable_acks = False
        stream.add_processor(self.add)
        # How take_events feeds its buffer too: the stream is drained in the background.
        stream._enable_passive(cast(ChannelT[Any], self._channel))
        try:
            while not stream.should_stop:
                await self._until_due()
                if not self._events or stream.should_stop:
                    continue
                self._taken_at = asyncio.get_running_loop().time()
                # The buffer starts the next batch while this one is processed.
                taken, self._events = self._events, []
                self._consumed.set()
                try:
                    yield taken
                finally:
                    for event in taken:
                        await stream.ack(event)
        finally:
            stream.enable_acks = enable_acks
            stream._processors.remove(self.add)  # as take_events detaches its processor
