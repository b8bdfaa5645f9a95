"""Redis clients built from the settings.

TLS files come from PROFILESTREAM_REDIS_SSL_*; ACL users and passwords travel in
PROFILESTREAM_REDIS_URL (``rediss://user:password@host:6379/0``).

Every client has connect and socket timeouts, a health check of idle pooled connections and a
bounded retry policy (exponential backoff) from PROFILESTREAM_REDIS_*: a Redis that hangs
instead of refusing (a paused process, a dropped network path) makes a call fail after
``redis_socket_timeout_s`` rather than block the worker, the lookups or search forever.

With PROFILESTREAM_REDIS_CLUSTER=true the same functions return Redis Cluster clients (same
timeouts, retries and TLS): PROFILESTREAM_REDIS_URL names one node, the client discovers the
others and follows MOVED/ASK redirections and failovers. Every user's keys share one hash slot
(`Settings.redis_key`), so the per-user Lua scripts and pipelines work on either.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.asyncio.retry
import redis.cluster
import redis.connection
import redis.retry
import redis.utils
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream.core.settings import Settings

# First retry after this long; each further one waits twice as long, up to the configured cap.
RETRY_BACKOFF_BASE_S = 0.05
# redis-py raises these for refused, cut and timed-out connections (socket errors included).
RETRIED_ERRORS: tuple[type[RedisError], ...] = (RedisConnectionError, RedisTimeoutError)

# What `redis_async` and `redis_sync` return: a single Redis or a cluster, by configuration. Both
# serve the commands profilestream sends (each touching one user's slot, or `popular`'s).
AsyncRedis: TypeAlias = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncRedis: TypeAlias = redis.Redis | redis.cluster.RedisCluster


def _redis_tls(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if settings.redis_ssl_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_file)
    if settings.redis_ssl_cert_file is not None and settings.redis_ssl_key_file is not None:
        options["ssl_certfile"] = str(settings.redis_ssl_cert_file)
        options["ssl_keyfile"] = str(settings.redis_ssl_key_file)
    return options


def _backoff(settings: Settings) -> ExponentialBackoff:
    return ExponentialBackoff(cap=settings.redis_retry_backoff_max_s, base=RETRY_BACKOFF_BASE_S)


def redis_options(settings: Settings, *, asynchronous: bool) -> dict[str, Any]:
    """Keyword arguments of ``Redis.from_url``: timeouts, health checks, retries and TLS."""
    retry: redis.retry.Retry | redis.asyncio.retry.Retry
    if asynchronous:
        retry = redis.asyncio.retry.Retry(_backoff(settings), settings.redis_retry_attempts, RETRIED_ERRORS)
    else:
        retry = redis.retry.Retry(_backoff(settings), settings.redis_retry_attempts, RETRIED_ERRORS)
    return {
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        "socket_timeout": settings.redis_socket_timeout_s,
        "health_check_interval": settings.redis_health_check_interval_s,
        "retry": retry,
        **_redis_tls(settings),
    }


class _HiredisPacking:
    """Commands packed by hiredis in C, as redis-py's synchronous client does; same bytes.

    redis-py's asyncio connections pack every argument in Python (`pack_command`), which took
    7 % of the worker's interpreter time at 2,000 events/s (py-spy): a batch sends about 17
    arguments per user.
    """

    _serializer = redis.connection.HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = self._serializer.pack(*args)
        return packed


_PACKING_CLASSES: dict[type[Any], type[Any]] = {}


def _hiredis_packing(connection_class: type[Any]) -> type[Any]:
    """`connection_class` (plain, TLS or Unix socket) with hiredis' packer; itself without hiredis."""
    if not redis.utils.HIREDIS_AVAILABLE:
        return connection_class
    if connection_class not in _PACKING_CLASSES:
        _PACKING_CLASSES[connection_class] = type(
            f"HiredisPacking{connection_class.__name__}", (_HiredisPacking, connection_class), {}
        )
    return _PACKING_CLASSES[connection_class]


def redis_async(settings: Settings) -> AsyncRedis:
    url, options = settings.redis_url.get_secret_value(), redis_options(settings, asynchronous=True)
    if settings.redis_cluster:
        # The cluster client builds its node connections from a fixed class: redis-py's packer.
        return redis.asyncio.cluster.RedisCluster.from_url(url, **options)
    # What `Redis.from_url` does, with the URL's connection class (TLS for rediss://) wrapped.
    url_options = redis.asyncio.connection.parse_url(url)
    connection_class = url_options.pop("connection_class", redis.asyncio.connection.Connection)
    pool = redis.asyncio.ConnectionPool(
        connection_class=_hiredis_packing(connection_class), **{**options, **url_options}
    )
    return redis.asyncio.Redis.from_pool(pool)


def redis_sync(settings: Settings) -> SyncRedis:
    url, options = settings.redis_url.get_secret_value(), redis_options(settings, asynchronous=False)
    if settings.redis_cluster:
        return redis.cluster.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def delete_prefix(settings: Settings, *, batch: int = 1000) -> int:
    """Delete every key under ``PROFILESTREAM_REDIS_KEY_PREFIX``; return how many there were.

    For namespaces a tool owns alone (a benchmark's, an evaluation's): never the served prefix.
    Keys are found with SCAN (`batch` per call; every primary of a cluster) and deleted `batch`
    at a time (a cluster client splits the DEL by slot).
    """
    client = redis_sync(settings)
    try:
        keys = list(client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=batch))
        for start in range(0, len(keys), batch):
            client.delete(*keys[start : start + batch])
        return len(keys)
    finally:
        client.close()
