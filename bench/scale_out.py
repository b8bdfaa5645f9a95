"""Scale-out: 1, 2 and 4 real workers in one consumer group on an 8-partition topic, same offered rate.

Each point is one `bench/pipeline.py` run (`run_rate`): a fresh 8-partition topic, consumer group
and Redis prefix, the workers warmed up (each owns partitions and has processed an event) before
the clock starts, Zipf user activity offered at `--rate` for `--duration-s`, then the drain.
Reported per point: achieved events/s, freshness p50/p99, the workers' CPU ms per event (their
own CPU time from /proc, all threads, divided by the events), the achieved rate relative to one
worker, and the machine's load average over the point. On a machine with fewer cores than
workers plus Kafka, Redis and the load generator, the speed-up is capped by the cores, not by the
workers: CPU ms per event is the figure that carries over to a larger machine.

Needs running servers and an exported model and index, e.g.:

    deploy/local/services up --name scaleout --kafka-port 28492 --redis-port 28479
    .venv/bin/python bench/scale_out.py --bootstrap 127.0.0.1:28492 --redis-url redis://127.0.0.1:28479/0 \\
        --model-dir var/model --index-dir var/index
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pipeline import USER_VECTORS, run_rate  # noqa: E402

COLUMNS = (
    "workers",
    "offered_events_per_s",
    "achieved_events_per_s",
    "speed_up",
    "freshness_p50_ms",
    "freshness_p99_ms",
    "worker_cpu_ms_per_event",
    "load_average",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:28492")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:28479/0")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--workers", default="1,2,4", help="Worker counts, one point each.")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--rate", type=int, default=2500, help="Offered events/s at every point.")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--drain-timeout-s", type=float, default=240.0)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--user-vector", default="items", choices=USER_VECTORS)
    parser.add_argument("--sequence-model-dir", type=Path, default=Path("var/sequence"))
    parser.add_argument("--batch-max-wait-ms", type=int, default=200)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    results: list[dict[str, object]] = []
    for workers in (int(n) for n in args.workers.split(",")):
        point = argparse.Namespace(**{**vars(args), "workers": workers})
        before = os.getloadavg()[0]
        row = run_rate(point, args.rate)
        row["load_average"] = round((before + os.getloadavg()[0]) / 2, 1)
        row["partitions"] = args.partitions
        results.append(row)
        print(json.dumps(row), flush=True)
    base = float(str(results[0]["achieved_events_per_s"]))
    for row in results:
        row["speed_up"] = round(float(str(row["achieved_events_per_s"])) / base, 2)
    print(json.dumps({"cpu_count": os.cpu_count(), "results": results}, indent=2, default=str))
    print(" | ".join(COLUMNS))
    for row in results:
        print(" | ".join(str(row.get(c)) for c in COLUMNS))


if __name__ == "__main__":
    main()
