"""The batch write path on Redis: v1's one MULTI/EXEC per batch against v2's apply-once units (one
per user and one for `popular`, several per script call where they share a slot: all of them on a
single Redis), on a single Redis and on a Redis Cluster; and what the shop-wide
`popular` set costs the node that holds it.

    python -m bench.redis_write_path --redis-url redis://127.0.0.1:6379/0 \
        [--cluster-url redis://127.0.0.1:29500/0] [--batches 40] [--users 200] [--events 500]

Each timed batch is what one worker batch writes: `events` events over `users` users (recent
lists: RPUSH, LTRIM, EXPIRE per user), one profile per user (the newer-only write of a 384-float
vector and a top-20 JSON payload), and ZINCRBY of the batch's distinct items into `popular` (then
the trim to 10,000 items). v1 is the previous code path (WATCH of a per-batch marker, MULTI, every
command, EXEC) reproduced here; v2 is `stream.redis.apply_once.execute_until_done`. For `popular`,
the server's own time per script call (INFO commandstats, usec_per_call of EVALSHA) with only
popular's unit in the batch gives how many worker batches per second one node absorbs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import redis.asyncio
from redis.exceptions import ResponseError

from bench.common import emit, median, print_json, print_table
from stream.core.settings import Settings, load_settings
from stream.redis.activity import RECENT_KIND
from stream.redis.apply_once import RedisOp, execute_until_done
from stream.redis.client import AsyncRedis, redis_async, redis_sync
from stream.redis.reco_store import EMB_KIND, FORGOTTEN_KIND, RECO_KIND, WRITE_IF_NEWER_LUA, popular_key

VECTOR = np.random.default_rng(0).random(384, dtype=np.float32).astype("<f4").tobytes()
ITEMS = [f"sku-{n:05d}" for n in range(20_000)]
# v1's newer-only script (the v2 apply-once script inlines the same function).
V1_WRITE_LUA = WRITE_IF_NEWER_LUA


def batch_ops(settings: Settings, users: int, events: int, version: int, rng: random.Random) -> list[RedisOp]:
    key = settings.redis_key
    ops: list[RedisOp] = []
    per_user = max(1, events // users)
    payload = json.dumps({"items": [{"item_id": item, "score": 0.5, "reason": None} for item in ITEMS[:20]]})
    for u in range(users):
        user = f"u{u}"
        entries = [
            json.dumps({"event_id": f"e{version}-{n}", "item_id": rng.choice(ITEMS)}) for n in range(per_user)
        ]
        ops += [
            RedisOp("rpush", (key(RECENT_KIND, user), *entries)),
            RedisOp("ltrim", (key(RECENT_KIND, user), -50, -1)),
            RedisOp("expire", (key(RECENT_KIND, user), 2_592_000)),
            RedisOp(
                "write_if_newer",
                (
                    key(RECO_KIND, user),
                    key(EMB_KIND, user),
                    key(FORGOTTEN_KIND, user),
                    version,
                    f"{version:016d}",
                    payload,
                    VECTOR,
                    604_800,
                ),
            ),
        ]
    return ops + popularity_ops(settings, events, rng)


def popularity_ops(settings: Settings, events: int, rng: random.Random) -> list[RedisOp]:
    items = {rng.choice(ITEMS): 1.0 for _ in range(events)}
    ops = [RedisOp("zincrby", (popular_key(settings), inc, item)) for item, inc in sorted(items.items())]
    return [*ops, RedisOp("zremrangebyrank", (popular_key(settings), 0, -10_001))]


async def v1_execute(client: redis.asyncio.Redis, ops: Sequence[RedisOp], prefix: str, sha: str) -> None:
    """v1's write: one MULTI/EXEC over the whole batch under WATCH of a per-batch marker."""
    marker = f"{prefix}:applied:{uuid.uuid4().hex}"
    async with client.pipeline(transaction=True) as pipe:
        await pipe.watch(marker)
        if await pipe.exists(marker):
            return
        pipe.multi()  # type: ignore[no-untyped-call]
        for op in ops:
            if op.command == "write_if_newer":
                reco, emb, forgotten, *argv = op.args
                pipe.evalsha(sha, 3, reco, emb, forgotten, *argv)
            else:
                getattr(pipe, op.command)(*op.args)
        pipe.set(marker, 1, ex=600)
        await pipe.execute()


async def run_path(settings: Settings, path: str, args: argparse.Namespace) -> dict[str, Any]:
    client: AsyncRedis = redis_async(settings)
    rng = random.Random(7)
    plans = [batch_ops(settings, args.users, args.events, v + 1, rng) for v in range(args.batches + 2)]
    sha = ""
    if path == "v1":
        assert isinstance(client, redis.asyncio.Redis)
        sha = await client.script_load(V1_WRITE_LUA)
    times_s = []
    try:
        for n, ops in enumerate(plans):
            started = time.perf_counter()
            if path == "v1":
                assert isinstance(client, redis.asyncio.Redis)
                await v1_execute(client, ops, settings.redis_key_prefix, sha)
            else:
                await execute_until_done(
                    client, ops, what="a bench batch", key_prefix=settings.redis_key_prefix, writer="bench"
                )
            if n >= 2:  # the first two load scripts and create keys
                times_s.append(time.perf_counter() - started)
    finally:
        await client.aclose()
    ms = median(times_s) * 1000
    return {
        "path": path,
        "ms_per_batch": ms,
        "batches_per_s": 1000 / ms,
        "events_per_s": args.events * 1000 / ms,
    }


def popular_cost(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Server-side microseconds of one batch's popular unit, on the node that holds the key."""
    rng = random.Random(11)
    sync = redis_sync(settings)
    node_client = sync
    if settings.redis_cluster:
        from redis.cluster import RedisCluster

        assert isinstance(sync, RedisCluster)
        node = sync.get_node_from_key(popular_key(settings))  # type: ignore[no-untyped-call]
        node_client = node.redis_connection
    # Fill popular to its trim size first, as in a running shop.
    sync.zadd(popular_key(settings), {item: rng.random() for item in ITEMS[:10_000]})
    node_client.config_resetstat()

    async def go() -> None:
        client = redis_async(settings)
        try:
            for _ in range(args.batches):
                ops = popularity_ops(settings, args.events, rng)
                await execute_until_done(
                    client, ops, what="popular", key_prefix=settings.redis_key_prefix, writer="bench"
                )
        finally:
            await client.aclose()

    started = time.perf_counter()
    asyncio.run(go())
    wall_s = time.perf_counter() - started
    stats = node_client.info("commandstats").get("cmdstat_evalsha", {})
    sync.close()
    usec = float(stats.get("usec_per_call", 0.0))
    return {
        "distinct_items_per_batch": len({rng.choice(ITEMS) for _ in range(args.events)}),
        "server_usec_per_batch": usec,
        "batches_per_s_one_node_core": 1e6 / usec if usec else None,
        "client_batches_per_s_sequential": args.batches / wall_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--cluster-url", default=None, help="a node of a Redis Cluster (optional)")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--events", type=int, default=500)
    args = parser.parse_args()
    targets = [("single", args.redis_url, False)]
    if args.cluster_url:
        targets.append(("cluster", args.cluster_url, True))
    rows, popular = [], []
    for name, url, cluster in targets:
        settings = load_settings(
            {}, redis_url=url, redis_cluster=cluster, redis_key_prefix=f"bench-wp-{uuid.uuid4().hex[:6]}"
        )
        try:
            for path in ("v1", "v2") if not cluster else ("v2",):
                try:
                    rows.append({"redis": name, **asyncio.run(run_path(settings, path, args))})
                except ResponseError as exc:
                    rows.append({"redis": name, "path": path, "error": str(exc)[:60]})
            popular.append({"redis": name, **popular_cost(settings, args)})
        finally:
            from stream.redis.client import delete_prefix

            delete_prefix(settings)
    emit(f"{args.events} events over {args.users} users per batch, median of {args.batches} batches")
    print_table(rows, ["redis", "path", "ms_per_batch", "batches_per_s", "events_per_s"])
    emit()
    emit("popular: one batch's ZINCRBYs + trim, server time on the node holding the key")
    columns = ["redis", "distinct_items_per_batch", "server_usec_per_batch", "batches_per_s_one_node_core"]
    print_table(popular, columns)
    print_json({"write_path": rows, "popular": popular, "args": vars(args)})


if __name__ == "__main__":
    main()
