"""Copy key schema v1 keys to v2 (`Settings.redis_key`), keeping their values and expiries.

v1 keys are ``{prefix}:{kind}:{user_id}`` (and ``{prefix}:popular``); v2 keys are
``{prefix}:{<user_id>}:{kind}`` (and ``{prefix}:{popular}:popular``). After the prefix a v1 key
has a kind, a v2 key a ``{``: the two never collide, and a SCAN of ``{prefix}:{kind}:*`` finds
v1 keys only.

Each key is copied with DUMP and RESTORE (with its remaining PTTL), then the v1 key is deleted. A
cluster cannot RENAME across slots, and DUMP/RESTORE go each to the node owning their key. A v2 key
that already exists is kept (a worker of the new version wrote it after the v1 one: it is newer)
and the v1 key is deleted. So a run that stopped half-way is resumed by running it again, and a
second run finds nothing to do. v1 batch markers (``{prefix}:applied:{id}``) are left to expire
within ten minutes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from redis.exceptions import RedisError, ResponseError

from stream.core.errors import ServiceUnavailable
from stream.core.settings import Settings
from stream.redis.activity import RECENT_KIND
from stream.redis.client import SyncRedis, redis_sync
from stream.redis.reco_store import EMB_KIND, FORGOTTEN_KIND, POPULAR_KIND, RECO_KIND, popular_key

log = logging.getLogger(__name__)

# The per-user kinds v1 wrote.
V1_USER_KINDS = (RECO_KIND, EMB_KIND, FORGOTTEN_KIND, RECENT_KIND)


def v1_key(settings: Settings, kind: str, user_id: str) -> str:
    """A key of schema v1, e.g. ``profilestream:v1:reco:u42``."""
    return f"{settings.redis_key_prefix}:{kind}:{user_id}"


@dataclass
class MigrationReport:
    copied: int = 0  # v1 keys restored under their v2 name, then deleted
    kept_v2: int = 0  # v1 keys deleted because their v2 key already existed
    vanished: int = 0  # v1 keys that expired (or were migrated by another run) meanwhile


def v2_name(settings: Settings, v1: str) -> str | None:
    """The v2 name of a v1 key, or None for a key that is not a v1 key of this prefix."""
    prefix = settings.redis_key_prefix
    if v1 == f"{prefix}:{POPULAR_KIND}":
        return popular_key(settings)
    for kind in V1_USER_KINDS:
        head = f"{prefix}:{kind}:"
        if v1.startswith(head) and len(v1) > len(head):
            return settings.redis_key(kind, v1[len(head) :])
    return None


def migrate_keys(settings: Settings, *, batch: int = 500, dry_run: bool = False) -> MigrationReport:
    """Move every v1 key of the prefix to its v2 name; safe to run again (see the module doc).

    ServiceUnavailable when Redis refuses, fails or times out (PROFILESTREAM_REDIS_SOCKET_TIMEOUT_S,
    retries included) part-way; running again resumes.
    """
    client = redis_sync(settings)
    report = MigrationReport()
    try:
        patterns = [f"{settings.redis_key_prefix}:{kind}:*" for kind in V1_USER_KINDS]
        chunk: list[str] = []
        for pattern in [*patterns, f"{settings.redis_key_prefix}:{POPULAR_KIND}"]:
            for raw in client.scan_iter(match=pattern, count=batch):
                key = raw.decode() if isinstance(raw, bytes) else str(raw)
                if v2_name(settings, key) is None:
                    continue
                chunk.append(key)
                if len(chunk) >= batch:
                    _move(client, settings, chunk, report, dry_run)
                    chunk = []
        if chunk:
            _move(client, settings, chunk, report, dry_run)
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(
            f"Redis failed the key migration (v1 to v2): {str(exc).rstrip('.')}. Check that Redis runs "
            "at PROFILESTREAM_REDIS_URL, then run `profilestream redis migrate-keys` again: it resumes "
            "where this run stopped"
        ) from exc
    finally:
        client.close()
    return report


def _move(
    client: SyncRedis, settings: Settings, keys: list[str], report: MigrationReport, dry_run: bool
) -> None:
    """Three round trips for a chunk: DUMP and PTTL, RESTORE, DEL (each split by node on a cluster)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
        pipe.pttl(key)
    replies = cast(list[object], pipe.execute())
    dumps = {key: (replies[2 * n], replies[2 * n + 1]) for n, key in enumerate(keys)}
    present = [key for key, (value, _) in dumps.items() if value is not None]
    report.vanished += len(keys) - len(present)
    if dry_run:
        report.copied += len(present)
        return
    pipe = client.pipeline(transaction=False)
    for key in present:
        value, pttl = dumps[key]
        target = v2_name(settings, key)
        assert target is not None
        # PTTL -1: no expiry, which RESTORE writes as 0; a key about to expire keeps at least 1 ms.
        ttl_ms = cast(int, pttl)
        pipe.restore(target, 0 if ttl_ms < 0 else max(ttl_ms, 1), cast(bytes, value))
    results = cast(list[object], pipe.execute(raise_on_error=False))
    for result in results:
        if isinstance(result, ResponseError) and "BUSYKEY" in str(result):
            report.kept_v2 += 1
        elif isinstance(result, Exception):
            raise result
        else:
            report.copied += 1
    pipe = client.pipeline(transaction=False)
    for key in present:
        pipe.delete(key)
    pipe.execute()
    log.info("migrated %d v1 keys to schema v2 (%s so far)", len(present), report)
