"""The search query batcher holds at most `search_max_queued_queries` texts for the encoder."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from stream.core.errors import Overloaded
from stream.profiles.query_cache import QueryVectorCache
from stream.serving.search_service import BatchingQueryEncoder
from tests.support.fakes import BagOfWordsEncoder


class GatedEncoder(BagOfWordsEncoder):
    """Encodes only once `gate` is set: the batcher's queue fills meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.gate.wait(5)
        return super().encode(texts)


def test_a_search_beyond_the_queue_bound_is_refused_and_the_others_are_served() -> None:
    encoder = GatedEncoder()
    batcher = BatchingQueryEncoder(QueryVectorCache(encoder, 100), max_queued=2)

    async def scenario() -> None:
        first = asyncio.create_task(batcher.encode(["red pens", "blue ink"]))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded, match="PROFILESTREAM_SEARCH_MAX_QUEUED_QUERIES=2"):
            await batcher.encode(["green paper"])
        # A text already waiting shares its pending encoding: no new room needed.
        shared = asyncio.create_task(batcher.encode(["red pens"]))
        encoder.gate.set()
        assert set(await first) == {"red pens", "blue ink"}
        assert set(await shared) == {"red pens"}
        assert set(await batcher.encode(["green paper"])) == {"green paper"}

    try:
        asyncio.run(scenario())
    finally:
        batcher.close()


def test_search_cuts_recent_activity_at_a_forget_by_receive_order() -> None:
    from stream.core.events import EventType
    from stream.serving.search import UserSignals, parse_activity

    entries = parse_activity(
        [
            # Received after the forget (at 1_000) though a slow clock stamped it earlier: usable.
            {"event_id": "slow", "type": "search", "ts_ms": 900, "query": "pens", "received_ms": 1_001},
            # Received before the forget, a fast clock stamped it later: cut.
            {"event_id": "fast", "type": "search", "ts_ms": 2_000, "query": "ink", "received_ms": 999},
            {"event_id": "old", "type": "view", "ts_ms": 998, "item_id": "sku-1"},
        ]
    )
    signals = UserSignals(None, tuple(entries), forgotten_ts_ms=1_000)
    assert [e.event_id for e in signals.usable_activity()] == ["slow"]
    assert entries[0].type is EventType.SEARCH
