"""Reads for page renderers: a user's recommendations (popular items for unknown users) and
personalised search.

`RecoClient` is the Python client; `create_lookup_app` serves the same over HTTP:
``GET /v1/users/{user_id}/recommendations?k=10`` and ``GET /v1/search?q=...&user_id=...&k=10``.

Every Redis read is bounded by `lookup_redis_budget_ms`, retries included: when Redis refuses,
fails or hangs, recommendations raise `ServiceUnavailable` naming the cause (the HTTP app answers
503 with Retry-After) and search ranks by the query alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from redis.exceptions import RedisError

from stream.core.errors import ServiceUnavailable
from stream.core.records import Recommendation
from stream.core.settings import Settings
from stream.redis.activity import RECENT_KIND
from stream.redis.client import AsyncRedis, redis_async
from stream.redis.reco_store import FORGOTTEN_KIND, RECO_KIND, popular_key

if TYPE_CHECKING:
    from stream.serving.search import SearchResult
    from stream.serving.search_service import SearchService

MAX_K = 1000
T = TypeVar("T")


async def bounded_redis(call: Awaitable[T], what: str, budget_ms: int) -> T:
    """`call`'s result, or ServiceUnavailable naming why Redis gave none within `budget_ms`."""
    try:
        return await asyncio.wait_for(call, budget_ms / 1000)
    except TimeoutError as exc:
        raise ServiceUnavailable(
            f"Redis did not answer {what} within {budget_ms} ms (PROFILESTREAM_LOOKUP_REDIS_BUDGET_MS): "
            "it may be paused, overloaded or its network path down; retry later"
        ) from exc
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(
            # redis-py's messages may end in a full stop of their own.
            f"Redis failed {what}: {str(exc).rstrip('.')}. Check that Redis runs at "
            "PROFILESTREAM_REDIS_URL; retry later"
        ) from exc


@dataclass(frozen=True, slots=True)
class RecoResult:
    """A user's recommendations as lookups answer them.

    Each item's `score` orders the list and is not a probability: with `source` "profile", the
    stored ranking score (cosine + popularity prior + co-occurrence term where the mode has one,
    rounded to 6 decimals; it can exceed 1, see `Recommendation`); with `source` "popular", the
    item's forward-decayed recent count divided by the top item's, in (0, 1].
    """

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


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """A user's raw Redis entries: the reco payload (JSON), recent-activity lines, forget time."""

    reco_json: bytes | None
    recent_lines: tuple[bytes, ...]
    forgotten_ts_ms: int | None


class RecoClient:
    """One Redis round trip per known user; a second one for the popular fallback."""

    def __init__(self, redis: AsyncRedis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._popular_key = popular_key(settings)
        self._budget_ms = settings.lookup_redis_budget_ms
        self._search: SearchService | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RecoClient:
        return cls(redis_async(settings), settings)

    async def get(self, user_id: str, k: int | None = None) -> RecoResult:
        """The user's stored top-k, else the popular items; ServiceUnavailable when Redis is not there."""
        return await bounded_redis(self._get(user_id, k), "a recommendations lookup", self._budget_ms)

    async def _get(self, user_id: str, k: int | None) -> RecoResult:
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
        # The worker counts catalogue items only; once search has loaded the index, items that have
        # left it since (a new index) are skipped too, reading a few spare entries to fill k.
        catalogue = self._search.catalogue if self._search is not None else None
        spare = 0 if catalogue is None else k
        popular = cast(
            list[tuple[bytes, float]],
            await self._redis.zrevrange(self._popular_key, 0, k + spare - 1, withscores=True),
        )
        if catalogue is not None:
            popular = [(item, score) for item, score in popular if catalogue.row(item.decode()) is not None]
        popular = popular[:k]
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

    async def stored_profile(self, user_id: str) -> StoredProfile:
        """Everything Redis holds about a user for the console, in one bounded round trip."""
        return await bounded_redis(self._stored_profile(user_id), "a profile lookup", self._budget_ms)

    async def _stored_profile(self, user_id: str) -> StoredProfile:
        key = self._settings.redis_key
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(key(RECO_KIND, user_id), "json")
        pipe.lrange(key(RECENT_KIND, user_id), 0, -1)
        pipe.get(key(FORGOTTEN_KIND, user_id))
        reco, recent, forgotten = await pipe.execute()
        return StoredProfile(
            reco_json=reco,
            recent_lines=tuple(recent or ()),
            forgotten_ts_ms=int(forgotten) if forgotten is not None else None,
        )

    async def newest_event_id(self, user_id: str) -> str | None:
        """The newest event of the window the user's stored recommendations were computed from."""
        raw = await self._redis.hget(self._settings.redis_key(RECO_KIND, user_id), "json")
        return None if raw is None else str(json.loads(raw)["window_newest_event_id"])

    async def open_search(self) -> SearchService:
        """Load the encoder and item index for `search` (once); a `ModelError` names what is missing."""
        if self._search is None:
            # onnxruntime imports lazily: reading recommendations needs no model.
            from stream.serving.search_service import SearchService

            # Loading takes seconds; a thread keeps the caller's event loop serving meanwhile.
            self._search = await asyncio.to_thread(SearchService.open, self._settings, self._redis)
        return self._search

    def title(self, item_id: str) -> str | None:
        """The catalogue title of an item, once search has loaded the index (None before, or unknown)."""
        return None if self._search is None else self._search.catalogue.title(item_id)

    async def search(self, query: str, user_id: str | None = None, k: int = 10) -> SearchResult:
        """Catalogue items for `query`, re-ranked by the user's live profile when there is one.

        Unknown, forgotten or absent users get the plain query ranking (`personalised` false,
        `why` says which). Malformed input raises ValueError naming the field.
        """
        service = await self.open_search()
        return await service.search(query, user_id, k)

    async def unreachable(self) -> str | None:
        """None when Redis answers a PING, else why not (for readiness probes)."""
        try:
            await bounded_redis(self._redis.ping(), "a PING", self._budget_ms)
        except ServiceUnavailable as exc:
            return f"redis unreachable: {exc}"
        return None

    async def close(self) -> None:
        if self._search is not None:
            self._search.close()
        await self._redis.aclose()


async def recent_activity(settings: Settings, user_id: str) -> list[dict[str, Any]]:
    """A user's recent events, oldest first, as `RedisActivitySink` wrote them.

    ServiceUnavailable when Redis refuses, fails or does not answer within `lookup_redis_budget_ms`.
    """
    redis = redis_async(settings)
    try:
        raw = await bounded_redis(
            redis.lrange(settings.redis_key(RECENT_KIND, user_id), 0, -1),
            "a recent-activity lookup",
            settings.lookup_redis_budget_ms,
        )
    finally:
        await redis.aclose()
    return [json.loads(item) for item in raw]
