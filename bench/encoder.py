"""Encoder throughput: PyTorch (transformers, eager mode) vs each exported ONNX variant, same run.

    python -m bench.encoder [--quick] [--model-dir DIR] [--threads N] [--device cpu|cuda]

Model-only cells use random token ids of exactly L tokens (no padding), so every backend does the
same work; one end-to-end row encodes real short titles (tokenizer + padding included, ONNX adds
length bucketing). torch and onnxruntime get the same thread count (`--threads`, default all
cores) for fairness; within each cell every backend runs blocks of consecutive calls, the blocks
rotated between backends so that background load hits them alike, and each cell reports the
median of a fixed number of repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import emit, median, print_json, print_table, time_calls_s

FULL_BATCHES = (1, 32, 128)
FULL_LENGTHS = (16, 64, 128, 256)
QUICK_CELLS = ((1, 16), (32, 16), (32, 64), (128, 16))
ROUNDS = 2  # blocks per backend and cell, rotated so that slow drifts hit every backend
SETTLE_S = 0.2  # lets the previous backend's spinning threads go idle
TITLES_FILE = Path("/work/shared/data/amazon-office/items.json")


@dataclass(frozen=True)
class Backends:
    torch_call: Callable[[Any, Any], Callable[[], object]]
    encoders: dict[str, Any]
    torch_model: Any
    source: Any


def repeats_for(batch: int, length: int) -> int:
    # Fixed per cell so the full grid finishes on 2 cores; big cells are stable with fewer runs.
    tokens = batch * length
    return 10 if tokens <= 4096 else 5 if tokens <= 16384 else 2


def random_batch(batch: int, length: int, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 20000, (batch, length), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP] like real BERT inputs
    return ids, np.ones_like(ids)


def sample_titles(count: int) -> list[str]:
    """Real short product titles when the benchmark data is present, else synthetic ones."""
    if TITLES_FILE.is_file():
        items = json.loads(TITLES_FILE.read_text(encoding="utf-8"))
        titles = [str(item.get("title", "")) for item in items.values() if item.get("title")]
        short = [title for title in titles if len(title.split()) <= 12]
        return (short * (count // max(len(short), 1) + 1))[:count]
    return [f"office product number {i} with a short title" for i in range(count)]


def run_grid(cells: Sequence[tuple[int, int]], backends: Backends, clock: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for batch, length in cells:
        ids, mask = random_batch(batch, length)
        calls: dict[str, Callable[[], object]] = {"torch": backends.torch_call(ids, mask)}
        for name, encoder in backends.encoders.items():
            calls[name] = partial(encoder.run_batch, ids, mask)
        repeats = repeats_for(batch, length)
        block = -(-repeats // ROUNDS)
        timings: dict[str, list[float]] = {name: [] for name in calls}
        # Rotated blocks of consecutive calls, not alternating single calls: torch's OpenMP
        # threads and onnxruntime's pool both spin for a while after a call, and alternating made
        # each backend pay for the other's spinning (torch measured 95 instead of 49 ms at 32 x 16).
        for _ in range(ROUNDS):
            for name, call in calls.items():
                timings[name].extend(time_calls_s(call, repeats=block, warmup=1, clock=clock))
                time.sleep(SETTLE_S)
        base = batch / median(timings["torch"])
        for name, values in timings.items():
            rate = batch / median(values)
            rows.append(
                {
                    "batch": batch,
                    "length": length,
                    "backend": name,
                    "seq_per_s": rate,
                    "speedup": rate / base,
                    "repeats": repeats,
                }
            )
    return rows


def run_titles(backends: Backends, cpu: bool, clock: str) -> list[dict[str, Any]]:
    from export.onnx_export import reference_embeddings, tokenize

    titles = sample_titles(512)
    source = backends.source
    title_ids = tokenize(source.path / "tokenizer.json", titles, 256)
    mean_tokens = float(np.mean([len(t) for t in title_ids]))

    def torch_titles() -> None:
        for start in range(0, len(title_ids), 32):
            reference_embeddings(backends.torch_model, title_ids[start : start + 32], source.pad_id)

    # reference_embeddings runs on CPU tensors; on CUDA only the ONNX rows are meaningful.
    torch_rate = len(titles) / median(time_calls_s(torch_titles, repeats=3, clock=clock)) if cpu else None
    rows: list[dict[str, Any]] = []
    if torch_rate:
        rows.append(
            {"backend": "torch", "titles_per_s": torch_rate, "mean_tokens": mean_tokens, "speedup": 1.0}
        )
    for name, encoder in backends.encoders.items():
        rate = len(titles) / median(time_calls_s(partial(encoder.encode, titles), repeats=3, clock=clock))
        speedup = rate / torch_rate if torch_rate else None
        rows.append({"backend": name, "titles_per_s": rate, "mean_tokens": mean_tokens, "speedup": speedup})
    return rows


def run_parity(backends: Backends) -> dict[str, float | None]:
    from export.onnx_export import reference_embeddings, tokenize
    from export.parity import PARITY_TEXTS, measure_parity

    source = backends.source
    parity_ids = tokenize(source.path / "tokenizer.json", PARITY_TEXTS, source.max_length)
    reference = reference_embeddings(backends.torch_model.cpu(), parity_ids, source.pad_id)
    return {
        name: measure_parity(reference, encoder.encode(PARITY_TEXTS)).min_cosine
        for name, encoder in backends.encoders.items()
    }


def build_backends(model_dir: Path | None, variants: list[str], device_name: str, threads: int) -> Backends:
    import torch

    from export.onnx_export import default_source, export_model, inspect_source, load_embedder
    from models.encoder.onnx_encoder import CPU, CUDA, EncoderOptions, load_variant

    torch.set_num_threads(threads)
    if model_dir is None:
        model_dir = Path(tempfile.mkdtemp(prefix="bench-model-"))
        export_model(default_source(), model_dir, variants)
    source = inspect_source(default_source())
    device = torch.device(device_name)
    # transformers' default attention (sdpa) in eager mode: how the model runs without an export.
    torch_model = load_embedder(source, "sdpa").to(device)
    cuda = device_name == "cuda"
    options = EncoderOptions(
        provider="cuda" if cuda else "cpu", intra_op_threads=threads, inter_op_threads=1, batch_size=32
    )
    providers = [CUDA, CPU] if cuda else [CPU]
    encoders = {v: load_variant(model_dir / v, options, providers) for v in variants}

    def torch_call(ids: Any, mask: Any) -> Callable[[], object]:
        ids_t, mask_t = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)

        def call() -> object:
            with torch.inference_mode():
                out = torch_model(ids_t, mask_t)
            if cuda:
                torch.cuda.synchronize()
            return out

        return call

    return Backends(torch_call, encoders, torch_model, source)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="A few cells instead of the full grid.")
    parser.add_argument(
        "--model-dir", type=Path, help="Folder from `profilestream export` (else: export now)."
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--variants", default="fp32,fp32-opt,fp16")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu = process CPU time; use with --threads 1 on a machine shared with other jobs.",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    backends = build_backends(args.model_dir, args.variants.split(","), args.device, args.threads)
    cells = QUICK_CELLS if args.quick else tuple((b, n) for b in FULL_BATCHES for n in FULL_LENGTHS)
    rows = run_grid(cells, backends, args.clock)
    titles = run_titles(backends, cpu=args.device == "cpu", clock=args.clock)
    parity = run_parity(backends)

    emit(
        f"Encoder benchmark: {backends.source.name}, device {args.device}, {args.threads} threads "
        f"(torch.set_num_threads = ORT intra-op), {platform.machine()}; {args.clock} clock, medians, "
        "rotated blocks of calls"
    )
    print_table(rows, ["batch", "length", "backend", "seq_per_s", "speedup", "repeats"])
    emit("\nEnd to end, 512 real short titles, batch 32 (tokenizer + padding; ONNX adds bucketing):")
    print_table(titles, ["backend", "titles_per_s", "mean_tokens", "speedup"])
    emit("\nParity vs PyTorch (min cosine over the export's parity texts):")
    print_table([{"variant": k, "min_cosine": v} for k, v in parity.items()], ["variant", "min_cosine"])
    print_json(
        {
            "device": args.device,
            "threads": args.threads,
            "clock": args.clock,
            "model": backends.source.name,
            "cells": rows,
            "end_to_end": titles,
            "min_cosine": parity,
        }
    )


if __name__ == "__main__":
    main()
