"""`profilestream redis migrate-keys`: v1 keys move to schema v2 with their expiries, on a single
Redis and on the cluster; a run stopped half-way resumes, a second run finds nothing to do."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.cli.main import main
from stream.core.settings import Settings, child_environment, load_settings
from stream.redis.activity import RECENT_KIND
from stream.redis.client import redis_sync
from stream.redis.migrate import migrate_keys, v1_key
from stream.redis.reco_store import EMB_KIND, FORGOTTEN_KIND, RECO_KIND, popular_key
from tests.integration.conftest import delete_keys

pytestmark = pytest.mark.integration


@pytest.fixture(params=["single", "cluster"])
def prefixed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    services = request.getfixturevalue("services" if request.param == "single" else "cluster_services")
    settings = load_settings(
        {},
        redis_url=services.redis_url,
        redis_cluster=services.redis_cluster,
        redis_key_prefix=f"t:migrate-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path,
    )
    yield settings
    delete_keys(settings)


USERS = ["u1", "u2", "{odd}", "a:b"]


def write_v1(settings: Settings) -> None:
    client = redis_sync(settings)
    try:
        for user in USERS:
            client.hset(
                v1_key(settings, RECO_KIND, user), mapping={"ver": "1", "json": f'{{"user_id":"{user}"}}'}
            )
            client.expire(v1_key(settings, RECO_KIND, user), 3600)
            client.set(v1_key(settings, EMB_KIND, user), b"\x00\x00\x80?", ex=3600)
            client.rpush(v1_key(settings, RECENT_KIND, user), "e1", "e2")
        client.set(v1_key(settings, FORGOTTEN_KIND, "gone"), 12345, ex=900_000)
        client.zadd(f"{settings.redis_key_prefix}:popular", {"sku-1": 2.0, "sku-2": 1.0})
    finally:
        client.close()


def test_v1_keys_move_to_v2_with_their_expiries_and_a_second_run_does_nothing(prefixed: Settings) -> None:
    write_v1(prefixed)
    client = redis_sync(prefixed)
    try:
        # A worker of the new version already wrote u2's profile: the newer v2 key stays.
        client.hset(prefixed.redis_key(RECO_KIND, "u2"), mapping={"ver": "2", "json": "newer"})
        first = migrate_keys(prefixed, batch=3)
        assert (first.copied, first.kept_v2) == (4 * 3 + 1 + 1 - 1, 1)
        key = prefixed.redis_key
        for user in USERS:
            assert client.lrange(key(RECENT_KIND, user), 0, -1) == [b"e1", b"e2"]
            assert client.get(key(EMB_KIND, user)) == b"\x00\x00\x80?"
            assert 3500 < client.ttl(key(EMB_KIND, user)) <= 3600
            assert client.ttl(key(RECENT_KIND, user)) == -1  # no expiry stays no expiry
        assert client.hget(key(RECO_KIND, "u1"), "json") == b'{"user_id":"u1"}'
        assert client.hget(key(RECO_KIND, "u2"), "json") == b"newer"
        assert 899_000 < client.ttl(key(FORGOTTEN_KIND, "gone")) <= 900_000
        assert client.zrange(popular_key(prefixed), 0, -1, withscores=True) == [
            (b"sku-2", 1.0),
            (b"sku-1", 2.0),
        ]
        left = [k for k in client.scan_iter(match=f"{prefixed.redis_key_prefix}:*") if b"{" not in k]
        assert left == []
        second = migrate_keys(prefixed)
        assert (second.copied, second.kept_v2, second.vanished) == (0, 0, 0)
    finally:
        client.close()


def test_a_run_stopped_between_restore_and_delete_resumes(prefixed: Settings) -> None:
    write_v1(prefixed)
    client = redis_sync(prefixed)
    try:
        # What a run killed after RESTORE and before DEL leaves: both copies.
        dump = client.dump(v1_key(prefixed, RECENT_KIND, "u1"))
        assert dump is not None
        client.restore(prefixed.redis_key(RECENT_KIND, "u1"), 0, dump)
        report = migrate_keys(prefixed)
        assert report.kept_v2 == 1
        assert client.exists(v1_key(prefixed, RECENT_KIND, "u1")) == 0
        assert client.lrange(prefixed.redis_key(RECENT_KIND, "u1"), 0, -1) == [b"e1", b"e2"]
    finally:
        client.close()


def test_the_command_line_reports_what_it_moved(prefixed: Settings) -> None:
    write_v1(prefixed)
    env = child_environment({}, prefixed)
    dry = CliRunner().invoke(main, ["redis", "migrate-keys", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would copy 14 v1 keys" in dry.output
    done = CliRunner().invoke(main, ["redis", "migrate-keys"], env=env)
    assert done.exit_code == 0, done.output
    assert "copied 14 v1 keys" in done.output
