"""Redis clients built from the settings.

TLS files come from PROFILESTREAM_REDIS_SSL_*; ACL users and passwords travel in
PROFILESTREAM_REDIS_URL (``rediss://user:password@host:6379/0``).
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio

from stream.core.settings import Settings


def _redis_tls(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if settings.redis_ssl_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_file)
    if settings.redis_ssl_cert_file is not None and settings.redis_ssl_key_file is not None:
        options["ssl_certfile"] = str(settings.redis_ssl_cert_file)
        options["ssl_keyfile"] = str(settings.redis_ssl_key_file)
    return options


def redis_async(settings: Settings) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(settings.redis_url.get_secret_value(), **_redis_tls(settings))


def redis_sync(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url.get_secret_value(), **_redis_tls(settings))
