"""Redis clients give up on a peer that hangs (accepts, never answers) within their timeouts."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream.core.settings import Settings, load_settings
from stream.redis.client import redis_async, redis_sync


@pytest.fixture
def hung_redis() -> Iterator[int]:
    """A listening socket that accepts connections and never answers (like a SIGSTOPped Redis)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield int(server.getsockname()[1])


def settings_for(port: int) -> Settings:
    return load_settings(
        {},
        redis_url=f"redis://127.0.0.1:{port}/0",
        redis_socket_timeout_s=0.3,
        redis_connect_timeout_s=0.3,
        redis_retry_attempts=1,
        redis_retry_backoff_max_s=0.05,
    )


def test_the_sync_client_times_out_on_a_hung_redis(hung_redis: int) -> None:
    client = redis_sync(settings_for(hung_redis))
    started = time.monotonic()
    with pytest.raises((RedisTimeoutError, RedisConnectionError)):
        client.ping()
    client.close()
    # Two tries (one retry) of 0.3 s each, plus backoff: far below a hang.
    assert time.monotonic() - started < 3


def test_the_async_client_times_out_on_a_hung_redis(hung_redis: int) -> None:
    async def ping() -> float:
        client = redis_async(settings_for(hung_redis))
        started = time.monotonic()
        try:
            with pytest.raises((RedisTimeoutError, RedisConnectionError)):
                await asyncio.wait_for(client.ping(), timeout=10)
        finally:
            await client.aclose()
        return time.monotonic() - started

    assert asyncio.run(ping()) < 3


def test_client_options_come_from_the_settings() -> None:
    settings = load_settings(
        {},
        redis_connect_timeout_s=2.5,
        redis_socket_timeout_s=7.0,
        redis_health_check_interval_s=30,
        redis_retry_attempts=4,
    )
    for client in (redis_sync(settings), redis_async(settings)):
        assert isinstance(client, (redis.Redis, redis.asyncio.Redis))
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_connect_timeout"] == 2.5
        assert kwargs["socket_timeout"] == 7.0
        assert kwargs["health_check_interval"] == 30
        assert kwargs["retry"].get_retries() == 4


def test_the_cluster_setting_gives_a_cluster_client_with_the_same_options() -> None:
    settings = load_settings({}, redis_cluster=True, redis_socket_timeout_s=7.0, redis_retry_attempts=4)
    client = redis_async(settings)  # the async cluster client connects on first use only
    assert isinstance(client, redis.asyncio.cluster.RedisCluster)
    kwargs = client.nodes_manager.connection_kwargs
    assert kwargs["socket_timeout"] == 7.0
    assert client.retry.get_retries() == 4


@pytest.mark.parametrize(
    ("url", "connection_base"),
    [
        ("redis://u:pw@127.0.0.1:6390/2", redis.asyncio.Connection),
        ("rediss://u:pw@127.0.0.1:6390/2", redis.asyncio.SSLConnection),
        ("unix:///tmp/redis.sock?db=2", redis.asyncio.UnixDomainSocketConnection),
    ],
)
def test_the_async_client_keeps_the_urls_connection_and_packs_the_bytes_redis_py_packs(
    url: str, connection_base: type[redis.asyncio.Connection]
) -> None:
    client = redis_async(load_settings({}, redis_url=url, redis_socket_timeout_s=0.3))
    assert isinstance(client, redis.asyncio.Redis)
    pool = client.connection_pool
    assert issubclass(pool.connection_class, connection_base)
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["socket_timeout"] == 0.3
    # The C packer is in use (hiredis is a dependency) and writes redis-py's own bytes.
    assert pool.connection_class.pack_command is not connection_base.pack_command
    packed, reference = pool.make_connection(), connection_base()  # type: ignore[no-untyped-call]
    for args in [
        ("EVALSHA", "a" * 40, 2, "p:{ü}:reco", "p:{ü}:emb", 1732700000000, 0.1, 1e-05, b"\x00\xff" * 900),
        ("ZINCRBY", "p:{popular}", 2.5, "item-1"),
    ]:
        assert b"".join(packed.pack_command(*args)) == b"".join(reference.pack_command(*args))
