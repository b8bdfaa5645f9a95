"""Identity links in Redis, and removing a joined anonymous visitor's keys.

Keys (``{prefix}`` is PROFILESTREAM_REDIS_KEY_PREFIX, built by `Settings.redis_key`):

- ``{prefix}:alias:{anonymous_id}`` string: the known user id the anonymous id joined
- ``{prefix}:aliases:{known_id}`` set: the anonymous ids that joined the known user

Both expire after ``identity_link_ttl_s``, renewed by every login that names them, so the links
are bounded by the visitors active within that time. They live in Redis rather than in a Faust
table because a forget needs them on the partitions of *both* ids: a Redis key is readable from
any partition, expires by itself, and survives a worker crash like the recommendations it
protects; the worker reads them only for batches holding a forget, and writes them only for
batches holding a login, so the hot path pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from stream.core.settings import Settings
from stream.redis.activity import RECENT_KIND, RedisOp, execute_until_done
from stream.redis.client import AsyncRedis, redis_async
from stream.redis.reco_store import EMB_KIND, RECO_KIND

ALIAS_KIND = "alias"
ALIASES_KIND = "aliases"


class IdentityLinks:
    """Reads and writes the links; deletes the keys of anonymous ids whose window moved."""

    def __init__(self, redis: AsyncRedis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentityLinks:
        return cls(redis_async(settings), settings)

    def link_ops(self, links: Iterable[tuple[str, str]]) -> list[RedisOp]:
        """Record (anonymous id, known id) pairs, renewing their expiry (idempotent)."""
        ttl_s = self._settings.identity_link_ttl_s
        ops = []
        for anonymous, known in links:
            alias, aliases = self._key(ALIAS_KIND, anonymous), self._key(ALIASES_KIND, known)
            ops += [RedisOp("set", (alias, known)), RedisOp("sadd", (aliases, anonymous))]
            if ttl_s > 0:
                ops += [RedisOp("expire", (alias, ttl_s)), RedisOp("expire", (aliases, ttl_s))]
        return ops

    def removal_ops(self, user_ids: Iterable[str]) -> list[RedisOp]:
        """Delete the recommendations, vector and recent-activity list of each user (no
        tombstone: the visitor was not forgotten, their events moved to the known user)."""
        # One command per user: a user's keys share a hash slot, two users' need not.
        return [
            RedisOp("delete", tuple(self._key(kind, user) for kind in (RECO_KIND, EMB_KIND, RECENT_KIND)))
            for user in user_ids
        ]

    def unlink_ops(self, user_ids: Iterable[str]) -> list[RedisOp]:
        """Delete every link naming one of `user_ids` on its own side (a forgotten user's links)."""
        return [
            RedisOp("delete", tuple(self._key(kind, user) for kind in (ALIAS_KIND, ALIASES_KIND)))
            for user in user_ids
        ]

    async def apply(self, ops: Sequence[RedisOp], what: str) -> None:
        if ops:
            await execute_until_done(
                self._redis, ops, what=what, key_prefix=self._settings.redis_key_prefix, writer="identity"
            )

    async def linked(self, user_ids: Sequence[str]) -> dict[str, set[str]]:
        """Each user's linked ids: the known id it joined and the anonymous ids that joined it."""
        if not user_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for user in user_ids:
                pipe.get(self._key(ALIAS_KIND, user))
                pipe.smembers(self._key(ALIASES_KIND, user))
            replies = cast(list[object], await pipe.execute())
        linked: dict[str, set[str]] = {}
        for position, user in enumerate(user_ids):
            known, anonymous = replies[2 * position], replies[2 * position + 1]
            ids = {_text(a) for a in cast(set[bytes | str], anonymous or set())}
            if known is not None:
                ids.add(_text(cast(bytes | str, known)))
            ids.discard(user)
            if ids:
                linked[user] = ids
        return linked

    def _key(self, kind: str, user_id: str) -> str:
        return self._settings.redis_key(kind, user_id)

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
