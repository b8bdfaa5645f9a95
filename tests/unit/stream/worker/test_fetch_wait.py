"""The worker consumer's fetch wait comes from the settings, not Faust's fixed 1,500 ms."""

from __future__ import annotations

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


def test_a_created_consumer_gets_the_configured_wait_and_reapplying_does_not_stack(
    restore_factory: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[Any] = []

    def faust_factory(thread: Any, transport: Any) -> Any:
        consumer = SimpleNamespace(_fetch_max_wait_ms=1500)
        created.append(consumer)
        return consumer

    monkeypatch.setattr(AIOKafkaConsumerThread, "_create_worker_consumer", faust_factory)
    use_fetch_max_wait(100)
    use_fetch_max_wait(250)  # a second worker app in one process: the last setting wins, once
    consumer = AIOKafkaConsumerThread._create_worker_consumer(object(), object())  # type: ignore[arg-type]
    assert consumer._fetch_max_wait_ms == 250
    assert created == [consumer]


def test_faust_still_builds_its_consumer_with_the_attribute_we_override() -> None:
    # If a faust or aiokafka upgrade renames either, this fails instead of the tuning going quiet.
    import inspect

    from aiokafka import AIOKafkaConsumer

    assert "fetch_max_wait_ms=1500" in inspect.getsource(AIOKafkaConsumerThread._create_worker_consumer)
    assert "self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)
