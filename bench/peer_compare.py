"""profilestream's worker against the same `items`-mode job in Quix Streams and bare aiokafka.

One run, the same seeded events for all three: `stream.core.sample` Zipf activity over
`--users` users and the 500-item sample index, each event stamped with the send time, produced
at fixed offered rates for `--duration-s` each. Per rate and implementation: a fresh 4-partition
topic, consumer group and Redis prefix, one process, a warm-up (it has processed something)
before the clock starts, then the load, then the drain. Reported: achieved events/s (events /
time from the first send to the last processed), freshness p50/p99 (Kafka record time to just
after the Redis write, observed by each process into the same histogram buckets and read by the
same interpolation as bench/pipeline.py), the process's CPU ms per event (/proc, all threads)
and, with `--start-services`, what the Kafka broker and Redis server spent per event meanwhile
(they share the two cores: a job that is light on its own but heavy on them is not cheap).
The order of the three is rotated from rate to rate, so none always runs first.

    .venv/bin/python -m bench.peer_compare --model-dir var/model --index-dir var/index \
        --start-services --out var/peer-compare

`--worker-user-vectors items,sequence,text` adds the worker's other modes as rows of the same run
(the peers implement the `items` job only), the sequence tower read from `--sequence-model-dir`.

`--start-services` brings up a Kafka and Redis instance of its own (deploy/local/services, name
`peers`, ports 28092/28379) and stops it again at the end, also after a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import cast

from kafka import KafkaProducer

from bench.common import SERVICES_HOME, services
from bench.pipeline import all_up, cpu_seconds, free_ports, metrics, quantile_from_histogram
from stream.core.events import Event
from stream.core.sample import SampleSpec, sample_events
from stream.core.settings import Settings, child_environment, load_settings
from stream.kafka.topics import ensure_topics
from stream.worker.metrics import FRESHNESS_BUCKETS_MS

REPO = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = {
    "profilestream worker": ["-m", "stream.cli", "worker"],
    "Quix Streams app": ["-m", "bench.peers.quix_app"],
    "bare aiokafka consumer": ["-m", "bench.peers.aiokafka_consumer"],
}
FRESHNESS_CEILING_MS = float(FRESHNESS_BUCKETS_MS[-1])  # the largest finite freshness bucket


WORKER = "profilestream worker"


THREAD_COMPUTE = "compute in a thread"


def worker_label(user_vector: str, compute: str = "process") -> str:
    """The worker's row name: plain for `items` (the peers' job) with its compute process, else
    with its mode and where it computes."""
    parts = [WORKER] + ([user_vector] if user_vector != "items" else [])
    return ", ".join(parts + ([THREAD_COMPUTE] if compute == "thread" else []))


def worker_options(label: str) -> tuple[str, str]:
    """The user vector mode and the compute place of a `worker_label`."""
    parts = label.split(", ")[1:]
    compute = "thread" if THREAD_COMPUTE in parts else "process"
    modes = [part for part in parts if part != THREAD_COMPUTE]
    return (modes[0] if modes else "items"), compute


def base_name(label: str) -> str:
    return WORKER if label.startswith(WORKER) else label


def command(name: str, settings: Settings) -> list[str]:
    name = base_name(name)
    cmd = [sys.executable, *IMPLEMENTATIONS[name]]
    if name != WORKER:
        cmd += ["--metrics-port", str(settings.worker_web_port)]
    if name == "Quix Streams app":
        cmd += ["--state-dir", str(settings.data_dir / "quix")]
    return cmd


def send(producer: KafkaProducer, topic: str, events: list[Event]) -> None:
    """Each event stamped with the send time: per-user order stays the send order."""
    for event in events:
        stamped = dataclasses.replace(event, ts_ms=int(time.time() * 1000))
        producer.send(topic, key=event.user_id.encode(), value=stamped.to_json())


def warm_up(
    proc: subprocess.Popen[bytes],
    *,
    port: int,
    producer: KafkaProducer,
    topic: str,
    events: list[Event],
    what: str,
) -> None:
    """Until loaded, assigned its partitions and processed something, so the clock starts warm."""
    deadline = time.monotonic() + 180
    warm = [dataclasses.replace(e, event_id=f"warm-{e.event_id}") for e in events[:2000]]
    n = 0
    while not (all_up([port]) and metrics(port).get("profilestream_events_total", 0.0) >= 1):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not warm up")
        send(producer, topic, warm[n : n + 20])
        n += 20
        producer.flush()
        time.sleep(1.0)
    time.sleep(2.0)


def offer(producer: KafkaProducer, topic: str, events: list[Event], rate: int, duration_s: float) -> int:
    """Send `events` at `rate` per second for `duration_s`; the number sent."""
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < duration_s:
        due = min(int(elapsed * rate), len(events)) - sent
        if due > 0:
            send(producer, topic, events[sent : sent + due])
            sent += due
        time.sleep(0.005)
    producer.flush()
    return sent


def service_pids(args: argparse.Namespace) -> dict[str, int]:
    """The broker's and Redis server's pids of a benchmark-started instance (none otherwise)."""
    if not args.start_services:
        return {}
    home = SERVICES_HOME / args.services_name
    pids = {}
    for name in ("kafka", "redis"):
        try:
            pids[name] = int((home / f"{name}.pid").read_text().strip())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"no {name} pid under {home} ({exc}): was the instance started?") from exc
    return pids


def run_cell(args: argparse.Namespace, name: str, rate: int, events: list[Event]) -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    # Below the ephemeral range: a port the kernel hands out (bind to 0) can be taken meanwhile
    # by some client's outgoing connection.
    port = free_ports(1)[0]
    user_vector, worker_compute = worker_options(name)
    settings = load_settings(
        {},
        kafka_bootstrap_servers=args.bootstrap,
        redis_url=args.redis_url,
        events_topic=f"peers.{tag}.events",
        dead_letter_topic=f"peers.{tag}.dlq",
        consumer_group=f"peers-{tag}",
        redis_key_prefix=f"peers:{tag}",
        model_dir=args.model_dir,
        index_dir=args.index_dir,
        data_dir=Path("/tmp") / f"peers-{tag}",
        worker_web_port=port,
        user_vector=user_vector,
        worker_compute=worker_compute,
        sequence_model_dir=args.sequence_model_dir,
        batch_max_events=args.batch_max_events,
        batch_max_wait_ms=args.batch_max_wait_ms,
        log_level="WARNING",
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    log_path = Path("/tmp") / f"peers-{tag}.log"
    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all", linger_ms=5)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command(name, settings),
            env=child_environment(os.environ, settings),
            cwd=REPO,
            stdout=log,
            stderr=log,
        )
        try:

            def processed() -> float:
                return metrics(port).get("profilestream_events_total", 0.0)

            warm_up(
                proc,
                port=port,
                producer=producer,
                topic=settings.events_topic,
                events=events,
                what=f"{name} (log: {log_path})",
            )
            base = metrics(port)
            cpu_base_s = cpu_seconds(proc.pid)
            pids = service_pids(args)
            services_base_s = {n: cpu_seconds(pid) for n, pid in pids.items()}
            started = time.monotonic()
            sent = offer(producer, settings.events_topic, events, rate, args.duration_s)
            # A process that cannot keep up is reported as it stands at the deadline (what it
            # processed in the time), not waited for: its p50/p99 then cover only that part.
            expected = base.get("profilestream_events_total", 0.0) + sent
            drain_deadline = time.monotonic() + args.drain_timeout_s
            while processed() < expected and time.monotonic() < drain_deadline:
                time.sleep(0.2)
            drained_s = time.monotonic() - started
            end = metrics(port)
            done = end.get("profilestream_events_total", 0.0) - base.get("profilestream_events_total", 0.0)
            cpu_used_s = cpu_seconds(proc.pid) - cpu_base_s
            services_used_s = {n: cpu_seconds(pid) - services_base_s[n] for n, pid in pids.items()}
        finally:
            producer.close()
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            # Faust's and Quix's local state of this cell's throw-away group (the log stays).
            shutil.rmtree(settings.data_dir, ignore_errors=True)
    measured = {key: value - base.get(key, 0.0) for key, value in end.items()}
    return {
        "implementation": name,
        "offered_events_per_s": rate,
        "sent": sent,
        "processed": int(done),
        "drained": done >= sent,
        "achieved_events_per_s": round(done / drained_s, 1),
        "drain_s": round(drained_s, 2),
        "freshness_p50_ms": _rounded(quantile_from_histogram(measured, "profilestream_freshness_ms", 0.5)),
        "freshness_p99_ms": _rounded(quantile_from_histogram(measured, "profilestream_freshness_ms", 0.99)),
        "cpu_ms_per_event": round(cpu_used_s * 1000 / max(done, 1), 3),
        **{
            f"{n}_cpu_ms_per_event": round(used_s * 1000 / max(done, 1), 3)
            for n, used_s in services_used_s.items()
        },
    }


def _rounded(value: float | None) -> float | str | None:
    """Milliseconds to 0.1; beyond the largest bucket (`FRESHNESS_CEILING_MS`) there is no number."""
    if value is None:
        return None
    return f">{FRESHNESS_CEILING_MS:.0f}" if value == float("inf") else round(value, 1)


def _rate(row: dict[str, object]) -> int:
    return int(cast(int, row["offered_events_per_s"]))


def _plotted(value: object) -> float:
    """A p99 for the plot: one beyond the largest bucket is drawn at the bucket's bound."""
    return value if isinstance(value, float | int) and value != float("inf") else FRESHNESS_CEILING_MS


TABLE_HEADER = (
    "| implementation | offered events/s | achieved events/s "
    "| freshness p50 ms | p99 ms | CPU ms per event | Kafka broker's | Redis server's |\n"
    "|---|---|---|---|---|---|---|---|"
)


def median_runs(results: list[dict[str, object]]) -> list[tuple[dict[str, object], list[dict[str, object]]]]:
    """Per implementation and offered rate (in the order first run), the median run by achieved
    events/s (of an even count the lower middle one) and all the cell's runs (`--repeats`)."""
    cells: dict[tuple[str, int], list[dict[str, object]]] = {}
    for row in results:
        cells.setdefault((str(row["implementation"]), _rate(row)), []).append(row)
    picked = []
    for runs in cells.values():
        ordered = sorted(runs, key=lambda r: float(cast(float, r["achieved_events_per_s"])))
        picked.append((ordered[(len(ordered) - 1) // 2], runs))
    return picked


def _span(runs: list[dict[str, object]], key: str, shown: str) -> str:
    """`shown`, and with several runs their range: the run-to-run spread at 4,000 events/s was as
    large as most single changes (bench/README.md, issue 19 part 8)."""
    if len(runs) < 2:
        return shown
    values = [v for r in runs if isinstance(v := r[key], float | int)]
    beyond = len(values) < len(runs)  # a freshness beyond the largest bucket
    if not values:
        return shown
    high = f">{FRESHNESS_CEILING_MS:,.0f}" if beyond else f"{max(values):,}"
    return f"{shown} ({min(values):,} to {high})"


def table(results: list[dict[str, object]]) -> str:
    """The markdown table; an achieved rate marked * did not drain within the drain timeout. With
    several runs per cell (`--repeats`) a row is the median run, and the achieved rate and p99
    carry the range over the runs."""
    lines = [TABLE_HEADER]
    order = list(dict.fromkeys(str(r["implementation"]) for r in results))
    for row, runs in sorted(
        median_runs(results), key=lambda p: (order.index(str(p[0]["implementation"])), _rate(p[0]))
    ):
        achieved = f"{row['achieved_events_per_s']:,}" + ("" if row.get("drained", True) else "*")
        cells = [
            row["implementation"],
            f"{row['offered_events_per_s']:,}",
            _span(runs, "achieved_events_per_s", achieved),
            row["freshness_p50_ms"],
            _span(runs, "freshness_p99_ms", str(row["freshness_p99_ms"])),
            row["cpu_ms_per_event"],
            row.get("kafka_cpu_ms_per_event", "-"),
            row.get("redis_cpu_ms_per_event", "-"),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def plot(results: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    medians = [row for row, _ in median_runs(results)]
    for name in dict.fromkeys(str(r["implementation"]) for r in results):
        rows = sorted((r for r in medians if r["implementation"] == name), key=_rate)
        if rows:
            axes.plot(
                [_rate(r) for r in rows],
                [_plotted(r["freshness_p99_ms"]) for r in rows],
                marker="o",
                label=name,
            )
    axes.set_xlabel("offered events/s")
    axes.set_ylabel("freshness p99 (ms)")
    axes.set_yscale("log")
    axes.set_title(
        f"p99 beyond {FRESHNESS_CEILING_MS / 1000:.0f} s is drawn at {FRESHNESS_CEILING_MS / 1000:.0f} s"
    )
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:28092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:28379/0")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--rates", default="1000,2000,4000")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--drain-timeout-s", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-max-events", type=int, default=500)
    parser.add_argument(
        "--worker-compute",
        default="process",
        help=(
            "Where the worker computes, comma-separated, one row each: process (the default, "
            "PROFILESTREAM_WORKER_COMPUTE) or thread."
        ),
    )
    parser.add_argument(
        "--worker-user-vectors",
        default="items",
        help="The worker's modes, comma-separated, one row each (items is the peers' job; "
        "sequence, last_item and text show what the other modes cost).",
    )
    parser.add_argument("--sequence-model-dir", type=Path, default=REPO / "var" / "sequence")
    parser.add_argument("--batch-max-wait-ms", type=int, default=200)
    parser.add_argument(
        "--only", default=",".join(IMPLEMENTATIONS), help="Comma-separated implementation names."
    )
    parser.add_argument(
        "--start-services", action="store_true", help="Start (and finally stop) Kafka and Redis."
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="Runs of every cell (all cells once, then again); the table shows each cell's median "
        "run by achieved events/s with the range of achieved events/s and p99 over the runs.",
    )
    parser.add_argument("--services-name", default="peers")
    parser.add_argument("--out", type=Path, default=Path("var/peer-compare"))
    parser.add_argument("--from-json", type=Path, help="Only print the table and plot of an earlier run.")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


def main() -> None:
    args = parse_args()
    if args.from_json:
        results = json.loads(args.from_json.read_text(encoding="utf-8"))["results"]
        for row in results:
            for key in ("freshness_p50_ms", "freshness_p99_ms"):
                row[key] = _rounded(row[key]) if isinstance(row[key], float) else row[key]
        args.out.mkdir(parents=True, exist_ok=True)
        plot(results, args.out / "peer_compare_p99.png")
        print(table(results))
        return
    rates = [int(r) for r in args.rates.split(",")]
    only = args.only.split(",")
    names = [
        label
        for n in IMPLEMENTATIONS
        if n in only
        for label in (
            [
                worker_label(mode, compute)
                for mode in args.worker_user_vectors.split(",")
                for compute in args.worker_compute.split(",")
            ]
            if n == WORKER
            else [n]
        )
    ]
    # One seeded sequence; each rate sends its first rate x duration events.
    events = sample_events(
        SampleSpec(users=args.users, events=int(max(rates) * args.duration_s), seed=args.seed)
    )
    if args.start_services:
        services("up", args)
    results = []
    try:
        for repeat in range(args.repeats):
            for n, rate in enumerate(rates):
                for name in names[n % len(names) :] + names[: n % len(names)]:
                    cell = events[: int(rate * args.duration_s)]
                    try:
                        row = run_cell(args, name, rate, cell)
                    except (SystemExit, OSError) as exc:
                        # A process that died (a port taken meanwhile; Quix Streams 3.28.1 once
                        # failed on a changelog record it polled as data): the cell once more.
                        print(
                            f"{name} at {rate}/s failed ({exc}); trying once more",
                            file=sys.stderr,
                            flush=True,
                        )
                        row = run_cell(args, name, rate, cell) | {"retried_after": str(exc)}
                    row["run"] = repeat + 1
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    results.append(row)
    finally:
        if args.start_services:
            services("down", args)
    args.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    report = {
        "commit": commit,
        "users": args.users,
        "duration_s": args.duration_s,
        "repeats": args.repeats,
        "results": results,
    }
    (args.out / "peer_compare.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(results, args.out / "peer_compare_p99.png")
    print(json.dumps(report, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
