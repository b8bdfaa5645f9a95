"""The collector app with a fake producer and a fixed clock, for in-process HTTP tests."""

from __future__ import annotations

from typing import Any

from stream.core.settings import Settings
from stream.ingest.collector import create_collector_app
from stream.ingest.gateway import CollectorConfig
from tests.support.fakes import FakeProducer


def collector_app(settings: Settings, producer: FakeProducer, now_ms: int, **config: Any) -> Any:
    """The ASGI app; `config` are CollectorConfig fields; every request is received at `now_ms`."""
    return create_collector_app(
        settings,
        producer_factory=lambda _: producer,
        config=CollectorConfig(**config),
        clock_ms=lambda: now_ms,
    )
