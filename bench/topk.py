"""Top-K latency on synthetic unit vectors: exact paths side by side, optionally an ANN index.

    python -m bench.topk [--quick] [--sizes 10000,100000,1000000] [--batch 32] [--k 20]
                         [--repeats 30] [--threads 1,2] [--ann]

Per batch of users (ms, p50/p99) with an in-stock mask (90 % in stock) and 20 exclusions per
user, i.e. the work a worker does per micro-batch:

- `plain`: `models.index.topk.top_k` on the raw float32 matrix (BLAS product + exact re-scoring of the
  candidates near each k-th best), the reference; BLAS thread count set with threadpoolctl;
- `int8`: the same call on `prepare_items(matrix)` (int8 prefilter with a proven error bound,
  then exact re-scoring); onnxruntime thread count per row. The run checks that it returns
  exactly what `plain` returns;
- `hnsw` (with `--ann`, needs faiss-cpu): faiss HNSW (M 32, efConstruction 64) at a few efSearch
  values, with recall@10 against the exact answer and the build time. The graph cannot filter,
  so it fetches 4k and drops out-of-stock and excluded items; recall counts what that misses.
  The build took 74 s for 100k items on 2 cores (more per item as it grows): use it with `--sizes`.

`--quick` runs 10k and 100k with fewer repeats. Timings are wall clock on whatever else the
machine is doing: compare rows of one run, not runs. `cpu_p50_ms` is the process CPU time per
batch, steadier on a shared machine and close to the quiet wall time for 1-thread rows (with 2
threads it adds both cores' time).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no stubs installed

from bench.common import emit, percentile, print_json, print_table


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> Any:
    matrix = rng.standard_normal((n, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def row(size: int, path: str, threads: int, times_ms: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "items": size,
        "path": path,
        "threads": threads,
        "p50_ms": percentile(times_ms, 50),
        "p99_ms": percentile(times_ms, 99),
        "repeats": len(times_ms),
        **extra,
    }


@dataclass(frozen=True)
class Workload:
    """One catalogue size: items, stock, exclusions and the user batches every path is timed on."""

    size: int
    items: Any
    ids: list[str]
    in_stock: Any
    exclude: list[set[int]]
    batches: list[Any]


def make_workload(args: argparse.Namespace, size: int, rng: np.random.Generator) -> Workload:
    # The 1M plain path takes about a second per batch here: fewer repeats keep the run short.
    repeats = args.repeats if size <= 100_000 else max(8, args.repeats // 3)
    return Workload(
        size=size,
        items=unit_rows(rng, size, args.dim),
        ids=[f"item-{n}" for n in range(size)],
        in_stock=rng.random(size) < 0.9,
        exclude=[set(rng.integers(0, size, 20).tolist()) for _ in range(args.batch)],
        batches=[unit_rows(rng, args.batch, args.dim) for _ in range(repeats + 2)],
    )


def timed_top_k(work: Workload, matrix: Any, k: int) -> tuple[list[float], list[float], list[Any]]:
    """Wall and process-CPU ms per batch (the first 2 batches warm up), and every batch's result."""
    from models.index.topk import top_k

    results = []
    times_ms = []
    cpu_ms = []
    for n, users in enumerate(work.batches):
        started, started_cpu = time.perf_counter(), time.process_time()
        results.append(top_k(users, matrix, work.ids, k, in_stock=work.in_stock, exclude=work.exclude))
        if n >= 2:
            times_ms.append((time.perf_counter() - started) * 1000)
            cpu_ms.append((time.process_time() - started_cpu) * 1000)
    return times_ms, cpu_ms, results


def bench_size(args: argparse.Namespace, work: Workload) -> list[dict[str, Any]]:
    from models.index.topk import prepare_items

    threads = [int(t) for t in args.threads.split(",")]
    rows: list[dict[str, Any]] = []
    reference: list[Any] = []
    for count in threads:
        with threadpool_limits(count):
            times_ms, cpu_ms, reference = timed_top_k(work, work.items, args.k)
        rows.append(row(work.size, "plain", count, times_ms, cpu_p50_ms=percentile(cpu_ms, 50)))
    for count in threads:
        started = time.perf_counter()
        prepared = prepare_items(work.items, threads=count, min_items=1)
        prepare_s = time.perf_counter() - started
        times_ms, cpu_ms, results = timed_top_k(work, prepared, args.k)
        mismatches = sum(got != want for got, want in zip(results, reference, strict=True))
        extra = {"cpu_p50_ms": percentile(cpu_ms, 50), "prepare_s": prepare_s, "mismatches": mismatches}
        rows.append(row(work.size, "int8", count, times_ms, **extra))
    if args.ann:
        rows.extend(bench_hnsw(work, k=args.k, threads=max(threads)))
    return rows


def bench_hnsw(work: Workload, *, k: int, threads: int) -> list[dict[str, Any]]:
    """faiss HNSW at a few efSearch values; recall@10 against the exact top 10."""
    import faiss

    from models.index.topk import prepare_items, top_k

    faiss.omp_set_num_threads(threads)
    started = time.perf_counter()
    index = faiss.IndexHNSWFlat(work.items.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.add(work.items)
    build_s = time.perf_counter() - started
    prepared = prepare_items(work.items, min_items=1)
    truth = [
        [[int(item.removeprefix("item-")) for item, _ in user] for user in ranked]
        for ranked in (
            top_k(users, prepared, work.ids, 10, in_stock=work.in_stock, exclude=work.exclude)
            for users in work.batches
        )
    ]
    fetch = 4 * k  # over-fetch, then drop out-of-stock and excluded items
    rows = []
    for ef in (64, 128, 256):
        index.hnsw.efSearch = max(ef, fetch)
        times_ms = []
        hits = total = 0
        for n, users in enumerate(work.batches):
            started = time.perf_counter()
            _, labels = index.search(users, fetch)
            found = [
                [int(i) for i in user if i >= 0 and work.in_stock[i] and int(i) not in work.exclude[u]][:k]
                for u, user in enumerate(labels)
            ]
            if n >= 2:
                times_ms.append((time.perf_counter() - started) * 1000)
            for want, got in zip(truth[n], found, strict=True):
                hits += len(set(want) & set(got[:10]))
                total += len(want)
        extra = {"recall_at_10": hits / max(total, 1), "build_s": build_s}
        rows.append(row(work.size, f"hnsw ef={index.hnsw.efSearch}", threads, times_ms, **extra))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", default="1,2", help="thread counts to compare (BLAS / onnxruntime)")
    parser.add_argument("--ann", action="store_true", help="also build and time a faiss HNSW index")
    parser.add_argument("--quick", action="store_true", help="10k and 100k only, 15 repeats")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats = "10000,100000", 15
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows.extend(bench_size(args, make_workload(args, size, rng)))
    emit(
        f"Top-K (models.index.topk), dim {args.dim}, {os.cpu_count()} cores, batch {args.batch}, k {args.k}, "
        "90 % in stock, 20 exclusions per user; ms per batch"
    )
    columns = ["items", "path", "threads", "p50_ms", "p99_ms", "cpu_p50_ms", "repeats", "mismatches"]
    columns.append("prepare_s")
    if args.ann:
        columns += ["recall_at_10", "build_s"]
    print_table(rows, columns)
    print_json({"dim": args.dim, "cores": os.cpu_count(), "batch": args.batch, "k": args.k, "results": rows})


if __name__ == "__main__":
    main()
