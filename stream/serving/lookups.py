"""Reads for page renderers: a user's recommendations (popular items for unknown users) and
personalised search.

`RecoClient` is the Python client; `create_lookup_app` serves the same over HTTP:
``GET /v1/users/{user_id}/recommendations?k=10`` and ``GET /v1/search?q=...&user_id=...&k=10``.

Every Redis read is bounded by `lookup_redis_budget_ms`, retries included: when Redis refuses,
fails or hangs, recommendations raise `ServiceUnavailable` naming the cause (the HTTP app answers
503 with Retry-After) and search ranks by the query alone.

An entry Redis holds but that cannot be read (not the payload `read_reco_payload` checks, not
UTF-8, or a key of another Redis type: WRONGTYPE) is not an outage: retrying cannot help. It is
logged with its key and cause, counted in `profilestream_lookups_unreadable_entries_total`, and
treated as absent: recommendations answer the popular fallback with `why` naming the cause.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import RedisError, ResponseError

from stream.core.errors import ServiceUnavailable
from stream.core.logs import ThrottledWarning
from stream.core.records import Recommendation
from stream.core.settings import Settings
from stream.redis.activity import RECENT_KIND
from stream.redis.client import AsyncRedis, redis_async
from stream.redis.reco_store import (
    FORGOTTEN_KIND,
    POPULAR_KIND,
    RECO_KIND,
    StoredReco,
    popular_key,
    read_reco_payload,
)

if TYPE_CHECKING:
    from stream.serving.search import SearchResult
    from stream.serving.search_service import SearchService

log = logging.getLogger(__name__)

MAX_K = 1000
T = TypeVar("T")
NO_PROFILE = "no stored recommendations (an unknown, forgotten or expired user)"


def is_wrong_type(exc: BaseException) -> bool:
    """Redis's WRONGTYPE: the key holds another type than its kind's, written by something else."""
    return isinstance(exc, ResponseError) and str(exc).startswith("WRONGTYPE")


def unreadable_entries_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "profilestream_lookups_unreadable_entries",
        "Redis entries lookups could not read (corrupt, another format or Redis type) and ignored, by kind.",
        ["kind"],
        registry=registry,
    )


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An entry Redis holds that cannot be read: its kind (reco, recent, ...), key and why not."""

    kind: str
    key: str
    cause: str


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
    # Why the popular fallback answers (no stored entry, or which one could not be read); None
    # for "profile".
    why: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "source": self.source,
            "items": [{"item_id": i.item_id, "score": i.score, "reason": i.reason} for i in self.items],
            "model_version": self.model_version,
            "window_newest_ts_ms": self.window_newest_ts_ms,
            "computed_at_ms": self.computed_at_ms,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """A user's Redis entries: the checked reco payload, raw recent-activity lines, forget time.

    An entry that could not be read is None (or empty) here and named in `unreadable`.
    """

    reco: StoredReco | None
    recent_lines: tuple[bytes, ...]
    forgotten_ts_ms: int | None
    unreadable: tuple[Unreadable, ...] = ()

    @property
    def why(self) -> str | None:
        """What could not be read, for the answer; None when everything could."""
        return describe_unreadable(self.unreadable) if self.unreadable else None


def describe_unreadable(entries: tuple[Unreadable, ...], *, keys: bool = False) -> str:
    """The causes, for an answer; with `keys`, for the log (an answer does not show key names)."""
    return "; ".join(
        f"stored {e.kind} entry{f' {e.key}' if keys else ''} unreadable, ignored: {e.cause}" for e in entries
    )


class RecoClient:
    """One Redis round trip per known user; a second one for the popular fallback."""

    def __init__(self, redis: AsyncRedis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._popular_key = popular_key(settings)
        self._budget_ms = settings.lookup_redis_budget_ms
        self._search: SearchService | None = None
        # Set by the HTTP app to count unreadable entries in its registry.
        self.unreadable_entries: Counter | None = None
        # Each lookup of a user with a broken entry would log it again; the metric counts each.
        self._unreadable_warning = ThrottledWarning(log)

    @classmethod
    def from_settings(cls, settings: Settings) -> RecoClient:
        return cls(redis_async(settings), settings)

    async def get(self, user_id: str, k: int | None = None) -> RecoResult:
        """The user's stored top-k, else the popular items; ServiceUnavailable when Redis is not there."""
        return await bounded_redis(self._get(user_id, k), "a recommendations lookup", self._budget_ms)

    def _report(self, problems: list[Unreadable]) -> str | None:
        """Log (one warning) and count the entries that could not be read; their description."""
        if not problems:
            return None
        for problem in problems:
            if self.unreadable_entries is not None:
                self.unreadable_entries.labels(problem.kind).inc()
        self._unreadable_warning.warning(
            "ignoring unreadable Redis entries: %s", describe_unreadable(tuple(problems), keys=True)
        )
        return describe_unreadable(tuple(problems))

    async def _read_reco(self, user_id: str) -> tuple[StoredReco | None, list[Unreadable]]:
        key = self._settings.redis_key(RECO_KIND, user_id)
        try:
            raw = await self._redis.hget(key, "json")
        except ResponseError as exc:
            return None, [_unreadable_or_raise(RECO_KIND, key, exc)]
        return _reco_entry(key, raw)

    async def _get(self, user_id: str, k: int | None) -> RecoResult:
        k = min(k or self._settings.top_k, MAX_K)
        doc, problems = await self._read_reco(user_id)
        if doc is not None:
            return RecoResult(
                user_id=user_id,
                items=tuple(Recommendation(i.item_id, i.score, i.reason) for i in doc.items[:k]),
                source="profile",
                model_version=doc.model_version,
                window_newest_ts_ms=doc.window_newest_ts_ms,
                computed_at_ms=doc.computed_at_ms,
            )
        reco_unreadable = bool(problems)
        popular = await self._popular(k, problems)
        described = self._report(problems)
        why = described if reco_unreadable else "; ".join(filter(None, (NO_PROFILE, described)))
        return RecoResult(user_id=user_id, items=popular, source="popular", why=why)

    async def _popular(self, k: int, problems: list[Unreadable]) -> tuple[Recommendation, ...]:
        """The k most popular catalogue items; none (and a problem) when the set cannot be read."""
        # The worker counts catalogue items only; once search has loaded the index, items that have
        # left it since (a new index) are skipped too, reading a few spare entries to fill k.
        catalogue = self._search.catalogue if self._search is not None else None
        spare = 0 if catalogue is None else k
        try:
            ranked = cast(
                list[tuple[bytes, float]],
                await self._redis.zrevrange(self._popular_key, 0, k + spare - 1, withscores=True),
            )
        except ResponseError as exc:
            problems.append(_unreadable_or_raise(POPULAR_KIND, self._popular_key, exc))
            return ()
        popular: list[tuple[str, float]] = []
        for member, score in ranked:
            try:
                item = member.decode()
            except UnicodeDecodeError as exc:
                cause = f"a member is not UTF-8 ({exc.reason}), skipped"
                problems.append(Unreadable(POPULAR_KIND, self._popular_key, cause))
                continue
            if catalogue is None or catalogue.row(item) is not None:
                popular.append((item, float(score)))
        popular = popular[:k]
        # Forward-decayed counts are only meaningful relative to each other: scale the top one to 1.
        top = popular[0][1] if popular else 1.0
        return tuple(Recommendation(item, score / top, "popular right now") for item, score in popular)

    async def stored_profile(self, user_id: str) -> StoredProfile:
        """Everything Redis holds about a user for the console, in one bounded round trip."""
        return await bounded_redis(self._stored_profile(user_id), "a profile lookup", self._budget_ms)

    async def _stored_profile(self, user_id: str) -> StoredProfile:
        key = self._settings.redis_key
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(key(RECO_KIND, user_id), "json")
        pipe.lrange(key(RECENT_KIND, user_id), 0, -1)
        pipe.get(key(FORGOTTEN_KIND, user_id))
        # Errors in place: a key of another type spoils that entry only, not the whole profile.
        reco, recent, forgotten = await pipe.execute(raise_on_error=False)
        problems: list[Unreadable] = []
        stored_reco = None
        if isinstance(reco, Exception):
            problems.append(_unreadable_or_raise(RECO_KIND, key(RECO_KIND, user_id), reco))
        else:
            stored_reco, reco_problems = _reco_entry(key(RECO_KIND, user_id), reco)
            problems += reco_problems
        if isinstance(recent, Exception):
            problems.append(_unreadable_or_raise(RECENT_KIND, key(RECENT_KIND, user_id), recent))
            recent = None
        forgotten_ts_ms = None
        if isinstance(forgotten, Exception):
            problems.append(_unreadable_or_raise(FORGOTTEN_KIND, key(FORGOTTEN_KIND, user_id), forgotten))
        elif forgotten is not None:
            try:
                forgotten_ts_ms = int(forgotten)
            except ValueError:
                problems.append(
                    Unreadable(FORGOTTEN_KIND, key(FORGOTTEN_KIND, user_id), "not an integer time in ms")
                )
        self._report(problems)
        return StoredProfile(
            reco=stored_reco,
            recent_lines=tuple(recent or ()),
            forgotten_ts_ms=forgotten_ts_ms,
            unreadable=tuple(problems),
        )

    async def newest_event_id(self, user_id: str) -> str | None:
        """The newest event of the window the user's stored recommendations were computed from."""
        doc, problems = await self._read_reco(user_id)
        self._report(problems)
        return None if doc is None else doc.window_newest_event_id

    async def open_search(self) -> SearchService:
        """Load the encoder and item index for `search` (once); a `ModelError` names what is missing."""
        if self._search is None:
            # onnxruntime imports lazily: reading recommendations needs no model.
            from stream.serving.search_service import SearchService

            # Loading takes seconds; a thread keeps the caller's event loop serving meanwhile.
            self._search = await asyncio.to_thread(SearchService.open, self._settings, self._redis)
            # Search's unreadable profile keys count in the same metric as the lookups' own.
            self._search.unreadable_entries = self.unreadable_entries
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


def _unreadable_or_raise(kind: str, key: str, exc: BaseException) -> Unreadable:
    """WRONGTYPE as an unreadable entry; any other Redis error is re-raised (an outage: 503)."""
    if not is_wrong_type(exc):
        raise exc
    return Unreadable(kind, key, f"{exc}; delete the key, the worker writes it anew")


def _reco_entry(key: str, raw: bytes | str | None) -> tuple[StoredReco | None, list[Unreadable]]:
    if raw is None:
        return None, []
    try:
        return read_reco_payload(raw), []
    except ValueError as exc:
        return None, [Unreadable(RECO_KIND, key, str(exc))]


# The cut for a forget tombstone that cannot be read: the user asked to be forgotten at a time
# we cannot tell, so no activity of theirs is used (the live vector is deleted by the forget, so
# one still stored was written after it).
UNREADABLE_FORGET_CUT_MS = 2**63 - 1


async def recent_activity(settings: Settings, user_id: str) -> list[dict[str, Any]]:
    """A user's recent events, oldest first, as `RedisActivitySink` wrote them.

    ServiceUnavailable when Redis refuses, fails or does not answer within `lookup_redis_budget_ms`.
    Lines that are not JSON objects, or a key of another Redis type, are skipped with a warning.
    """
    redis = redis_async(settings)
    key = settings.redis_key(RECENT_KIND, user_id)
    try:
        raw, problems = await bounded_redis(
            _recent_lines(redis, key), "a recent-activity lookup", settings.lookup_redis_budget_ms
        )
    finally:
        await redis.aclose()
    entries = []
    for line in raw:
        try:
            entry = json.loads(line)
        except ValueError:  # not JSON, or not UTF-8
            entry = None
        if isinstance(entry, dict):
            entries.append(entry)
    if len(entries) < len(raw):
        problems.append(Unreadable(RECENT_KIND, key, f"{len(raw) - len(entries)} lines are not JSON objects"))
    if problems:
        log.warning("ignoring unreadable Redis entries: %s", describe_unreadable(tuple(problems), keys=True))
    return entries


async def _recent_lines(redis: AsyncRedis, key: str) -> tuple[list[bytes | str], list[Unreadable]]:
    try:
        return list(await redis.lrange(key, 0, -1)), []
    except ResponseError as exc:
        return [], [_unreadable_or_raise(RECENT_KIND, key, exc)]
