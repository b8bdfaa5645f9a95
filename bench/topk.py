"""Exact top-K latency on synthetic unit vectors: batch of users x catalogue sizes.

    python -m bench.topk [--sizes 10000,100000,1000000] [--batch 32] [--k 20] [--repeats 30]

Reports p50/p99 per batch (milliseconds) of `models.topk.top_k` with an in-stock mask (90 % in
stock) and 20 exclusions per user, i.e. the work a worker does per micro-batch. numpy's BLAS uses
all cores unless OPENBLAS_NUM_THREADS says otherwise; on the shared 2-core box one thread was
2-4x faster (threads fighting other processes), so compare both.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from bench.common import emit, percentile, print_json, print_table


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> Any:
    matrix = rng.standard_normal((n, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def main() -> None:
    from models.topk import top_k

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        items = unit_rows(rng, size, args.dim)
        ids = [f"item-{n}" for n in range(size)]
        in_stock = rng.random(size) < 0.9
        exclude = [set(rng.integers(0, size, 20).tolist()) for _ in range(args.batch)]
        # Fewer repeats on the largest catalogue keeps the run short; p99 of 10 is then the max.
        repeats = args.repeats if size <= 100_000 else max(10, args.repeats // 3)
        times_ms = []
        for _ in range(repeats + 2):
            users = unit_rows(rng, args.batch, args.dim)
            started = time.perf_counter()
            top_k(users, items, ids, args.k, in_stock=in_stock, exclude=exclude)
            times_ms.append((time.perf_counter() - started) * 1000)
        times_ms = times_ms[2:]  # the first calls warm BLAS threads and caches
        rows.append(
            {
                "items": size,
                "batch": args.batch,
                "k": args.k,
                "p50_ms": percentile(times_ms, 50),
                "p99_ms": percentile(times_ms, 99),
                "repeats": repeats,
            }
        )
        del items
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS", "all cores")
    emit(
        f"Exact top-K (models.topk), dim {args.dim}, {os.cpu_count()} cores, OPENBLAS_NUM_THREADS="
        f"{blas_threads}; per batch of {args.batch} users"
    )
    print_table(rows, ["items", "batch", "k", "p50_ms", "p99_ms", "repeats"])
    print_json({"dim": args.dim, "cores": os.cpu_count(), "blas_threads": blas_threads, "results": rows})


if __name__ == "__main__":
    main()
