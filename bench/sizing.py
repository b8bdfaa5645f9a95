"""Sizing: the per-user and per-event costs a deployment scales with, and the table built from them.

Measured here, in this process (seconds, no servers): the bytes of one event as produced (JSON),
the compacted changelog bytes of one user's window (key + value, the worker's own encoding) at 1,
20 and 50 events, what 100,000 users' windows cost in a worker's memory with the default
in-memory table store (a dict of the encoded windows, resident set growth after collection), and
what one decoded window in the worker's window cache costs (`PROFILESTREAM_WINDOW_CACHE_USERS`
bounds that cache, so it is a fixed cost per worker, not per user).

Taken from other measurements (each cited where it was made, `--inputs` overrides them):
Redis bytes per user (`bench/state_size.py`: MEMORY USAGE of each sampled user's reco, emb and
recent keys), worker CPU ms per event (`bench/scale_out.py`), one worker's sustainable events/s
at p99 freshness <= 1 s (`bench/pipeline.py`), the worker's resident set without users
(`bench/state_size.py`) and encoder throughputs (`bench/encoder.py`).

The model (printed with the formulas) sizes 1M, 10M, 100M users at 1k, 10k, 100k events/s:

    python bench/sizing.py [--inputs extra.json] [--users-sample 100000] [--redis-url redis://127.0.0.1:26679/0]

`--redis-url` (a local Redis of its own) also measures newer-only profile writes per second of
the Redis server's CPU and the MEMORY USAGE of one profile's keys (`measure_redis`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from stream.core.events import Event  # noqa: E402
from stream.core.records import Recommendation, UserProfile  # noqa: E402
from stream.core.sample import SampleSpec, sample_events  # noqa: E402
from stream.core.settings import load_settings  # noqa: E402
from stream.core.window import Window, WindowConfig, apply_events, encode_window  # noqa: E402
from stream.redis.reco_store import EMB_KIND, RECO_KIND, RecoStore  # noqa: E402
from stream.worker.window_cache import WindowCache  # noqa: E402

MIB = 1024 * 1024
GB = 1e9

# Figures measured elsewhere; each names its source. --inputs replaces any of them.
CITED: dict[str, dict[str, Any]] = {
    "redis_bytes_per_user": {
        "value": 7715,
        "source": "bench/state_size.py --events 100000 --active 500 (stream/worker/README.md, "
        "state size; commit 3cd0041): MEMORY USAGE of reco + emb + recent, 500 users sampled, "
        "20-item top-K with reasons and a 384-float vector each",
    },
    "worker_cpu_ms_per_event": {
        "value": 0.93,
        "source": "bench/pipeline.py, 1 worker at 1,000 events/s, quiet machine (bench/README.md, "
        "pipeline; commit d21dde9); replaced by bench/scale_out.py's figure where given",
    },
    "worker_events_per_s_at_p99_1s": {
        "value": 1000,
        "source": "bench/pipeline.py: one last_item worker held p99 freshness 992 ms at 1,000 "
        "events/s (items: 997 ms at 750; the sequence tower 1.3 s at 500) (bench/README.md, "
        "pipeline; commit dc5f0f9)",
    },
    "worker_base_rss_mib": {
        "value": 343,
        "source": "bench/state_size.py: worker RSS with ~800 users in its table, 500-item index "
        "(stream/worker/README.md; commit 3cd0041)",
    },
    "encoder_titles_per_s_2_cores": {
        "value": 454.8,
        "source": "bench/encoder.py --quick: 512 real titles, batch 32, fp32 ONNX, 2 threads "
        "(bench/README.md, encoder; commit d21dde9)",
    },
    "encoder_text_profiles_per_s_2_cores": {
        "value": 40,
        "source": "bench/README.md, pipeline: --user-vector text, 40-80 long profiles/s on 2 "
        "cores (the low end; commit d21dde9)",
    },
    "redis_profile_writes_per_core": {
        "value": 18779,
        "source": "bench/sizing.py --redis-url (measure_redis: 40,000 newer-only profile writes, "
        "batches of 200 from 4 clients, into a local redis-server; profiles per second of the "
        "server's CPU; 19,802 in a 20,000-profile run; commit aec6e20 with uncommitted changes)",
    },
    "events_per_profile": {
        "value": 2.15,
        "source": "bench/pipeline.py, 1 worker at 1,000 events/s: events coalesced per profile "
        "computed (bench/README.md, pipeline; commit d21dde9)",
    },
}

# Choices of the model, not measurements (said so in the table's notes).
REDIS_SHARD_USABLE_GB = 25.0  # data per master, leaving room for fork/AOF rewrite on a 32 GB node
REDIS_TARGET_CPU = 0.5  # of a master's one core spent on profile writes (activity writes, reads)
PARTITION_HEADROOM = 2  # partitions = 2 x workers (a power of two): workers can double in place
MIN_PARTITIONS = 8
MIN_WORKERS = 2  # one may die or restart while the other carries on
EVENTS_RETENTION_DAYS = 7
REPLICATION = 3
WINDOW_EVENTS_MODEL = 20  # events in a typical retained window (max 50)


def rss_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


def windows_by_size(users: int, sizes: tuple[int, ...], seed: int) -> dict[int, list[tuple[bytes, Window]]]:
    """Real windows (the worker's own `apply_events`) of `users` users holding n events each."""
    events = sample_events(
        SampleSpec(users=users, events=users * max(sizes), items=500, seed=seed, zipf_s=0.0)
    )
    per_user: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        per_user[event.user_id].append(event)
    config = WindowConfig(max_age_ms=10**15)
    out: dict[int, list[tuple[bytes, Window]]] = {}
    for n in sizes:
        out[n] = [
            (user.encode(), apply_events(Window(), evs[:n], config).window)
            for user, evs in per_user.items()
            if len(evs) >= n
        ]
    return out


def measure(users_sample: int, seed: int) -> dict[str, Any]:
    sizes = (1, 20, 50)
    windows = windows_by_size(2000, sizes, seed)
    event_json = [len(e.to_json()) for e in sample_events(SampleSpec(users=500, events=20_000, seed=seed))]
    result: dict[str, Any] = {
        "event_json_bytes_mean": round(sum(event_json) / len(event_json)),
        "changelog_bytes_per_user": {
            n: round(sum(len(k) + len(encode_window(w)) for k, w in ws) / len(ws))
            for n, ws in windows.items()
        },
    }
    # The in-memory table store: key -> encoded window, one allocation each (copied), as Faust's
    # memory store holds them.
    table_rss: dict[int, float] = {}
    for n in (1, 20, 50):
        pool = [(k, encode_window(w)) for k, w in windows[n]]
        gc.collect()
        before = rss_bytes()
        table = {
            f"user-{i:09d}".encode(): bytes(bytearray(pool[i % len(pool)][1])) for i in range(users_sample)
        }
        gc.collect()
        table_rss[n] = (rss_bytes() - before) / users_sample * 100_000 / MIB
        del table
        gc.collect()
    result["memory_table_mib_per_100k_users"] = {n: round(v, 1) for n, v in table_rss.items()}
    # The decoded-window cache (bounded by PROFILESTREAM_WINDOW_CACHE_USERS).
    cache_bytes: dict[int, float] = {}
    for n in (20, 50):
        raws = [encode_window(w) for _, w in windows[n]]
        cache = WindowCache(20_000)
        gc.collect()
        before = rss_bytes()
        for i in range(20_000):
            raw = bytes(bytearray(raws[i % len(raws)]))
            cache.decode(f"user-{i:09d}".encode(), raw)
        gc.collect()
        cache_bytes[n] = (rss_bytes() - before) / 20_000
        del cache
        gc.collect()
    result["window_cache_bytes_per_window"] = {n: round(v) for n, v in cache_bytes.items()}
    result["window_cache_mib_at_default_20000"] = {n: round(v * 20_000 / MIB) for n, v in cache_bytes.items()}
    return result


def synthetic_profile(n: int, rng: np.random.Generator) -> UserProfile:
    """A profile shaped like the worker's: 20 items with reasons, a 384-float unit vector."""
    vector = rng.standard_normal(384).astype(np.float32)
    return UserProfile(
        user_id=f"sizing-user-{n:09d}",
        items=tuple(
            Recommendation(
                f"sku-{(n * 31 + k) % 500:05d}", 0.9 - k * 0.01, "Because you viewed Gel pens, blue, 12 pack"
            )
            for k in range(20)
        ),
        vector=vector / np.linalg.norm(vector),
        model_version="all-MiniLM-L6-v2:fp32:0123456789abcdef",
        window_version=f"1764000000000:e-{n}",
        window_newest_ts_ms=1_764_000_000_000,
        window_newest_event_id=f"e-{n}",
    )


def server_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _write_all(store: RecoStore, profiles: list[UserProfile], batch: int) -> None:
    for start in range(0, len(profiles), batch):
        await store.write(profiles[start : start + batch], [], {}, int(time.time() * 1000))


def measure_redis(redis_url: str, count: int, batch: int, clients: int) -> dict[str, Any]:
    """Newer-only profile writes (the worker's own `RecoStore.write`) into a local Redis: profiles
    per second of the server's CPU, and MEMORY USAGE of the keys one profile leaves."""
    from redis import Redis

    prefix = f"sizing:{os.getpid()}"
    settings = load_settings({}, redis_url=redis_url, redis_key_prefix=prefix, reco_ttl_s=3600)
    rng = np.random.default_rng(16)
    profiles = [synthetic_profile(n, rng) for n in range(count)]
    sync = Redis.from_url(redis_url)
    pid = int(sync.info("server")["process_id"])

    async def run() -> float:
        stores = [RecoStore.from_settings(settings) for _ in range(clients)]
        started = time.perf_counter()
        await asyncio.gather(*(_write_all(s, profiles[i::clients], batch) for i, s in enumerate(stores)))
        elapsed = time.perf_counter() - started
        await asyncio.gather(*(s.close() for s in stores))
        return elapsed

    cpu_before = server_cpu_s(pid)
    elapsed = asyncio.run(run())
    cpu_used = server_cpu_s(pid) - cpu_before
    sample = [p.user_id for p in profiles[:: max(1, count // 500)]]
    per_user = [
        sum(int(sync.memory_usage(settings.redis_key(kind, user)) or 0) for kind in (RECO_KIND, EMB_KIND))
        for user in sample
    ]
    keys = list(sync.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 1000):
        sync.delete(*keys[start : start + 1000])
    sync.close()
    return {
        "profiles": count,
        "batch": batch,
        "clients": clients,
        "wall_s": round(elapsed, 2),
        "profiles_per_s_wall": round(count / elapsed),
        "server_cpu_s": round(cpu_used, 2),
        "profiles_per_server_cpu_s": round(count / cpu_used) if cpu_used else None,
        "reco_plus_emb_bytes_per_user": round(sum(per_user) / len(per_user)),
    }


def model(measured: dict[str, Any], cited: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    c = {name: float(entry["value"]) for name, entry in cited.items()}
    changelog_b = float(measured["changelog_bytes_per_user"][WINDOW_EVENTS_MODEL])
    table_mib_100k = float(measured["memory_table_mib_per_100k_users"][WINDOW_EVENTS_MODEL])
    rows = []
    for users in (1_000_000, 10_000_000, 100_000_000):
        for rate in (1_000, 10_000, 100_000):
            workers = max(MIN_WORKERS, math.ceil(rate / c["worker_events_per_s_at_p99_1s"]))
            partitions = max(MIN_PARTITIONS, 2 ** math.ceil(math.log2(PARTITION_HEADROOM * workers)))
            redis_gb = users * c["redis_bytes_per_user"] / GB
            profiles_per_s = rate / c["events_per_profile"]
            shards = max(
                1,
                math.ceil(redis_gb / REDIS_SHARD_USABLE_GB),
                math.ceil(profiles_per_s / (c["redis_profile_writes_per_core"] * REDIS_TARGET_CPU)),
            )
            worker_cores = rate * c["worker_cpu_ms_per_event"] / 1000
            table_gb_per_worker = users / workers / 100_000 * table_mib_100k * MIB / GB
            changelog_gb = users * changelog_b * REPLICATION / GB
            events_tb = (
                rate * 86_400 * EVENTS_RETENTION_DAYS * measured["event_json_bytes_mean"] * REPLICATION / 1e12
            )
            text_cores = profiles_per_s / (c["encoder_text_profiles_per_s_2_cores"] / 2)
            rows.append(
                {
                    "users": users,
                    "events_per_s": rate,
                    "partitions": partitions,
                    "workers": workers,
                    "worker_cores": round(worker_cores, 1),
                    "memory_store_table_gb_per_worker": round(table_gb_per_worker, 1),
                    "redis_gb": round(redis_gb, 1),
                    "redis_shards": shards,
                    "redis_gb_with_replicas": round(2 * redis_gb, 1),
                    "changelog_gb_replicated": round(changelog_gb, 1),
                    "events_topic_tb_replicated": round(events_tb, 2),
                    "profiles_per_s": round(profiles_per_s),
                    "text_mode_encoder_cores": round(text_cores),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=Path, help="JSON {name: value} replacing cited figures.")
    parser.add_argument("--users-sample", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--redis-url", help="Also measure profile writes into this (local) Redis.")
    parser.add_argument("--redis-profiles", type=int, default=20_000)
    args = parser.parse_args()
    cited = {name: dict(entry) for name, entry in CITED.items()}
    if args.inputs:
        for name, value in json.loads(args.inputs.read_text()).items():
            cited[name] = {"value": value["value"], "source": value["source"]}
    measured = measure(args.users_sample, args.seed)
    if args.redis_url:
        measured["redis_writes"] = measure_redis(args.redis_url, args.redis_profiles, 200, 4)
    rows = model(measured, cited)
    print(json.dumps({"measured": measured, "cited": cited, "model": rows}, indent=1))
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in columns))


if __name__ == "__main__":
    main()
