"""Soak a real worker with poison records: it must never exit, dead-letter every poison record with
its reason, and leave Redis equal to the offline recomputation of the valid events.

About 1 % of the records are poison, of three kinds in turn: oversized (50-200 KB, and a few of
about 1 MB, field case f20), invalid UTF-8, and schema-invalid JSON. Among the valid events, a
few heavy users send long emoji queries, so their windows grow past `window_max_bytes` (field
cases f14/f14b): the oldest events leave, counted, and the offline recomputation applies the same
bound. One worker process (`profilestream worker`) drains the topic; if it ever exits, it is
restarted and the exit counted (the soak fails).

Needs running servers and an exported model and index, as bench/pipeline.py:

    flock /tmp/ps-integration.lock .venv/bin/python bench/poison_soak.py \
        --model-dir var/model --index-dir var/index --events 100000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import parse_metrics  # noqa: E402
from stream.core.deadletter import HEADER_REASON, HEADER_SOURCE  # noqa: E402
from stream.core.events import Event, EventType  # noqa: E402
from stream.core.sample import SampleSpec, sample_events  # noqa: E402
from stream.core.settings import Settings, child_environment, load_settings  # noqa: E402
from stream.kafka.drain import end_offsets, stored_positions  # noqa: E402
from stream.kafka.topics import ensure_topics  # noqa: E402
from tests.integration.convergence import differences, offline, redis_state  # noqa: E402

EMOJI = [chr(c) for c in range(0x1F300, 0x1F5FF)]
HEAVY_USERS = 5
HEAVY_EVENTS_EACH = 120


def valid_events(count: int, users: int, seed: int) -> list[Event]:
    """Sampled shop events plus heavy users' emoji searches (windows that reach the byte bound)."""
    rng = random.Random(seed)
    heavy = HEAVY_USERS * HEAVY_EVENTS_EACH
    events = sample_events(SampleSpec(users=users, events=count - heavy, seed=seed, zipf_s=0.8))
    start = events[0].ts_ms
    for u in range(HEAVY_USERS):
        for n in range(HEAVY_EVENTS_EACH):
            query = "".join(rng.choice(EMOJI) for _ in range(512))
            event = Event(
                f"heavy-{u}-{n:05d}", f"heavy-user-{u}", EventType.SEARCH, start + n * 997, query=query
            )
            events.insert(rng.randrange(len(events) + 1), event)
    return events


def poison_record(n: int, rng: random.Random) -> tuple[str, bytes, bytes]:
    """(kind, key, value) of the n-th poison record."""
    kind = ("oversized", "invalid-utf8", "invalid-schema")[n % 3]
    key = f"poison-user-{n % 50}".encode()
    if kind == "oversized":
        size = 1_024_000 if n % 150 == 0 else rng.randrange(50_000, 200_000)
        doc: dict[str, Any] = {
            "event_id": f"p-{n}",
            "user_id": key.decode(),
            "type": "view",
            "item_id": "sku-00001",
        }
        doc["context"] = {"blob": "x" * size}
        return kind, key, json.dumps(doc).encode()
    if kind == "invalid-utf8":
        return kind, key, b'{"event_id":"p-' + str(n).encode() + b'","user_id":"\xff\xfe","type":"view"}'
    doc = {"event_id": f"p-{n}", "user_id": key.decode(), "type": "view", "ts_ms": "yesterday"}
    return kind, key, json.dumps(doc).encode()


def produce(settings: Settings, events: list[Event], poison_every: int, seed: int) -> dict[str, str]:
    """Send everything; returns the poison records' "topic/partition@offset" -> kind."""
    rng = random.Random(seed + 1)
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_servers, acks="all", linger_ms=20, max_request_size=2_000_000
    )
    pending: list[tuple[str, Any]] = []
    n_poison = 0
    for i, event in enumerate(events):
        producer.send(settings.events_topic, key=event.user_id.encode(), value=event.to_json())
        if i % poison_every == poison_every - 1:
            kind, key, value = poison_record(n_poison, rng)
            pending.append((kind, producer.send(settings.events_topic, key=key, value=value)))
            n_poison += 1
    producer.flush()
    poison = {}
    for kind, future in pending:
        meta = future.get(timeout=60)
        poison[f"{meta.topic}/{meta.partition}@{meta.offset}"] = kind
    producer.close()
    return poison


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    env = child_environment(os.environ, settings)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker"], stdout=out, stderr=subprocess.STDOUT, env=env
        )


def metric_values(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return parse_metrics(response.read().decode())


def read_dead_letters(settings: Settings, expected: int) -> dict[str, str]:
    """Source position -> reason of every dead letter."""
    consumer = KafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=settings.kafka_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20_000,
        group_id=None,
        fetch_max_bytes=50_000_000,
        max_partition_fetch_bytes=5_000_000,
    )
    letters = {}
    for record in consumer:
        headers = dict(record.headers)
        letters[headers[HEADER_SOURCE].decode()] = headers[HEADER_REASON].decode()
        if len(letters) >= expected:
            break
    consumer.close()
    return letters


def drain(settings: Settings, log: Path, timeout_s: float) -> tuple[list[int], float, dict[str, float], int]:
    """Run one worker until its stored positions reach the partition ends; restart it (counted)
    if it ever exits. Returns the exit codes, the seconds taken, its metrics and its RSS (KiB)."""
    exits: list[int] = []
    worker = start_worker(settings, log)
    started = time.monotonic()
    ends = end_offsets(settings)
    while stored_positions(settings.worker_web_port) != ends:
        if worker.poll() is not None:
            exits.append(worker.returncode)
            worker = start_worker(settings, log)
        if time.monotonic() - started > timeout_s:
            break
        time.sleep(1.0)
    drain_s = time.monotonic() - started
    values = metric_values(settings.worker_web_port)
    rss_kb = int(Path(f"/proc/{worker.pid}/status").read_text().split("VmRSS:")[1].split()[0])
    worker.terminate()
    worker.wait(timeout=60)
    return exits, drain_s, values, rss_kb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:29092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:29379/0")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--events", type=int, default=100_000, help="Records in all, poison included.")
    parser.add_argument("--poison-every", type=int, default=100, help="One poison record per this many.")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--window-max-bytes", type=int, default=65_536)
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--log", type=Path, default=Path("/tmp/poison_soak_worker.log"))
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        {},
        kafka_bootstrap_servers=args.bootstrap,
        redis_url=args.redis_url,
        events_topic=f"soak.{tag}.events",
        dead_letter_topic=f"soak.{tag}.dlq",
        consumer_group=f"soak-{tag}",
        redis_key_prefix=f"soak:{tag}",
        data_dir=Path(f"/tmp/poison-soak-{tag}"),
        model_dir=args.model_dir,
        index_dir=args.index_dir,
        window_max_bytes=args.window_max_bytes,
        batch_max_wait_ms=200,
        worker_web_port=16_000 + random.randrange(1000),
    )
    ensure_topics(settings)
    valid_count = args.events - args.events // args.poison_every
    events = valid_events(valid_count, args.users, args.seed)
    started = time.monotonic()
    poison = produce(settings, events, args.poison_every - 1, args.seed)
    produced_s = time.monotonic() - started

    exits, drain_s, values, rss_kb = drain(settings, args.log, args.timeout_s)

    letters = read_dead_letters(settings, len(poison))
    missing = sorted(set(poison) - set(letters))
    without_reason = sorted(p for p in poison if p in letters and not letters[p])
    expected = offline(settings, events)
    problems = differences(expected, redis_state(settings, sorted(expected)))
    kinds = {kind: sum(1 for k in poison.values() if k == kind) for kind in sorted(set(poison.values()))}
    result = {
        "records": len(events) + len(poison),
        "valid_events": len(events),
        "poison_records": len(poison),
        "poison_by_kind": kinds,
        "worker_exits": len(exits),
        "dead_letters": len(letters),
        "poison_missing_from_dead_letters": len(missing),
        "poison_without_reason": len(without_reason),
        "users_compared": len(expected),
        "users_differing_from_offline": len(problems),
        "window_events_dropped_for_bytes": values.get("profilestream_window_bytes_dropped_events_total", 0.0),
        "quarantined": values.get("profilestream_quarantined_records_total", 0.0),
        "produce_s": round(produced_s, 1),
        "drain_s": round(drain_s, 1),
        "events_per_s": round((len(events) + len(poison)) / drain_s, 1),
        "worker_rss_mb": round(rss_kb / 1024, 1),
        "examples": {"missing": missing[:3], "differences": problems[:3]},
    }
    print(json.dumps(result, indent=2))
    print()
    print("| measure | value |")
    print("|---|---|")
    for key, value in result.items():
        if key != "examples":
            print(f"| {key} | {value} |")
    ok = not exits and not missing and not without_reason and not problems
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
