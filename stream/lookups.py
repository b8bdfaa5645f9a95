"""Reads for page renderers: a user's recommendations (popular items for unknown users).

`RecoClient` is the Python client; `create_lookup_app` serves the same over HTTP:
``GET /v1/users/{user_id}/recommendations?k=10``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis.asyncio import Redis

from stream.reco_store import POPULAR_KIND, RECO_KIND, Recommendation
from stream.settings import Settings
from stream.sinks import RECENT_KIND

MAX_K = 1000


@dataclass(frozen=True, slots=True)
class RecoResult:
    user_id: str
    items: tuple[Recommendation, ...]
    # "profile": computed from the user's own window; "popular": the cold-start fallback.
    source: Literal["profile", "popular"]
    model_version: str | None = None
    window_newest_ts_ms: int | None = None
    computed_at_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "source": self.source,
            "items": [{"item_id": i.item_id, "score": i.score, "reason": i.reason} for i in self.items],
            "model_version": self.model_version,
            "window_newest_ts_ms": self.window_newest_ts_ms,
            "computed_at_ms": self.computed_at_ms,
        }


class RecoClient:
    """One Redis round trip per known user; a second one for the popular fallback."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._popular_key = f"{settings.redis_key_prefix}:{POPULAR_KIND}"

    @classmethod
    def from_settings(cls, settings: Settings) -> RecoClient:
        return cls(Redis.from_url(settings.redis_url.get_secret_value()), settings)

    async def get(self, user_id: str, k: int | None = None) -> RecoResult:
        k = min(k or self._settings.top_k, MAX_K)
        raw = await self._redis.hget(self._settings.redis_key(RECO_KIND, user_id), "json")
        if raw is not None:
            doc = json.loads(raw)
            return RecoResult(
                user_id=user_id,
                items=tuple(Recommendation(i["item_id"], i["score"], i["reason"]) for i in doc["items"][:k]),
                source="profile",
                model_version=doc["model_version"],
                window_newest_ts_ms=doc["window_newest_ts_ms"],
                computed_at_ms=doc["computed_at_ms"],
            )
        popular = cast(
            list[tuple[bytes, float]],
            await self._redis.zrevrange(self._popular_key, 0, k - 1, withscores=True),
        )
        # Forward-decayed counts are only meaningful relative to each other: scale the top one to 1.
        top = float(popular[0][1]) if popular else 1.0
        return RecoResult(
            user_id=user_id,
            items=tuple(
                Recommendation(item.decode(), float(score) / top, "popular right now")
                for item, score in popular
            ),
            source="popular",
        )

    async def newest_event_id(self, user_id: str) -> str | None:
        """The newest event of the window the user's stored recommendations were computed from."""
        raw = await self._redis.hget(self._settings.redis_key(RECO_KIND, user_id), "json")
        return None if raw is None else str(json.loads(raw)["window_newest_event_id"])

    async def close(self) -> None:
        await self._redis.aclose()


async def recent_activity(settings: Settings, user_id: str) -> list[dict[str, Any]]:
    """A user's recent events, oldest first, as `RedisActivitySink` wrote them."""
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        raw = await redis.lrange(settings.redis_key(RECENT_KIND, user_id), 0, -1)
    finally:
        await redis.aclose()
    return [json.loads(item) for item in raw]
