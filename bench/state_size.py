"""Bounded state under user churn: a real worker over many events from users who come and go quiet.

A seeded generator keeps `--active` users sending at any moment; each sends `--events-per-user`
events and then goes quiet for good, and a new user takes its place, so the number of users ever
seen grows with the run (1M events / 20 per user = 50,000 users) while the number active stays
put. Event times (and receive times) advance `--step-ms` per event over a span that ends now, so
users go quiet in event time, which is the clock the retention watermark follows. With a short
`--retention-s` the worker's table, its changelog (compacted) and Redis must then hold about the
active users only, and the worker's RSS must stay flat while the total of users grows.

Reported: the worker's RSS over time (with events processed and users expired), bytes per
stored user in Redis (MEMORY USAGE of each sampled user's reco, emb and recent keys) and in the
changelog (the compacted size: the newest record of each live key, key plus value; and the raw
log's size on disk for reference), the users in the table at the end, and the popular set's size.

Runs its own Kafka and Redis (`deploy/local/services --name statesize`, ports 27092/27379, below
the ephemeral range), started and stopped here. Needs an exported model (`var/model`); the sample
catalogue is indexed into the run's own folder:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/state_size.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from redis import Redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import parse_metrics  # noqa: E402
from stream.core.events import Event, EventType  # noqa: E402
from stream.core.settings import Settings, child_environment, load_settings  # noqa: E402
from stream.kafka.drain import end_offsets, stored_positions  # noqa: E402
from stream.kafka.topics import ensure_topics, windows_changelog_topic  # noqa: E402
from stream.redis.activity import RECENT_KIND  # noqa: E402
from stream.redis.apply_once import APPLIED_KIND  # noqa: E402
from stream.redis.reco_store import EMB_KIND, RECO_KIND, popular_key  # noqa: E402

SERVICES = REPO / "deploy" / "local" / "services"
INSTANCE = "statesize"
CATALOGUE_ITEMS = 500
KINDS = [EventType.VIEW] * 6 + [EventType.CLICK] * 3 + [EventType.ADD_TO_CART, EventType.PURCHASE]


def churn_events(
    count: int, *, active: int, per_user: int, step_ms: int, seed: int, end_ms: int
) -> list[Event]:
    """`count` events of users who each send `per_user` and go quiet; `active` users at a time."""
    rng = random.Random(seed)
    start_ms = end_ms - count * step_ms
    users = [f"user-{n:07d}" for n in range(active)]
    sent = [0] * active
    next_user = active
    events = []
    for i in range(count):
        slot = rng.randrange(active)
        t = start_ms + i * step_ms
        kind = rng.choice(KINDS)
        # About 1 % of the item ids are not in the catalogue: popularity must leave them out.
        item = (
            f"made-up-{rng.randrange(10**6)}"
            if rng.random() < 0.01
            else f"sku-{rng.randrange(CATALOGUE_ITEMS):05d}"
        )
        events.append(Event(f"{users[slot]}-{sent[slot]}", users[slot], kind, t, item_id=item, received_ms=t))
        sent[slot] += 1
        if sent[slot] >= per_user:
            users[slot], sent[slot] = f"user-{next_user:07d}", 0
            next_user += 1
    return events


def services(*args: str) -> None:
    subprocess.run([str(SERVICES), *args], check=True, cwd=REPO)


def cli(settings: Settings, *args: str) -> None:
    env = child_environment(os.environ, settings) | {"HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "stream.cli", *args], env=env, check=True, cwd=REPO)


def metric_values(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return parse_metrics(response.read().decode())
    except OSError:
        return {}


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def produce(settings: Settings, events: list[Event]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all", linger_ms=20)
    for event in events:
        producer.send(settings.events_topic, key=event.user_id.encode(), value=event.to_json())
    producer.flush()
    producer.close()


def redis_bytes_per_user(settings: Settings, sample: int, seed: int) -> dict[str, Any]:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        # Key schema v2 (stream/redis/README.md): {prefix}:{<user>}:<kind>; a user's keys differ
        # only in the kind after the hash tag.
        suffix = f":{RECO_KIND}"
        users = [
            key.decode().removesuffix(suffix)
            for key in redis.scan_iter(match=f"{settings.redis_key_prefix}:{{*}}{suffix}", count=1000)
        ]
        rng = random.Random(seed)
        chosen = rng.sample(users, min(sample, len(users)))
        per_user = []
        for user_keys in chosen:
            total = 0
            for kind in (RECO_KIND, EMB_KIND, RECENT_KIND):
                total += int(redis.memory_usage(f"{user_keys}:{kind}") or 0)
            per_user.append(total)
        # Every key of the run by kind (the apply-once markers, {prefix}:{tag}:applied:{writer},
        # expire after APPLIED_MARKER_TTL_S and so hold the users of the last few minutes).
        by_kind: dict[str, list[int]] = {}
        for raw in redis.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000):
            key = raw.decode()
            kind = APPLIED_KIND if f":{APPLIED_KIND}:" in key else key.rsplit(":", 1)[1]
            counted = by_kind.setdefault(kind, [0, 0])
            counted[0] += 1
            counted[1] += int(redis.memory_usage(key) or 0)
        info = redis.info("memory")
        popular = redis.zcard(popular_key(settings))
        return {
            "users_with_reco": len(users),
            "sampled": len(chosen),
            "bytes_per_user_mean": round(sum(per_user) / len(per_user)) if per_user else 0,
            "used_memory_bytes": info["used_memory"],
            "keys_and_bytes_by_kind": {
                kind: {"keys": n, "bytes": b} for kind, (n, b) in sorted(by_kind.items())
            },
            "popular_items": popular,
        }
    finally:
        redis.close()


def changelog_bytes(settings: Settings, data_root: Path) -> dict[str, Any]:
    consumer = KafkaConsumer(
        windows_changelog_topic(settings),
        bootstrap_servers=settings.kafka_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
        group_id=None,
        fetch_max_bytes=50_000_000,
    )
    latest: dict[bytes, int] = {}
    records = 0
    for record in consumer:
        records += 1
        if record.key is None:
            continue
        if record.value is None:
            latest.pop(record.key, None)
        else:
            latest[record.key] = len(record.key) + len(record.value)
    consumer.close()
    users = [k for k in latest if not k.startswith(b"\x00")]
    compacted = sum(latest[k] for k in users)
    topic = windows_changelog_topic(settings)
    on_disk = sum(
        f.stat().st_size
        for d in data_root.glob(f"**/{topic}-*")
        if d.is_dir()
        for f in d.iterdir()
        if f.is_file()
    )
    return {
        "records": records,
        "live_users": len(users),
        "compacted_bytes_per_user": round(compacted / len(users)) if users else 0,
        "log_bytes_on_disk": on_disk,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--active", type=int, default=2_000, help="Users sending at any moment.")
    parser.add_argument("--events-per-user", type=int, default=20)
    parser.add_argument("--step-ms", type=int, default=10, help="Event time between two events.")
    parser.add_argument("--retention-s", type=int, default=600)
    parser.add_argument("--model-dir", type=Path, default=REPO / "var" / "model")
    parser.add_argument("--kafka-port", type=int, default=27092)
    parser.add_argument("--redis-port", type=int, default=27379)
    parser.add_argument("--sample-every-s", type=float, default=10.0)
    parser.add_argument("--timeout-s", type=float, default=3600)
    parser.add_argument("--redis-sample", type=int, default=500)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--keep-services", action="store_true", help="Leave the servers running.")
    return parser.parse_args()


def bench_settings(args: argparse.Namespace, root: Path) -> Settings:
    tag = root.name.rsplit("-", 1)[1]
    return load_settings(
        {},
        kafka_bootstrap_servers=f"127.0.0.1:{args.kafka_port}",
        redis_url=f"redis://127.0.0.1:{args.redis_port}/0",
        events_topic=f"state.{tag}.events",
        dead_letter_topic=f"state.{tag}.dlq",
        consumer_group=f"state-{tag}",
        redis_key_prefix=f"state:{tag}",
        data_dir=root / "data",
        model_dir=args.model_dir,
        index_dir=root / "index",
        user_retention_s=args.retention_s,
        # Redis bounded the same way: a quiet user's keys expire after the retention (wall clock).
        reco_ttl_s=args.retention_s,
        recent_ttl_s=args.retention_s,
        batch_max_wait_ms=200,
        worker_web_port=17_000 + random.randrange(1000),
    )


def sample_until_drained(
    settings: Settings, worker: subprocess.Popen[bytes], log_path: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """RSS, events processed and users expired every few seconds until the worker is drained."""
    ends = end_offsets(settings)
    samples = []
    started = time.monotonic()
    while True:
        time.sleep(args.sample_every_s)
        assert worker.poll() is None, f"worker exited: {log_path.read_text()[-2000:]}"
        values = metric_values(settings.worker_web_port)
        sample = {
            "s": round(time.monotonic() - started),
            "events": int(values.get("profilestream_events_total", 0)),
            "expired": int(values.get("profilestream_users_expired_total", 0)),
            "rss_mib": round(rss_mib(worker.pid), 1),
        }
        samples.append(sample)
        print(json.dumps(sample), flush=True)
        drained = stored_positions(settings.worker_web_port) == ends
        if drained or time.monotonic() - started > args.timeout_s:
            sample["drained"] = drained
            return samples


def run(args: argparse.Namespace, settings: Settings, root: Path) -> dict[str, Any]:
    cli(settings, "sample-catalogue", str(root / "catalog.jsonl"))
    cli(settings, "index", str(root / "catalog.jsonl"))
    ensure_topics(settings)
    events = churn_events(
        args.events,
        active=args.active,
        per_user=args.events_per_user,
        step_ms=args.step_ms,
        seed=args.seed,
        end_ms=int(time.time() * 1000) - 1000,
    )
    total_users = len({e.user_id for e in events})
    started = time.monotonic()
    produce(settings, events)
    print(f"produced {len(events)} events of {total_users} users in {time.monotonic() - started:.0f} s")
    del events
    log_path = root / "worker.log"
    with open(log_path, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_environment(os.environ, settings),
        )
    try:
        samples = sample_until_drained(settings, worker, log_path, args)
        values = metric_values(settings.worker_web_port)
    finally:
        worker.terminate()
        worker.wait(timeout=120)
    return {
        "events": args.events,
        "users_total": total_users,
        "active_at_a_time": args.active,
        "retention_s": args.retention_s,
        "drained": samples[-1].get("drained", False),
        "drain_s": samples[-1]["s"],
        "users_expired": int(values.get("profilestream_users_expired_total", 0)),
        "unknown_items_dropped": int(values.get("profilestream_popularity_unknown_items_total", 0)),
        "rss_mib": [s["rss_mib"] for s in samples],
        "redis": redis_bytes_per_user(settings, args.redis_sample, args.seed),
        "changelog": changelog_bytes(settings, REPO / "var" / "services" / INSTANCE),
    }


def main() -> None:
    args = parse_args()
    root = Path(f"/tmp/state-size-{uuid.uuid4().hex[:8]}")
    root.mkdir(parents=True)
    settings = bench_settings(args, root)
    services(
        "up", "--name", INSTANCE, "--kafka-port", str(args.kafka_port), "--redis-port", str(args.redis_port)
    )
    try:
        print(json.dumps(run(args, settings, root), indent=1), flush=True)
    finally:
        if not args.keep_services:
            services("down", "--name", INSTANCE)


if __name__ == "__main__":
    main()
