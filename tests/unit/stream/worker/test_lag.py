"""The lag metric covers every assigned partition and shows an unreadable one as NaN, not 0."""

from __future__ import annotations

import asyncio
import math

from faust.types import TP

from stream.core.settings import load_settings
from stream.kafka.offsets import encode_position, marker_key
from stream.worker.metrics import WorkerMetrics
from stream.worker.positions import PositionKeeper

TOPIC = "profilestream.events.v1"


class FakeConsumer:
    def __init__(self, highwaters: dict[int, int | Exception]) -> None:
        self.highwaters = highwaters

    def assignment(self) -> set[TP]:
        return {TP(TOPIC, p) for p in self.highwaters} | {TP("other-topic", 0)}

    def highwater(self, tp: TP) -> int:
        value = self.highwaters[tp.partition]
        if isinstance(value, Exception):
            raise value
        return value

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, 0)


class FakeApp:
    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer


def gauge(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None
    return value


def test_every_assigned_partition_has_a_lag_and_errors_are_not_zero() -> None:
    settings = load_settings({})
    table = {marker_key(0, 4): encode_position(90), marker_key(2, 4): encode_position(10)}
    consumer = FakeConsumer({0: 100, 1: 7, 2: RuntimeError("no highwater yet")})
    metrics = WorkerMetrics()
    keeper = PositionKeeper(FakeApp(consumer), table, settings, metrics)  # type: ignore[arg-type]
    asyncio.run(keeper.update_lag())
    assert gauge(metrics, "profilestream_partition_lag", partition="0") == 10
    assert gauge(metrics, "profilestream_partition_lag", partition="1") == 7  # never stored: from 0
    assert math.isnan(gauge(metrics, "profilestream_partition_lag", partition="2"))
    assert math.isnan(gauge(metrics, "profilestream_consumer_lag"))
    assert gauge(metrics, "profilestream_consumer_lag_errors_total") == 1

    consumer.highwaters = {0: 100, 1: 7}  # partition 2 moved to another worker
    asyncio.run(keeper.update_lag())
    assert gauge(metrics, "profilestream_consumer_lag") == 17
    assert metrics.registry.get_sample_value("profilestream_partition_lag", {"partition": "2"}) is None


class RevokedDuringSeek(FakeConsumer):
    """The partition is assigned when the idle check looks, gone when the seek runs."""

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        from aiokafka.errors import IllegalStateError

        raise IllegalStateError(f"No current assignment for partition {next(iter(offsets))}")


def test_a_rewind_of_a_partition_revoked_meanwhile_does_not_crash_the_worker() -> None:
    # Seen in bench/scale_out.py with four workers joining: the seek raised IllegalStateError and
    # Faust crashed the worker.
    consumer = RevokedDuringSeek({0: 100})
    keeper = PositionKeeper(FakeApp(consumer), {}, load_settings({}), WorkerMetrics())  # type: ignore[arg-type]
    asyncio.run(keeper._rewind(TP(TOPIC, 0), 5, "test"))
    # Not assigned at all any more: not even tried.
    asyncio.run(keeper._rewind(TP(TOPIC, 3), 5, "test"))


class RevokedBeforePosition(FakeConsumer):
    async def position(self, tp: TP) -> int:
        from aiokafka.errors import IllegalStateError

        raise IllegalStateError(f"Partition {tp} is not assigned")


def test_an_idle_check_of_a_partition_revoked_meanwhile_does_not_crash_the_worker() -> None:
    consumer = RevokedBeforePosition({0: 100, 1: 7})
    app = FakeApp(consumer)
    app.rebalancing = app.in_recovery = False  # type: ignore[attr-defined]
    app.flow_control = type("Flow", (), {"is_active": lambda self: True})()  # type: ignore[attr-defined]
    keeper = PositionKeeper(app, {}, load_settings({}), WorkerMetrics())  # type: ignore[arg-type]
    keeper._last_batch_s = -1e9  # idle for long
    asyncio.run(keeper.check_idle())
