"""Recommendations in Redis: the key schema, an atomic newer-only write, forgetting, popularity.

Keys, schema v2 (``{prefix}`` is PROFILESTREAM_REDIS_KEY_PREFIX; ``{<user_id>}`` is the user id as
a hash tag, so all of a user's keys share one Redis Cluster slot, see `Settings.redis_key`):

- ``{prefix}:{<user_id>}:reco`` hash: ``json`` (the payload below), ``ver`` (the window version)
- ``{prefix}:{<user_id>}:emb`` string: the user vector, float32 little-endian
- ``{prefix}:{<user_id>}:forgotten`` string: receive time (ms) of the user's last ``forget`` (its
  ``received_ms``, else its event time: the window's cut), expiring after ``forget_tombstone_ttl_s``
- ``{prefix}:{popular}:popular`` sorted set: catalogue item id -> forward-decayed interaction
  weight, trimmed to the ``popular_max_items`` highest after each batch

Forgetting goes by receive order, as in the window (`stream.core.window`): the newer-only write
refuses a profile whose newest RECEIVE time is at or before the tombstone. A profile computed from
events received after a forget lands even when a slow client clock stamped them earlier; a replay
of events received before it is refused whatever their event times.

The payload: ``{"user_id", "items": [{"item_id", "score", "reason"}], "model_version",
"window_newest_ts_ms", "window_newest_event_id", "window_newest_received_ms", "computed_at_ms",
"source": "profile"}``. ``score`` orders the list (cosine plus the prior and co-occurrence terms,
so it can exceed 1; `stream.core.records.Recommendation`), rounded to 6 decimals. Readers check
it with `read_reco_payload` (`StoredReco`): an entry written by something else (an older format,
a hand edit, corrupt bytes) is reported as unreadable, never read halfway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stream.core.records import UserProfile
from stream.core.settings import Settings
from stream.redis.apply_once import APPLY_ONCE_LUA, RedisOp, execute_until_done
from stream.redis.client import AsyncRedis, redis_async

# The newer-only write alone, as one script over one user's three keys (the benchmark peers call
# it; the worker runs the same function inside its apply-once script). KEYS: reco, emb, forgotten;
# ARGV: newest receive time, window version, payload, vector, ttl. Returns -1, 0 or 1.
WRITE_IF_NEWER_LUA = APPLY_ONCE_LUA.split("-- KEYS:")[0] + (
    "return write_if_newer(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])\n"
)
WRITE_IF_NEWER_SHA = hashlib.sha1(WRITE_IF_NEWER_LUA.encode(), usedforsecurity=False).hexdigest()

RECO_KIND = "reco"
EMB_KIND = "emb"
FORGOTTEN_KIND = "forgotten"
POPULAR_KIND = "popular"


def popular_key(settings: Settings) -> str:
    """The shop-wide popularity set, ``{prefix}:{popular}:popular``: one key in one slot.

    Its own hash tag puts it (and the marker of its apply-once unit) in one slot; a user whose id
    is ``popular`` shares that slot, which is harmless. One key, not shards: the README's
    measurement shows one batch's ZINCRBYs cost its node far less than a worker produces.
    """
    return settings.redis_key(POPULAR_KIND, POPULAR_KIND)


class StoredItem(BaseModel):
    """One item of a stored payload, as `UserProfile.payload` writes it."""

    # strict: a JSON string where a number belongs (or 1.0 for an int) is another writer's payload.
    model_config = ConfigDict(strict=True, frozen=True, allow_inf_nan=False)

    item_id: str = Field(min_length=1)
    score: float
    reason: str | None


class StoredReco(BaseModel):
    """The fields of a reco payload that lookups and the console read; other fields are ignored."""

    model_config = ConfigDict(strict=True, frozen=True)

    items: tuple[StoredItem, ...]
    model_version: str
    window_newest_ts_ms: int
    computed_at_ms: int
    # Only the demo's freshness wait reads it; recommendations do not need it.
    window_newest_event_id: str | None = None


def read_reco_payload(raw: bytes | str) -> StoredReco:
    """The stored payload, or ValueError naming the fields that do not match `StoredReco`.

    The message says what is wrong (not JSON, not UTF-8, a field missing or of another type) and
    never quotes the payload, which may be large or hold another user's data.
    """
    try:
        return StoredReco.model_validate_json(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'the entry'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(
            f"not a reco payload of schema v2: {'; '.join(problems[:3])}{more}; delete the key, "
            "the user's next event writes it anew"
        ) from exc


def _encode_payload(payload: dict[str, object]) -> bytes:
    # orjson, not json.dumps: the payloads of a batch were the event loop's largest serialisation
    # (5 % of the worker's interpreter time at 2,000 events/s, py-spy). Same JSON values; a float
    # may be spelled differently (0.00001 for 1e-05), which every JSON reader reads alike.
    return orjson.dumps(payload)


class RecoStore:
    """Writes profiles atomically and newer-only; one pipeline per batch."""

    def __init__(self, redis: AsyncRedis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> RecoStore:
        return cls(redis_async(settings), settings)

    def _key(self, kind: str, user_id: str) -> str:
        return self._settings.redis_key(kind, user_id)

    @property
    def popular_key(self) -> str:
        return popular_key(self._settings)

    def profile_ops(self, profiles: Iterable[UserProfile], computed_at_ms: int) -> list[RedisOp]:
        """One newer-only write per profile (the script in `stream.redis.apply_once`)."""
        ttl_s = self._settings.reco_ttl_s
        return [
            RedisOp(
                "write_if_newer",
                (
                    self._key(RECO_KIND, p.user_id),
                    self._key(EMB_KIND, p.user_id),
                    self._key(FORGOTTEN_KIND, p.user_id),
                    p.newest_received_ms,
                    p.window_version,
                    _encode_payload(p.payload(computed_at_ms)),
                    np.asarray(p.vector, dtype="<f4").tobytes(),
                    ttl_s,
                ),
            )
            for p in profiles
        ]

    def forget_ops(self, forgets: Iterable[tuple[str, int]]) -> list[RedisOp]:
        """Delete a user's keys and leave a tombstone holding only the forget's receive time.

        The tombstone expires after `forget_tombstone_ttl_s`, which the settings require to be
        longer than the events topic's retention: by then no replay can bring the user back.
        """
        ttl_s = self._settings.forget_tombstone_ttl_s
        ops = []
        for user_id, received_ms in forgets:
            ops.append(RedisOp("delete", (self._key(RECO_KIND, user_id), self._key(EMB_KIND, user_id))))
            tombstone = self._key(FORGOTTEN_KIND, user_id)
            ops.append(RedisOp("set", (tombstone, received_ms)))
            if ttl_s > 0:
                ops.append(RedisOp("expire", (tombstone, ttl_s)))
        return ops

    def popularity_ops(self, increments: dict[str, float]) -> list[RedisOp]:
        """ZINCRBY each item, then trim the set to its `popular_max_items` highest scores.

        Callers pass catalogue items only (the worker drops the others): a client cannot grow the
        set with made-up ids, and the trim bounds it even as the catalogue changes.
        """
        if not increments:
            return []
        ops = [RedisOp("zincrby", (self.popular_key, inc, item)) for item, inc in sorted(increments.items())]
        # Ranks ascend by score: removing 0..-(N+1) keeps the N highest. O(log n + removed).
        ops.append(RedisOp("zremrangebyrank", (self.popular_key, 0, -(self._settings.popular_max_items + 1))))
        return ops

    async def write(
        self,
        profiles: Sequence[UserProfile],
        forgets: Sequence[tuple[str, int]],
        popularity: dict[str, float],
        computed_at_ms: int,
    ) -> None:
        """Forgets first, so a profile computed in the same batch after a forget still lands."""
        ops = self.forget_ops(forgets)
        ops += self.profile_ops(profiles, computed_at_ms)
        ops += self.popularity_ops(popularity)
        if ops:
            await execute_until_done(
                self._redis,
                ops,
                what=f"{len(profiles)} profiles",
                key_prefix=self._settings.redis_key_prefix,
                writer=RECO_KIND,
            )

    async def close(self) -> None:
        await self._redis.aclose()
