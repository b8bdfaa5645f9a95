"""Lookup latency for page renderers: the Python client and the HTTP endpoint, side by side.

Seeds `--users` users' recommendation payloads (20 items each, the shape the worker writes) and
the popular set into a fresh key prefix, then times `--requests` sequential lookups of random
users (a share of them unknown, served by the popular fallback) through `RecoClient.get` and
through `GET /v1/users/{id}/recommendations` on a real uvicorn server. Prints JSON and a table.

    .venv/bin/python bench/lookups.py --redis-url redis://127.0.0.1:29379/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import uvicorn
from redis import Redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import delete_redis_prefix  # noqa: E402
from stream.core.settings import Settings, load_settings  # noqa: E402
from stream.redis.reco_store import RECO_KIND, popular_key  # noqa: E402
from stream.serving.api import create_lookup_app  # noqa: E402
from stream.serving.lookups import RecoClient  # noqa: E402


def seed(settings: Settings, users: int) -> None:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    pipe = redis.pipeline(transaction=False)
    for n in range(users):
        payload = {
            "user_id": f"u{n}",
            "items": [
                {"item_id": f"sku-{i:05d}", "score": 0.9 - i / 100, "reason": "because you viewed something"}
                for i in range(20)
            ],
            "model_version": "bench",
            "window_newest_ts_ms": 1,
            "window_newest_event_id": "e",
            "computed_at_ms": 1,
            "source": "profile",
        }
        pipe.hset(settings.redis_key(RECO_KIND, f"u{n}"), mapping={"ver": "x", "json": json.dumps(payload)})
    pipe.zadd(popular_key(settings), {f"sku-{i:05d}": float(i) for i in range(500)})
    pipe.execute()
    redis.close()


def summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 3),
        "max_ms": round(ordered[-1], 3),
    }


def user_ids(args: argparse.Namespace) -> list[str]:
    rng = random.Random(1)
    return [
        f"u{rng.randrange(args.users)}" if rng.random() > args.unknown_share else f"nobody-{n}"
        for n in range(args.requests)
    ]


async def time_client(settings: Settings, ids: list[str]) -> list[float]:
    client = RecoClient.from_settings(settings)
    samples = []
    for user_id in ids:
        started = time.perf_counter()
        await client.get(user_id, 10)
        samples.append((time.perf_counter() - started) * 1000)
    await client.close()
    return samples


def time_http(settings: Settings, ids: list[str]) -> list[float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_lookup_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    samples = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        for user_id in ids:
            started = time.perf_counter()
            http.get(f"/v1/users/{user_id}/recommendations", params={"k": 10}).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    server.should_exit = True
    thread.join()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:29379/0")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--unknown-share", type=float, default=0.1)
    args = parser.parse_args()
    settings = load_settings(
        {}, redis_url=args.redis_url, redis_key_prefix=f"bench-lookups-{uuid.uuid4().hex[:6]}"
    )
    seed(settings, args.users)
    try:
        ids = user_ids(args)
        client = summary(asyncio.run(time_client(settings, ids))[100:])
        http = summary(time_http(settings, ids)[100:])
    finally:
        delete_redis_prefix(settings)
    result = {"requests": args.requests, "users": args.users, "python_client": client, "http_endpoint": http}
    print(json.dumps(result, indent=2))
    print("path            | p50 ms | p99 ms | max ms")
    for name, row in (("python client", client), ("HTTP endpoint", http)):
        print(f"{name:<15} | {row['p50_ms']:6.3f} | {row['p99_ms']:6.3f} | {row['max_ms']:6.3f}")


if __name__ == "__main__":
    main()
