"""Drive the real pipeline (Kafka -> worker -> Redis) at fixed offered rates and report honestly.

For each offered rate: a fresh topic, consumer group and Redis prefix; a real `profilestream
worker` child process; Zipf-distributed user activity produced at the rate for `--duration-s`;
then the worker drains. Reported per rate: achieved events/s (events processed / time from first
send to drained), freshness p50/p99 (Kafka record time to Redis write, from the worker's
histogram, interpolated within buckets), profiles encoded per second and the coalescing ratio
(events per profile computed).

Needs running servers (`deploy/local/services up --name test --kafka-port 39092 --redis-port 36379`)
and an exported model and index:

    .venv/bin/python bench/pipeline.py --model-dir var/model --index-dir var/index --rates 100,500,1000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from kafka import KafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stream.events import Event, EventType  # noqa: E402
from stream.settings import child_environment, load_settings  # noqa: E402
from stream.topics import ensure_topics  # noqa: E402

TYPES = [EventType.VIEW, EventType.CLICK, EventType.SEARCH, EventType.ADD_TO_CART, EventType.PURCHASE]
TYPE_WEIGHTS = [50, 20, 15, 10, 5]
QUERIES = ["stapler", "gel pens", "desk lamp", "printer paper", "label maker", "ink", "shredder"]


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def quantile_from_histogram(values: dict[str, float], name: str, q: float) -> float | None:
    buckets = sorted(
        (float(key.split('le="')[1].rstrip('"}')), count)
        for key, count in values.items()
        if key.startswith(f"{name}_bucket{{")
    )
    total = values.get(f"{name}_count", 0.0)
    if not total:
        return None
    target = q * total
    previous_le, previous_count = 0.0, 0.0
    for le, count in buckets:
        if count >= target:
            if le == float("inf"):
                # Beyond the largest bucket: report it as such rather than as the bucket's bound.
                return float("inf")
            share = (target - previous_count) / max(count - previous_count, 1e-9)
            return previous_le + share * (le - previous_le)
        previous_le, previous_count = le, count
    return previous_le


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def run_rate(args: argparse.Namespace, rate: int) -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    port = 20000 + random.randrange(20000)
    settings = load_settings(
        {},
        kafka_bootstrap_servers=args.bootstrap,
        redis_url=args.redis_url,
        events_topic=f"bench.{tag}.events",
        dead_letter_topic=f"bench.{tag}.dlq",
        consumer_group=f"bench-{tag}",
        redis_key_prefix=f"bench:{tag}",
        model_dir=args.model_dir,
        index_dir=args.index_dir,
        data_dir=Path("/tmp") / f"bench-{tag}",
        worker_web_port=port,
        user_vector=args.user_vector,
        batch_max_wait_ms=args.batch_max_wait_ms,
        log_level="WARNING",
    )
    ensure_topics(settings)
    env = child_environment(os.environ, settings)
    log = open(f"/tmp/bench-worker-{tag}.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], env=env, stdout=log, stderr=log)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all", linger_ms=5)
    rng = random.Random(rate)
    # Cumulative weights once: rng.choices(weights=...) re-sums all of them on every call, which
    # cost the load generator more CPU than the worker it shares this 2-core machine with.
    cum_weights = list(itertools.accumulate(1.0 / (rank + 1) ** 1.1 for rank in range(args.users)))
    users = [f"u{n}" for n in range(args.users)]
    seq = 0

    def send(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            user = rng.choices(users, cum_weights=cum_weights)[0]
            kind = rng.choices(TYPES, TYPE_WEIGHTS)[0]
            seq += 1
            event = Event(
                event_id=f"{tag}-{seq}",
                user_id=user,
                type=kind,
                ts_ms=int(time.time() * 1000),
                item_id=None if kind is EventType.SEARCH else f"sku-{rng.randrange(args.items):05d}",
                query=rng.choice(QUERIES) if kind is EventType.SEARCH else None,
            )
            producer.send(settings.events_topic, key=user.encode(), value=event.to_json())

    try:
        # Warm-up: the worker loads the model and joins the group before the clock starts.
        send(5)
        producer.flush()
        wait_for(lambda: metrics(port).get("profilestream_events_total", 0) >= 5, 180, "worker warm-up")
        base = metrics(port)
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < args.duration_s:
            due = int(elapsed * rate) - sent
            if due > 0:
                send(due)
                sent += due
            time.sleep(0.005)
        producer.flush()
        expected = base.get("profilestream_events_total", 0) + sent
        wait_for(
            lambda: metrics(port).get("profilestream_events_total", 0) >= expected,
            args.drain_timeout_s,
            "drain",
        )
        drained_s = time.monotonic() - started
        end = metrics(port)
    finally:
        producer.close()
        worker.terminate()
        worker.wait(timeout=60)
        log.close()

    def delta(name: str) -> float:
        return end.get(name, 0.0) - base.get(name, 0.0)

    profiles = delta("profilestream_profiles_total")
    return {
        "offered_events_per_s": rate,
        "sent": sent,
        "achieved_events_per_s": round(sent / drained_s, 1),
        "drain_s": round(drained_s, 2),
        "freshness_p50_ms": quantile_from_histogram(end, "profilestream_freshness_ms", 0.5),
        "freshness_p99_ms": quantile_from_histogram(end, "profilestream_freshness_ms", 0.99),
        "profiles_per_s": round(profiles / drained_s, 1),
        "events_per_profile": round(sent / profiles, 2) if profiles else None,
        "mean_batch_events": round(
            delta("profilestream_batch_events_sum") / max(delta("profilestream_batch_events_count"), 1), 1
        ),
        "mean_encode_ms": round(
            delta("profilestream_encode_ms_sum") / max(delta("profilestream_encode_ms_count"), 1), 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:39092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:36379/0")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--rates", default="100,500,1000,2000")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--drain-timeout-s", type=float, default=300.0)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--user-vector", default="items", choices=["text", "items", "hybrid"])
    parser.add_argument("--batch-max-wait-ms", type=int, default=200)
    args = parser.parse_args()
    results = [run_rate(args, int(rate)) for rate in args.rates.split(",")]
    print(json.dumps({"user_vector": args.user_vector, "results": results}, indent=2, default=str))
    columns = list(results[0])
    print(" | ".join(columns))
    for row in results:
        print(" | ".join(str(row[c]) for c in columns))


if __name__ == "__main__":
    main()
