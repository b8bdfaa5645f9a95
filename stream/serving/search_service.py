"""Personalised search, the I/O part: a user's signals from Redis and query vectors from the encoder.

`SearchService.search` checks the input, reads the user's live vector, recent activity and forget
tombstone in one Redis round trip, encodes the query (and the user's recent queries) through an
LRU cache, and leaves ranking to the pure `stream.serving.search`.

Encoding runs on one dedicated thread, and queries that arrive while it is busy go to the encoder
together as the next batch: concurrent encoder calls on a small machine fight over the cores
(two at once were several times slower than one after the other here), while one batch of n
short queries costs far less than n single calls. At most `search_max_queued_queries` query texts
wait for (or are in) the encoder; a search that would add more is refused with `Overloaded`
(HTTP 503) at once, so a burst cannot queue without end while every caller's wait grows. Ranking
runs in the default thread pool; onnxruntime and numpy release the GIL, so the event loop keeps
serving meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter
from redis.exceptions import RedisError

from models.encoder.onnx_encoder import TextEncoder, load_encoder, options_from_settings
from stream.core.errors import Overloaded
from stream.core.logs import ThrottledWarning
from stream.core.settings import Settings
from stream.profiles.computer import ItemCatalogue
from stream.profiles.query_cache import QueryVectorCache
from stream.redis.activity import RECENT_KIND
from stream.redis.client import AsyncRedis
from stream.redis.reco_store import EMB_KIND, FORGOTTEN_KIND
from stream.serving.lookups import UNREADABLE_FORGET_CUT_MS, Unreadable, describe_unreadable, is_wrong_type
from stream.serving.search import (
    DEFAULT_SEARCH_K,
    ActivityEntry,
    SearchConfig,
    SearchProfile,
    SearchResult,
    UserSignals,
    activity_anchors,
    check_k,
    check_user_id,
    clean_query,
    parse_activity,
    rank_search,
    recent_queries,
    search_profile,
    vector_fault,
)

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


class BatchingQueryEncoder:
    """`QueryVectorCache` for coroutines: misses of concurrent calls share one encoder batch, and
    the encoder runs on one thread of its own."""

    def __init__(self, cache: QueryVectorCache, max_queued: int = 1_024) -> None:
        self.cache = cache
        self.max_queued = max_queued
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-encoder")
        self._queue: list[str] = []
        self._pending: dict[str, asyncio.Future[FloatArray]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0

    async def encode(self, texts: Sequence[str]) -> dict[str, FloatArray]:
        found = self.cache.lookup(texts)
        missing = [text for text in dict.fromkeys(texts) if text not in found]
        if not missing:
            return found
        new = [text for text in missing if text not in self._pending]
        if new and len(self._pending) + len(new) > self.max_queued:
            raise Overloaded(
                f"search is busy: {len(self._pending)} query texts are waiting for the encoder, its "
                f"limit (PROFILESTREAM_SEARCH_MAX_QUEUED_QUERIES={self.max_queued}); retry shortly, "
                "or run more search replicas"
            )
        loop = asyncio.get_running_loop()
        futures = []
        for text in missing:
            future = self._pending.get(text)
            if future is None:
                future = self._pending[text] = loop.create_future()
                self._queue.append(text)
            futures.append(future)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        # asyncio.wait, not gather: a cancelled request must not cancel futures others share.
        await asyncio.wait(futures)
        found.update((text, future.result()) for text, future in zip(missing, futures, strict=True))
        return found

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue, []
            self.batches += 1
            try:
                vectors = await loop.run_in_executor(self._executor, self.cache.encode_new, batch)
            except Exception as exc:  # handed to every waiting request, which re-raises it
                for text in batch:
                    self._pending.pop(text).set_exception(exc)
                continue
            for text, vector in zip(batch, vectors, strict=True):
                self._pending.pop(text).set_result(vector)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class SignalSource(Protocol):
    """Where a user's live signals come from; None for a user nothing is stored about."""

    async def read(self, user_id: str) -> UserSignals | None: ...


class RedisSignals:
    """The worker's keys: ``emb`` (float32 little-endian), ``recent`` (JSON lines), ``forgotten``.

    An entry that cannot be read (a key of another Redis type, a vector that does not decode, is
    not finite or has another width than `dim`, a tombstone that is not a time) is named in
    `UserSignals.unreadable`, not raised: Redis answered, so a retry cannot help.
    """

    def __init__(self, redis: AsyncRedis, settings: Settings, dim: int | None = None) -> None:
        self._redis = redis
        self._settings = settings
        self._dim = dim

    async def read(self, user_id: str) -> UserSignals | None:
        emb_key, recent_key, forgotten_key = (
            self._settings.redis_key(kind, user_id) for kind in (EMB_KIND, RECENT_KIND, FORGOTTEN_KIND)
        )
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(emb_key)
        pipe.lrange(recent_key, 0, -1)
        pipe.get(forgotten_key)
        # Errors in place: WRONGTYPE on one key is that entry unreadable; others are re-raised.
        emb, recent, forgotten = await pipe.execute(raise_on_error=False)
        problems: list[Unreadable] = []
        emb = _in_place(EMB_KIND, emb_key, emb, problems)
        recent = _in_place(RECENT_KIND, recent_key, recent, problems)
        forgotten = _in_place(FORGOTTEN_KIND, forgotten_key, forgotten, problems)
        if emb is None and not recent and forgotten is None and not problems:
            return None
        vector = None
        if emb is not None:
            vector, fault = _decode_vector(emb, self._dim)
            if fault is not None:
                problems.append(Unreadable(EMB_KIND, emb_key, f"{fault}; {_REWRITE}"))
        forgotten_ts_ms = None
        if any(p.kind == FORGOTTEN_KIND for p in problems):
            forgotten_ts_ms = UNREADABLE_FORGET_CUT_MS
        elif forgotten is not None:
            try:
                forgotten_ts_ms = int(forgotten)
            except ValueError:
                cause = f"not an integer time in ms; {_TOMBSTONE}"
                problems.append(Unreadable(FORGOTTEN_KIND, forgotten_key, cause))
                forgotten_ts_ms = UNREADABLE_FORGET_CUT_MS
        documents = []
        for line in recent or []:
            try:
                documents.append(json.loads(line))
            except ValueError:
                continue  # a stray line must not fail a search
        return UserSignals(
            vector=vector,
            activity=tuple(parse_activity(d for d in documents if isinstance(d, dict))),
            forgotten_ts_ms=forgotten_ts_ms,
            unreadable=tuple(problems),
        )


def _activity(signals: UserSignals | None) -> list[ActivityEntry]:
    """The activity search may use; none of a profile read in part (it ranks by the query alone)."""
    return signals.usable_activity() if signals is not None and not signals.unreadable else []


_REWRITE = "delete the key, the worker writes it anew with the user's next event"
# A tombstone is not rewritten: deleting it un-forgets the user's stored activity.
_TOMBSTONE = "delete the key only if the user was not forgotten"


def _in_place(kind: str, key: str, value: Any, problems: list[Unreadable]) -> Any:
    """A pipeline result; None (and a problem) for WRONGTYPE; any other Redis error is raised."""
    if not isinstance(value, Exception):
        return value
    if not is_wrong_type(value):
        raise value
    hint = _TOMBSTONE if kind == FORGOTTEN_KIND else _REWRITE
    problems.append(Unreadable(kind, key, f"{value}; {hint}"))
    return None


def _decode_vector(raw: bytes, dim: int | None) -> tuple[FloatArray | None, str | None]:
    """The stored vector, or None and why it cannot be used."""
    if len(raw) % 4:
        return None, f"{len(raw)} bytes, not a whole number of float32 values"
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    fault = vector_fault(vector, dim)
    return (None, fault) if fault is not None else (vector, None)


_UNREACHABLE = "profile store unreachable; query ranking only"


class SearchService:
    """The search call behind ``GET /v1/search`` and `RecoClient.search`."""

    def __init__(
        self,
        encoder: TextEncoder,
        catalogue: ItemCatalogue,
        signals: SignalSource,
        config: SearchConfig,
        *,
        cache_size: int = 10_000,
        redis_budget_ms: int = 2_000,
        max_queued_queries: int = 1_024,
    ) -> None:
        self.encoder = encoder
        self.redis_budget_s = redis_budget_ms / 1000
        self.catalogue = catalogue
        self.signals = signals
        self.config = config
        self.cache = QueryVectorCache(encoder, cache_size)
        self.queries = BatchingQueryEncoder(self.cache, max_queued_queries)
        # Warnings each search could repeat, bounded (the metrics count each one).
        self._unreachable_warning = ThrottledWarning(log)
        self._unreadable_warning = ThrottledWarning(log)
        # Set by `RecoClient.open_search` to count unreadable entries in the lookup app's registry.
        self.unreadable_entries: Counter | None = None

    @classmethod
    def open(cls, settings: Settings, redis: AsyncRedis) -> SearchService:
        """Load the encoder and the item index named by the settings (a `ModelError` if missing)."""
        from stream.profiles.catalogue import load_catalogue

        # Search encodes a few short queries per call; a second ORT thread buys little there and,
        # spinning between calls, takes a core from everything else (the worker keeps its own).
        options = replace(
            options_from_settings(settings), intra_op_threads=settings.search_encoder_intra_op_threads
        )
        encoder = load_encoder(Path(settings.model_dir), options)
        catalogue = load_catalogue(settings, encoder.model_version)
        log.info("search ready: encoder %s, %d items", encoder.model_version, len(catalogue.ids))
        return cls(
            encoder,
            catalogue,
            RedisSignals(redis, settings, encoder.dim),
            SearchConfig.from_settings(settings),
            cache_size=settings.search_query_cache_size,
            redis_budget_ms=settings.lookup_redis_budget_ms,
            max_queued_queries=settings.search_max_queued_queries,
        )

    async def search(self, query: str, user_id: str | None = None, k: int = DEFAULT_SEARCH_K) -> SearchResult:
        """Raises ValueError naming the field (q, user_id or k) for malformed input."""
        text = clean_query(query)
        user = check_user_id(user_id)
        k = check_k(k)
        signals: UserSignals | None = None
        unreachable = False
        if user is not None:
            try:
                # Bounded: a Redis that hangs must not hold the search (lookup_redis_budget_ms).
                signals = await asyncio.wait_for(self.signals.read(user), self.redis_budget_s)
            except (RedisError, OSError, TimeoutError) as exc:
                # Search still answers without Redis: it degrades to the query ranking, flagged.
                self._unreachable_warning.warning(
                    "search without the user's profile: redis unreachable (%r)", exc
                )
                unreachable = True
        if signals is not None and signals.unreadable:
            self._report(signals.unreadable)
        activity = _activity(signals)
        vectors = await self.queries.encode([text, *recent_queries(activity)])
        return await asyncio.to_thread(
            self._rank,
            query=text,
            user_id=user,
            signals=signals,
            k=k,
            unreachable=unreachable,
            vectors=vectors,
        )

    def close(self) -> None:
        self.queries.close()

    def _report(self, problems: Sequence[Unreadable]) -> None:
        """One warning naming the keys and causes, and a count per kind, as lookups do."""
        for problem in problems:
            if self.unreadable_entries is not None:
                self.unreadable_entries.labels(problem.kind).inc()
        self._unreadable_warning.warning(
            "search without the user's stored profile, unreadable Redis entries: %s",
            describe_unreadable(tuple(problems), keys=True),
        )

    def _rank(
        self,
        *,
        query: str,
        user_id: str | None,
        signals: UserSignals | None,
        k: int,
        unreachable: bool,
        vectors: dict[str, FloatArray],
    ) -> SearchResult:
        activity = _activity(signals)
        if unreachable:
            profile = SearchProfile(None, _UNREACHABLE)
        else:
            profile = search_profile(user_id, signals, vectors, self.config, self.encoder.dim)
        anchors, anchor_vectors = activity_anchors(activity, self.catalogue, vectors, exclude_query=query)
        hits = rank_search(
            query=query,
            query_vector=vectors[query],
            profile=profile,
            catalogue=self.catalogue,
            k=k,
            config=self.config,
            anchors=anchors,
            anchor_vectors=anchor_vectors,
        )
        return SearchResult(
            query=query,
            user_id=user_id,
            personalised=profile.personalised,
            why=profile.why,
            blend_weight=self.config.blend_weight if profile.personalised else 0.0,
            items=tuple(hits),
            model_version=self.encoder.model_version,
        )
