"""Drive the real pipeline (Kafka -> worker -> Redis) at fixed offered rates and report honestly.

For each offered rate: a fresh topic, consumer group and Redis prefix; `--workers` real
`profilestream worker` child processes in one consumer group; Zipf-distributed user activity
produced at the rate for `--duration-s`; then the workers drain. Reported per rate: achieved
events/s (events processed / time from first send to drained), freshness p50/p99 (Kafka record
time to Redis write, from the workers' histograms, interpolated within buckets), profiles
encoded per second, the coalescing ratio (events per profile computed) and the workers' CPU
time per event (from /proc: what the machine can carry, whatever else was running).

Several user-vector modes and worker counts run in one invocation, every combination at every
rate, so their rows share the machine's state and can be compared side by side:

    .venv/bin/python bench/pipeline.py --model-dir var/model --index-dir var/index \
        --sequence-model-dir var/sequence --user-vectors items,last_item,sequence,text \
        --workers 1,2 --rates 1000,2000 --start-services

Events name the index's own items (`--items N`: its first N), so a sequence tower can be measured
on the catalogue it was trained on (its item residuals and co-occurrence lists then apply).

`--start-services` brings up a Kafka and Redis instance of its own (deploy/local/services, name
`pipeline`, ports 28292/28279) and stops it at the end, also after a failure; without it the
script uses running servers at `--bootstrap` and `--redis-url`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import IO

from kafka import KafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import parse_metrics, print_json, print_table, services  # noqa: E402
from models.index.item_index import MANIFEST_NAME, load_index  # noqa: E402
from stream.core.events import Event, EventType  # noqa: E402
from stream.core.settings import Settings, child_environment, load_settings  # noqa: E402
from stream.kafka.topics import ensure_topics  # noqa: E402

TYPES = [EventType.VIEW, EventType.CLICK, EventType.SEARCH, EventType.ADD_TO_CART, EventType.PURCHASE]
TYPE_WEIGHTS = [50, 20, 15, 10, 5]
QUERIES = ["stapler", "gel pens", "desk lamp", "printer paper", "label maker", "ink", "shredder"]


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return parse_metrics(response.read().decode())


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


def summed_metrics(ports: list[int]) -> dict[str, float]:
    """Counters and histogram buckets added up over all workers."""
    total: dict[str, float] = {}
    for port in ports:
        for name, value in metrics(port).items():
            total[name] = total.get(name, 0.0) + value
    return total


def all_up(ports: list[int]) -> bool:
    try:
        for port in ports:
            metrics(port)
    except OSError:
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and its live descendants (the worker's compute
    process), in seconds; a descendant that ends between two readings drops out of the second."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


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


class LoadGenerator:
    """Zipf-distributed user activity, one v1 event per send, produced with kafka-python."""

    def __init__(
        self, topic: str, servers: list[str], *, users: int, items: list[str], seed: int, tag: str
    ) -> None:
        self.topic = topic
        self.items = items
        self.tag = tag
        self.producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5)
        self.rng = random.Random(seed)
        # Cumulative weights once: rng.choices(weights=...) re-sums all of them on every call,
        # which cost the load generator more CPU than the worker it shares the machine with.
        self.cum_weights = list(itertools.accumulate(1.0 / (rank + 1) ** 1.1 for rank in range(users)))
        self.users = [f"u{n}" for n in range(users)]
        self.seq = 0

    def send(self, n: int) -> None:
        rng = self.rng
        for _ in range(n):
            user = rng.choices(self.users, cum_weights=self.cum_weights)[0]
            kind = rng.choices(TYPES, TYPE_WEIGHTS)[0]
            self.seq += 1
            event = Event(
                event_id=f"{self.tag}-{self.seq}",
                user_id=user,
                type=kind,
                ts_ms=int(time.time() * 1000),
                item_id=None if kind is EventType.SEARCH else self.items[rng.randrange(len(self.items))],
                query=rng.choice(QUERIES) if kind is EventType.SEARCH else None,
            )
            self.producer.send(self.topic, key=user.encode(), value=event.to_json())


def index_item_ids(index_dir: Path) -> tuple[str, ...]:
    """The item ids of the index in `index_dir`, in index order (`profilestream index`'s output)."""
    manifest = json.loads((index_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    return load_index(index_dir, str(manifest["encoder_version"])).ids


def free_ports(count: int) -> list[int]:
    """Worker web ports that are free now, below the kernel's ephemeral range (32768 up), where
    a random port could be taken by some client's outgoing connection (it happened)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20_000, 29_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


def start_workers(settings: Settings, ports: list[int], log: IO[bytes]) -> list[subprocess.Popen[bytes]]:
    workers = []
    for n, port in enumerate(ports):
        # One consumer group; each worker its own web port and state directory.
        worker_settings = settings.model_copy(
            update={"worker_web_port": port, "data_dir": settings.data_dir / f"w{n}"}
        )
        env = child_environment(os.environ, worker_settings)
        workers.append(
            subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], env=env, stdout=log, stderr=log)
        )
    return workers


def summarise(
    *,
    args: argparse.Namespace,
    rate: int,
    sent: int,
    drained_s: float,
    base: dict[str, float],
    end: dict[str, float],
    cpu_used_s: float,
) -> dict[str, object]:
    def delta(name: str) -> float:
        return end.get(name, 0.0) - base.get(name, 0.0)

    profiles = delta("profilestream_profiles_total")
    # Only what happened on the clock: the warm-up events are subtracted from every bucket.
    measured = {name: delta(name) for name in end}
    return {
        "user_vector": args.user_vector,
        "workers": args.workers,
        "offered_events_per_s": rate,
        "sent": sent,
        "achieved_events_per_s": round(sent / drained_s, 1),
        "drain_s": round(drained_s, 2),
        "freshness_p50_ms": quantile_from_histogram(measured, "profilestream_freshness_ms", 0.5),
        "freshness_p99_ms": quantile_from_histogram(measured, "profilestream_freshness_ms", 0.99),
        "profiles_per_s": round(profiles / drained_s, 1),
        "events_per_profile": round(sent / profiles, 2) if profiles else None,
        "mean_batch_events": round(
            delta("profilestream_batch_events_sum") / max(delta("profilestream_batch_events_count"), 1), 1
        ),
        # CPU the worker process used per event (all its threads): capacity, whatever else runs.
        "worker_cpu_ms_per_event": round(cpu_used_s * 1000 / max(sent, 1), 3),
        "mean_encode_ms": round(
            delta("profilestream_encode_ms_sum") / max(delta("profilestream_encode_ms_count"), 1), 1
        ),
    }


def run_rate(args: argparse.Namespace, rate: int) -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    ports = free_ports(args.workers)
    first_port = ports[0]
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
        worker_web_port=first_port,
        user_vector=args.user_vector,
        sequence_model_dir=args.sequence_model_dir,
        batch_max_wait_ms=args.batch_max_wait_ms,
        batch_max_events=args.batch_max_events,
        events_partitions=args.partitions,
        log_level="WARNING",
    )
    ensure_topics(settings)
    log = open(f"/tmp/bench-worker-{tag}.log", "wb")  # noqa: SIM115
    workers = start_workers(settings, ports, log)

    load = LoadGenerator(
        settings.events_topic,
        settings.kafka_servers,
        users=args.users,
        items=args.item_ids,
        seed=rate,
        tag=tag,
    )

    def processed_each() -> list[float]:
        return [metrics(port).get("profilestream_events_total", 0) for port in ports]

    try:
        # Warm-up: every worker loads the model, joins the group and owns partitions (it has
        # processed something) before the clock starts, so no rebalance falls in the measurement.
        deadline = time.monotonic() + 180
        while min(processed_each() if all_up(ports) else [0.0]) < 1:
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for worker warm-up")
            if any(w.poll() is not None for w in workers):
                raise SystemExit(f"a worker exited during warm-up; see {log.name}")
            load.send(20)
            load.producer.flush()
            time.sleep(1.0)
        time.sleep(2.0)
        base = summed_metrics(ports)
        cpu_base_s = sum(cpu_seconds(w.pid) for w in workers)
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < args.duration_s:
            due = int(elapsed * rate) - sent
            if due > 0:
                load.send(due)
                sent += due
            time.sleep(0.005)
        load.producer.flush()
        expected = base.get("profilestream_events_total", 0) + sent

        def drained() -> bool:
            # A dead worker would otherwise look like a slow one until the drain timeout.
            if any(w.poll() is not None for w in workers):
                raise SystemExit(f"a worker exited during the run; see {log.name}")
            return sum(processed_each()) >= expected

        wait_for(drained, args.drain_timeout_s, "drain")
        drained_s = time.monotonic() - started
        end = summed_metrics(ports)
        cpu_used_s = sum(cpu_seconds(w.pid) for w in workers) - cpu_base_s
    finally:
        load.producer.close()
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        log.close()

    return summarise(
        args=args, rate=rate, sent=sent, drained_s=drained_s, base=base, end=end, cpu_used_s=cpu_used_s
    )


USER_VECTORS = ("auto", "text", "items", "hybrid", "sequence", "last_item")
COLUMNS = (
    "user_vector",
    "workers",
    "offered_events_per_s",
    "achieved_events_per_s",
    "freshness_p50_ms",
    "freshness_p99_ms",
    "events_per_profile",
    "mean_batch_events",
    "worker_cpu_ms_per_event",
    "load_average",
)


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:28292")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:28279/0")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument(
        "--sequence-model-dir",
        type=Path,
        default=REPO / "var" / "sequence",
        help="Exported sequence user tower, for the sequence and auto modes.",
    )
    parser.add_argument("--rates", default="1000,2000", help="Offered events/s, comma-separated.")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--drain-timeout-s", type=float, default=600.0)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument(
        "--items",
        type=int,
        default=0,
        help="Events name the index's first N items (0: all of them; the sample index has 500).",
    )
    parser.add_argument(
        "--user-vectors", default="items", help=f"Comma-separated modes, of {', '.join(USER_VECTORS)}."
    )
    parser.add_argument("--batch-max-wait-ms", type=int, default=200)
    parser.add_argument(
        "--batch-max-events", type=int, default=500, help="The workers' micro-batch size cap."
    )
    parser.add_argument("--workers", default="1", help="Worker counts in the one group, comma-separated.")
    parser.add_argument("--partitions", type=int, default=4, help="Partitions of each run's events topic.")
    parser.add_argument(
        "--start-services", action="store_true", help="Start (and finally stop) Kafka and Redis."
    )
    parser.add_argument("--services-name", default="pipeline")
    args = parser.parse_args()
    modes = comma_list(args.user_vectors)
    unknown = sorted(set(modes) - set(USER_VECTORS))
    if unknown:
        parser.error(
            f"--user-vectors: unknown mode(s) {', '.join(unknown)}; choose from {', '.join(USER_VECTORS)}"
        )
    # The index's own item ids, in its order (the sample index: sku-00000 ... sku-00499), so a
    # tower's catalogue (its residuals, its co-occurrence lists) can be measured on its own items.
    ids = list(index_item_ids(args.index_dir))
    item_ids = ids[: args.items] if args.items > 0 else ids
    points = [
        argparse.Namespace(
            **{**vars(args), "user_vector": mode, "workers": int(workers), "item_ids": item_ids}
        )
        for mode in modes
        for workers in comma_list(args.workers)
    ]
    if args.start_services:
        services("up", args)
    results: list[dict[str, object]] = []
    try:
        for point in points:
            for rate in (int(r) for r in comma_list(args.rates)):
                before = os.getloadavg()[0]
                row = run_rate(point, rate)
                # Freshness on a shared machine says as much about the neighbours as the worker.
                row["load_average"] = round((before + os.getloadavg()[0]) / 2, 1)
                print(json.dumps(row), file=sys.stderr, flush=True)
                results.append(row)
    finally:
        if args.start_services:
            services("down", args)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    print_json({"commit": commit, "cpu_count": os.cpu_count(), "results": results})
    print_table(results, COLUMNS)


if __name__ == "__main__":
    main()
