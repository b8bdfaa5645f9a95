"""Reads for page renderers and operators: what the stream wrote to Redis about a user."""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from stream.settings import Settings
from stream.sinks import RECENT_KIND


async def recent_activity(settings: Settings, user_id: str) -> list[dict[str, Any]]:
    """A user's recent events, oldest first, as `RedisActivitySink` wrote them."""
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        raw = await redis.lrange(settings.redis_key(RECENT_KIND, user_id), 0, -1)
    finally:
        await redis.aclose()
    return [json.loads(item) for item in raw]
