"""Personalised search latency at a fixed request rate, query encoding included.

    python -m bench.search [--rate 50] [--duration-s 20] [--redis-url redis://127.0.0.1:29379/0]

Writes `--users` live profiles into a fresh Redis key prefix the way the worker does (an ``emb``
vector: the mean of a few catalogue items, and a ``recent`` list with views and two searches),
then sends searches open-loop at `--rate` per second for `--duration-s` seconds: request i is due
at ``start + i / rate`` whether or not earlier ones have finished, and its latency runs from that
due time, so queueing shows in p99 instead of hiding in a slower send rate. Every query is new
(the LRU cache cannot hide the encoder); the users' recent queries repeat, as they would, so they
hit the cache after their first use. `--unknown-share` of requests come from unknown users.

Two paths in the same run: the Python client (`RecoClient.search`, in this process) and
``GET /v1/search`` on a real `profilestream serve-lookups` child process (httpx, keep-alive).
The model and index come from PROFILESTREAM_MODEL_DIR / PROFILESTREAM_INDEX_DIR (defaults
var/model and var/index, which `make demo` builds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from redis import Redis

from bench.common import delete_redis_prefix, emit, percentile, print_json, print_table

REPO = Path(__file__).resolve().parents[1]
WORDS = (
    "stapler", "gel", "pens", "desk", "lamp", "printer", "paper", "notebook", "label", "maker", "ink",
    "cartridge", "shredder", "binder", "clips", "folders", "highlighters", "sticky", "notes", "monitor",
    "stand", "black", "blue", "red", "compact", "premium", "ergonomic", "mini", "recycled", "a4", "a5",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed_profiles(settings: Any, item_ids: list[str], vectors: Any, users: int, seed: int) -> None:
    from stream.redis.activity import RECENT_KIND
    from stream.redis.reco_store import EMB_KIND

    rng = random.Random(seed)
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    pipe = redis.pipeline(transaction=False)
    for n in range(users):
        rows = [rng.randrange(len(item_ids)) for _ in range(5)]
        vector = vectors[rows].mean(axis=0)
        vector = (vector / np.linalg.norm(vector)).astype("<f4")
        pipe.set(settings.redis_key(EMB_KIND, f"u{n}"), vector.tobytes())
        recent = [
            {
                "event_id": f"u{n}-v{i}",
                "type": "view",
                "ts_ms": 1_764_000_000_000 + i,
                "item_id": item_ids[row],
            }
            for i, row in enumerate(rows)
        ]
        recent += [
            {"event_id": f"u{n}-s{i}", "type": "search", "ts_ms": 1_764_000_001_000 + i, "query": query}
            for i, query in enumerate(" ".join(rng.sample(WORDS, 2)) for _ in range(2))
        ]
        pipe.rpush(settings.redis_key(RECENT_KIND, f"u{n}"), *(json.dumps(r) for r in recent))
    pipe.execute()
    redis.close()


def requests_plan(args: argparse.Namespace, tag: str) -> list[tuple[str, str | None]]:
    """(query, user) per request; queries are unique per run and path so that each one is encoded."""
    rng = random.Random(args.seed)
    plan: list[tuple[str, str | None]] = []
    for n in range(int(args.rate * args.duration_s)):
        query = f"{' '.join(rng.sample(WORDS, rng.randint(1, 3)))} {tag}{n}"
        user = f"nobody-{n}" if rng.random() < args.unknown_share else f"u{rng.randrange(args.users)}"
        plan.append((query, user))
    return plan


async def open_loop(
    call: Callable[[str, str | None], Awaitable[dict[str, Any]]],
    plan: list[tuple[str, str | None]],
    rate: float,
) -> tuple[list[float], int, int]:
    """Latencies (ms, from each request's due time) of the answered requests, how many answers were
    personalised, and how many requests failed."""
    latencies: list[float] = []
    personalised = 0
    errors = 0
    start = time.perf_counter() + 0.2

    async def one(n: int, query: str, user: str | None) -> None:
        nonlocal personalised, errors
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        body = await call(query, user)
        if "error" in body:
            errors += 1
            return
        latencies.append((time.perf_counter() - due) * 1000)
        personalised += bool(body["personalised"])

    await asyncio.gather(*(one(n, q, u) for n, (q, u) in enumerate(plan)))
    return latencies, personalised, errors


async def run_client(
    settings: Any, plan: list[tuple[str, str | None]], rate: float
) -> tuple[list[float], int, int]:
    from stream.serving.lookups import RecoClient

    client = RecoClient.from_settings(settings)
    await client.open_search()
    await client.search("warm up", "u0", 10)

    async def call(query: str, user: str | None) -> dict[str, Any]:
        return (await client.search(query, user, 10)).to_dict()

    try:
        return await open_loop(call, plan, rate)
    finally:
        await client.close()


async def run_http(
    base_url: str, plan: list[tuple[str, str | None]], rate: float
) -> tuple[list[float], int, int]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as http:
        (await http.get("/v1/search", params={"q": "warm up", "user_id": "u0"})).raise_for_status()

        async def call(query: str, user: str | None) -> dict[str, Any]:
            params = {"q": query, "k": "10"} | ({"user_id": user} if user else {})
            try:
                response = await http.get("/v1/search", params=params)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                # An overloaded server may drop connections: count it, keep the run going.
                return {"personalised": False, "error": repr(exc)}
            body: dict[str, Any] = response.json()
            return body

        return await open_loop(call, plan, rate)


def start_server(settings: Any, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    from stream.core.settings import child_environment

    env = child_environment(os.environ, settings)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "serve-lookups", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve-lookups exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("serve-lookups did not answer /healthz within 120 s")


def summary(name: str, outcome: tuple[list[float], int, int], wall_s: float) -> dict[str, Any]:
    latencies, personalised, errors = outcome
    return {
        "path": name,
        "answered": len(latencies),
        "failed": errors,
        "personalised": personalised,
        "achieved_per_s": len(latencies) / wall_s,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:29379/0")
    parser.add_argument("--rate", type=float, default=50.0, help="Requests per second (open loop).")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--unknown-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--paths", default="client,http", help="Comma-separated: client, http.")
    args = parser.parse_args()

    from models.encoder.onnx_encoder import load_encoder, options_from_settings
    from stream.core.settings import load_settings
    from stream.profiles.catalogue import load_catalogue

    settings = load_settings(
        {k: v for k, v in os.environ.items() if k.startswith("PROFILESTREAM_")},
        redis_url=args.redis_url,
        redis_key_prefix=f"bench-search-{uuid.uuid4().hex[:6]}",
    )
    # Only for the index's encoder check and the report; the searches load their own encoder.
    model_version = load_encoder(settings.model_dir, options_from_settings(settings)).model_version
    catalogue = load_catalogue(settings, model_version)
    seed_profiles(settings, list(catalogue.ids), catalogue.vectors, args.users, args.seed)
    rows: list[dict[str, Any]] = []
    try:
        if "client" in args.paths:
            started = time.perf_counter()
            outcome = asyncio.run(run_client(settings, requests_plan(args, "c"), args.rate))
            rows.append(summary("python client", outcome, time.perf_counter() - started))
        if "http" in args.paths:
            port = free_port()
            server = start_server(settings, port, Path(f"/tmp/bench-search-{port}.log"))
            try:
                started = time.perf_counter()
                plan = requests_plan(args, "h")
                outcome = asyncio.run(run_http(f"http://127.0.0.1:{port}", plan, args.rate))
                rows.append(summary("HTTP /v1/search", outcome, time.perf_counter() - started))
            finally:
                server.terminate()
                server.wait(timeout=30)
    finally:
        delete_redis_prefix(settings)
    print_json(
        {
            "rate_per_s": args.rate,
            "duration_s": args.duration_s,
            "users": args.users,
            "catalogue_items": len(catalogue.ids),
            "candidates": settings.search_candidates,
            "model_version": model_version,
            "results": rows,
        }
    )
    emit()
    columns = ["path", "answered", "failed", "personalised", "achieved_per_s", "p50_ms", "p90_ms", "p99_ms"]
    print_table(rows, columns)


if __name__ == "__main__":
    main()
