"""The inline first step of Faust's per-record hand-off (stream/worker/handoff.py)."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from mode import Service
from mode.utils.locks import Event

from stream.worker import handoff
from stream.worker.handoff import (
    PerBatchMonitor,
    RawBytesSchema,
    Resumed,
    use_inline_handoff,
    with_inline_first_step,
)


class _Inline(Service):
    wait_first = with_inline_first_step(Service.wait_first)  # type: ignore[assignment]


def _count_tasks(loop: asyncio.AbstractEventLoop) -> list[int]:
    created = [0]

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        created[0] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    return created


@pytest.fixture(autouse=True)
def _no_unawaited_coroutines() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def test_a_callback_that_does_not_wait_runs_inline_without_tasks() -> None:
    async def main() -> None:
        created = _count_tasks(asyncio.get_running_loop())
        service, flow_suspended, queue = _Inline(), Event(), asyncio.Queue[int](maxsize=10)

        async def callback(n: int) -> int:
            await queue.put(n)
            return n * 2

        first = callback(21)
        results = await service.wait_first(first, flow_suspended.wait())
        assert results.done == [first]
        assert results.results == [42]
        assert not results.stopped
        assert queue.get_nowait() == 21
        # mode's own wait_first makes four tasks here (callback, flow, stopped, crashed).
        assert created[0] == 0

    asyncio.run(main())


def test_a_callback_that_waits_finishes_when_the_queue_has_room() -> None:
    async def main() -> None:
        service, flow_suspended, queue = _Inline(), Event(), asyncio.Queue[str](maxsize=1)
        queue.put_nowait("ahead")

        async def callback(value: str) -> str:
            await queue.put(value)
            return value

        async def make_room() -> None:
            await asyncio.sleep(0.02)
            assert queue.get_nowait() == "ahead"

        room = asyncio.ensure_future(make_room())
        results = await service.wait_first(callback("blocked"), flow_suspended.wait())
        await room
        assert isinstance(results.done[0], Resumed)
        assert results.results == ["blocked"]
        assert queue.get_nowait() == "blocked"

    asyncio.run(main())


def test_a_waiting_callback_is_interrupted_by_a_flow_suspension_as_before() -> None:
    async def main() -> None:
        service, flow_suspended, queue = _Inline(), Event(), asyncio.Queue[str](maxsize=1)
        queue.put_nowait("ahead")

        async def callback(value: str) -> None:
            await queue.put(value)

        async def suspend() -> None:
            await asyncio.sleep(0.02)
            flow_suspended.set()

        suspending = asyncio.ensure_future(suspend())
        results = await service.wait_first(callback("dropped"), flow_suspended.wait())
        await suspending
        await asyncio.sleep(0)
        assert results.results == [True]
        assert not isinstance(results.done[0], Resumed)
        # The put was cancelled with the rest of the callback: nothing joined the queue.
        assert queue.qsize() == 1

    asyncio.run(main())


def test_an_error_in_the_callback_propagates() -> None:
    async def main() -> None:
        async def callback() -> None:
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            await _Inline().wait_first(callback(), Event().wait())

    asyncio.run(main())


def test_a_stopped_service_goes_through_modes_wait_first() -> None:
    async def main() -> None:
        service = _Inline()
        service._stopped.set()
        ran = []

        async def callback() -> None:
            ran.append(True)

        results = await service.wait_first(callback(), Event().wait())
        assert results.stopped

    asyncio.run(main())


def test_use_inline_handoff_wraps_fausts_consumer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Consumer, "wait_first", Service.wait_first)
    use_inline_handoff()
    use_inline_handoff()
    installed = Consumer.wait_first
    assert getattr(installed, handoff._MARK) is Service.wait_first


def test_the_monitor_skips_per_record_bookkeeping_and_keeps_the_rest() -> None:
    monitor = PerBatchMonitor()
    message = SimpleNamespace(topic="events", partition=0, offset=7)
    monitor.on_message_in(TP("events", 0), 7, message)  # type: ignore[arg-type]
    assert monitor.on_stream_event_in(TP("events", 0), 7, None, None) is None  # type: ignore[arg-type]
    monitor.on_message_out(TP("events", 0), 7, message)  # type: ignore[arg-type]
    # Faust's Monitor counts the record and stamps it (message.time_in) here.
    assert monitor.messages_received_total == 0
    assert not hasattr(message, "time_in")
    # Per-commit figures are still kept.
    monitor.on_tp_commit({TP("events", 0): 8})
    assert monitor.tp_committed_offsets[TP("events", 0)] == 8


@pytest.mark.parametrize(
    "key, value", [(b"user-1", b'{"a": 1}'), (b"\xff\xfe", b"\x00\x81 not utf-8"), (None, None)]
)
def test_the_raw_schema_decodes_to_the_brokers_bytes_without_the_codec_registry(
    key: bytes | None, value: bytes | None
) -> None:
    import faust

    app = faust.App("handoff-schema-test", broker="kafka://localhost:1")
    registry_calls: list[str] = []
    app.serializers.loads_key = lambda *a, **k: registry_calls.append("key")  # type: ignore[method-assign]
    app.serializers.loads_value = lambda *a, **k: registry_calls.append("value")  # type: ignore[method-assign]
    topic = app.topic("events", schema=RawBytesSchema())
    message = SimpleNamespace(key=key, value=value, headers={}, topic="events", partition=0)
    schema: Any = topic.schema

    event = asyncio.run(schema.compile(app)(message))

    assert (event.key, event.value) == (key, value)
    assert registry_calls == []
    # Sending keeps the raw serializers.
    assert (schema.key_serializer, schema.value_serializer) == ("raw", "raw")
