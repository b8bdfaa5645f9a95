"""`delete_prefix` against the real Redis: a tool's namespace goes, every other key stays."""

from __future__ import annotations

import pytest

from stream.core.settings import Settings
from stream.redis.client import delete_prefix, redis_sync

pytestmark = pytest.mark.integration


def test_delete_prefix_removes_only_the_prefixs_keys_in_batches(isolated: Settings) -> None:
    neighbour = isolated.model_copy(update={"redis_key_prefix": isolated.redis_key_prefix + "-x"})
    client = redis_sync(isolated)
    try:
        for n in range(25):
            client.set(isolated.redis_key("reco", f"u{n}"), "1")
        client.set(neighbour.redis_key("reco", "u1"), "kept")
        # A batch smaller than the key count: the deletion loops.
        assert delete_prefix(isolated, batch=10) == 25
        assert list(client.scan_iter(match=f"{isolated.redis_key_prefix}:*")) == []
        assert client.get(neighbour.redis_key("reco", "u1")) == b"kept"
        assert delete_prefix(neighbour) == 1
    finally:
        client.close()
