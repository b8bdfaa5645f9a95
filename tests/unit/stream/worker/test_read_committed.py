"""The worker's consumer reads committed records only: an aborted transaction never reaches a window."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from stream.worker.fetch_wait import use_fetch_max_wait


@pytest.fixture
def restore_factory() -> Iterator[None]:
    original = AIOKafkaConsumerThread.__dict__["_create_worker_consumer"]
    yield
    AIOKafkaConsumerThread._create_worker_consumer = original  # type: ignore[method-assign]


def test_the_worker_consumer_reads_committed_records_only(
    restore_factory: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        AIOKafkaConsumerThread,
        "_create_worker_consumer",
        lambda thread, transport: SimpleNamespace(
            _fetch_max_wait_ms=1500, _isolation_level="read_uncommitted"
        ),
    )
    use_fetch_max_wait(100)
    consumer: Any = AIOKafkaConsumerThread._create_worker_consumer(object(), object())  # type: ignore[arg-type]
    assert consumer._isolation_level == "read_committed"


def test_aiokafka_still_builds_its_fetcher_from_the_attribute_we_set() -> None:
    from aiokafka import AIOKafkaConsumer

    assert "isolation_level=self._isolation_level" in inspect.getsource(AIOKafkaConsumer.start)
