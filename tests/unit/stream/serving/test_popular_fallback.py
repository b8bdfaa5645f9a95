"""The popular fallback serves catalogue items only, once the index is loaded."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from stream.core.settings import load_settings
from stream.serving.lookups import RecoClient


class PopularOnlyRedis:
    """No stored profile; `popular` holds a retired item above the catalogue ones."""

    async def hget(self, key: str, field: str) -> None:
        return None

    async def zrevrange(self, key: str, start: int, end: int, withscores: bool = False) -> list[Any]:
        ranked = [(b"retired-item", 9.0), (b"sku-1", 4.0), (b"sku-2", 2.0), (b"sku-3", 1.0)]
        return ranked[start : end + 1]


def test_items_the_index_no_longer_holds_are_skipped_and_k_is_still_filled() -> None:
    client = RecoClient(PopularOnlyRedis(), load_settings({}))  # type: ignore[arg-type]
    catalogue = SimpleNamespace(row=lambda item: None if item == "retired-item" else 0)
    client._search = SimpleNamespace(catalogue=catalogue)  # type: ignore[assignment]
    result = asyncio.run(client.get("someone", k=2))
    assert result.source == "popular"
    assert [r.item_id for r in result.items] == ["sku-1", "sku-2"]
