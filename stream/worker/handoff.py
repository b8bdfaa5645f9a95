"""Faust's hand-off of each fetched record, without four asyncio tasks per record.

Faust's consumer passes every fetched record to its conductor with
``await self.wait_first(callback(message), self.suspend_flow.wait())``
(`faust.transport.consumer.Consumer._drain_messages`). mode's `Service.wait_first` wraps the
callback, that wait and the service's stopped and crashed events in four tasks, waits for the
first to finish and cancels the other three: about 40-120 µs of event-loop time per record on
this machine, where the callback itself takes under 1 µs (it puts the record on the agent's
queue). That was the largest single item of the worker's event loop at 2,000 events/s (py-spy).

The callback nearly always finishes without waiting: the agent's queue has room. This runs its
first step inline. If it finishes there, the outcome is the one `wait_first` reported (the
callback ran to its end, it is the winner, no event had fired: the stopped and crashed events are
checked first). If it has to wait (a full queue, back-pressure), the rest of the callback goes
through mode's `wait_first` unchanged, so a flow suspension, a stop or a crash interrupts it as
before. Installed once per process by `use_inline_handoff` (`stream.worker.app.run_worker`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from faust import Schema
from faust.sensors import Monitor, Sensor
from faust.transport.consumer import Consumer
from mode.services import WaitResults

_MARK = "__profilestream_inline_handoff__"

WaitFirst = Callable[..., Awaitable[WaitResults]]


def use_inline_handoff() -> None:
    """Give every Faust consumer the inline first step of `with_inline_first_step`."""
    current = Consumer.wait_first
    original = getattr(current, _MARK, current)
    Consumer.wait_first = with_inline_first_step(original)  # type: ignore[method-assign,assignment]


def with_inline_first_step(original: WaitFirst) -> WaitFirst:
    @functools.wraps(original)
    async def wait_first(self: Any, *coros: Any, timeout: Any = None) -> WaitResults:
        if (
            timeout is not None
            or not coros
            or not inspect.iscoroutine(coros[0])
            or self._stopped.is_set()
            or self._crashed.is_set()
        ):
            return await original(self, *coros, timeout=timeout)
        first, others = coros[0], coros[1:]
        try:
            pending = first.send(None)
        except StopIteration as finished:
            _close(others)
            return WaitResults([first], [finished.value], False)
        except BaseException:
            _close(others)
            raise
        return await original(self, Resumed(first, pending), *others)

    setattr(wait_first, _MARK, original)
    return wait_first


def _close(awaitables: tuple[Any, ...]) -> None:
    # Never started, so never awaited: closing them avoids Python's "never awaited" warning.
    for awaitable in awaitables:
        if inspect.iscoroutine(awaitable):
            awaitable.close()


class Resumed:
    """The rest of a coroutine that already ran up to its first wait (`pending`, what it yielded).

    Awaiting it forwards every value between the coroutine and the task that awaits it, as
    ``await coro`` would have from the start.
    """

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, signal = self._coro, self._pending
        while True:
            try:
                sent = yield signal
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation or anything thrown in goes on inside
                try:
                    signal = coro.throw(exc)
                except StopIteration as finished:
                    return finished.value
            else:
                try:
                    signal = coro.send(sent)
                except StopIteration as finished:
                    return finished.value


class PerBatchMonitor(Monitor):
    """Faust's monitor without its per-record hooks.

    Faust's `Monitor` times every record in and out of every stream, every table get and set and
    every send (about 2.4 % of the worker's interpreter time at 2,000 events/s, py-spy); those
    figures feed Faust's own web statistics, which this worker does not serve: its Prometheus
    metrics are its own (`stream.worker.metrics`). The per-record hooks are the sensor API's
    no-ops; commits, rebalances and assignments are still recorded.
    """

    on_message_in = Sensor.on_message_in
    on_stream_event_in = Sensor.on_stream_event_in
    on_stream_event_out = Sensor.on_stream_event_out
    on_message_out = Sensor.on_message_out
    on_table_get = Sensor.on_table_get
    on_table_set = Sensor.on_table_set
    on_table_del = Sensor.on_table_del
    on_send_initiated = Sensor.on_send_initiated
    on_send_completed = Sensor.on_send_completed


class RawBytesSchema(Schema[bytes, bytes]):
    """A topic's keys and values as the broker's bytes, without Faust's codec registry.

    With the ``raw`` serializer Faust still passes every record's key and value through its
    serializer registry on the way in (a lookup of the codec, a payload check, a model
    reconstruction attempt: 2.8 % of the worker's interpreter time at 2,000 events/s, py-spy) to
    return the same bytes. The worker reads ``event.message.key`` and ``.value`` itself and
    validates them (`stream.core.decode`), so loading is the identity here; sending (dead letters,
    moved identity events) keeps the ``raw`` serializers.
    """

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def loads_key(self, app: Any, message: Any, *, loads: Any = None, serializer: Any = None) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Any, *, loads: Any = None, serializer: Any = None) -> Any:
        return message.value
