"""How fast can any fp32 runtime encode one batch? The encoder's matrix-product floor, same run.

    python -m bench.encoder_floor [--model-dir DIR] [--batch 32] [--length 16] [--threads N]

The issue's encoder target is ONNX >= 2.5x PyTorch eager at batch 32 x 16 tokens. Both runtimes
do the same arithmetic; almost all of it is the weight matrix products (Q, K, V, attention
output, and the two feed-forward layers of every BERT layer). This script times, interleaved:

- ``torch``: PyTorch eager (transformers' sdpa attention, inference mode), as `bench.encoder`;
- ``onnx fp32``: the exported fp32 model in onnxruntime;
- ``matmul floor``: a graph holding only the model's own weight MatMuls (the shapes read from the
  exported ONNX) on a (batch x length)-row activation, nothing else: no attention scores, softmax,
  layer norms, GELU, embeddings or pooling. No fp32 runtime can encode the batch faster than this;
- ``onnx int8``: onnxruntime dynamic quantisation (int8 weights per channel, MatMuls only), with
  its minimum cosine against fp32 on the export's parity texts (the export's gate is 0.999).

It prints the speed-up over torch of each, i.e. the best ratio an fp32 export could reach here.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import emit, median, print_json, print_table, time_calls_s

ROUNDS = 3
BLOCK_REPEATS = 10


def weight_matmul_shapes(onnx_path: Path) -> list[tuple[int, int]]:
    """(K, N) of every MatMul whose second input is a weight (an initializer) in the model."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    found: list[tuple[int, int]] = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in shapes:
            dims = shapes[node.input[1]]
            if len(dims) == 2:
                found.append((int(dims[0]), int(dims[1])))
    return found


def matmul_floor_model(shapes: list[tuple[int, int]], rows: int, seed: int = 0) -> bytes:
    """A graph of only these MatMuls on a (rows x K) activation, chained in model order (each one
    reads the latest output of its input width, as the layers do): the products alone."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights, inputs = [], [], []
    latest: dict[int, str] = {}  # width -> name of the newest activation of that width
    unread: dict[str, int] = {}  # outputs nothing has read yet, and their width
    for n, (k, width) in enumerate(shapes):
        if k not in latest:
            latest[k] = f"x{k}"
            inputs.append(helper.make_tensor_value_info(f"x{k}", TensorProto.FLOAT, [rows, k]))
        # Small weights keep the chained activations finite.
        weight = (rng.standard_normal((k, width)) / np.sqrt(k)).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{n}"))
        nodes.append(helper.make_node("MatMul", [latest[k], f"w{n}"], [f"y{n}"]))
        unread.pop(latest[k], None)
        latest[width] = unread_name = f"y{n}"
        unread[unread_name] = width
    # Only the outputs no later product reads are graph outputs: a few, not one per product, so
    # that copying results out does not count as product time.
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [rows, w]) for name, w in unread.items()
    ]
    graph = helper.make_graph(nodes, "matmul_floor", inputs, outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what onnxruntime 1.2x-1.3x reads
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def quantised_int8(onnx_path: Path, out_path: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    quantize_dynamic(
        str(onnx_path),
        str(out_path),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
    )
    return out_path


def _session(model: bytes | Path, threads: int) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _min_cosine(reference: np.ndarray[Any, Any], candidate: np.ndarray[Any, Any]) -> float:
    dots = (reference * candidate).sum(axis=1)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    return float((dots / norms).min())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir", type=Path, help="Folder from `profilestream export` (else: export now)."
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from bench.encoder import random_batch
    from export.onnx_export import default_source, export_model, inspect_source, load_embedder, tokenize
    from export.parity import PARITY_TEXTS

    torch.set_num_threads(args.threads)
    model_dir = args.model_dir
    if model_dir is None:
        model_dir = Path(tempfile.mkdtemp(prefix="bench-floor-"))
        export_model(default_source(), model_dir, ["fp32"])
    fp32_path = model_dir / "fp32" / "model.onnx"
    source = inspect_source(default_source())
    torch_model = load_embedder(source, "sdpa")
    fp32 = _session(fp32_path, args.threads)
    int8_path = quantised_int8(fp32_path, Path(tempfile.mkdtemp(prefix="bench-int8-")) / "model.onnx")
    int8 = _session(int8_path, args.threads)
    shapes = weight_matmul_shapes(fp32_path)
    rows = args.batch * args.length
    floor = _session(matmul_floor_model(shapes, rows), args.threads)
    floor_feed = {
        i.name: np.random.default_rng(1).standard_normal((rows, int(i.name[1:]))).astype(np.float32)
        for i in floor.get_inputs()
    }
    ids, mask = random_batch(args.batch, args.length)
    names = [i.name for i in fp32.get_inputs()]
    feed = dict(zip(names, (ids, mask), strict=True))
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)

    def run_torch() -> object:
        with torch.inference_mode():
            return torch_model(ids_t, mask_t)

    calls = {
        "torch": run_torch,
        "onnx fp32": lambda: fp32.run(None, feed),
        "matmul floor": lambda: floor.run(None, floor_feed),
        "onnx int8": lambda: int8.run(None, feed),
    }
    # Blocks of consecutive calls per backend, the blocks rotated: torch's OpenMP threads and
    # onnxruntime's pool both spin for a while after a call, and alternating single calls made
    # each backend pay for the other's spinning.
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, call in calls.items():
            timings[name].extend(time_calls_s(call, BLOCK_REPEATS, warmup=2))
            time.sleep(0.2)

    parity_ids = tokenize(source.path / "tokenizer.json", PARITY_TEXTS, source.max_length)
    width = max(len(t) for t in parity_ids)
    parity_feed = dict(
        zip(
            names,
            (
                np.asarray([t + [source.pad_id] * (width - len(t)) for t in parity_ids], dtype=np.int64),
                np.asarray([[1] * len(t) + [0] * (width - len(t)) for t in parity_ids], dtype=np.int64),
            ),
            strict=True,
        )
    )
    reference = fp32.run(None, parity_feed)[0]
    cosines = {"onnx fp32": 1.0, "onnx int8": _min_cosine(reference, int8.run(None, parity_feed)[0])}
    torch_ms = median(timings["torch"]) * 1e3
    table = [
        {
            "backend": name,
            "ms_per_batch": median(values) * 1e3,
            "speedup_vs_torch": torch_ms / (median(values) * 1e3),
            "min_cosine_vs_fp32": cosines.get(name),
        }
        for name, values in timings.items()
    ]
    flops = 2 * rows * sum(k * n for k, n in shapes)
    emit(
        f"Encoder floor: {source.name}, batch {args.batch} x {args.length} tokens, {args.threads} threads, "
        f"{platform.machine()}; {len(shapes)} weight MatMuls, {flops / 1e9:.1f} GFLOP per batch; "
        f"wall clock, medians of {ROUNDS} rotated blocks of {BLOCK_REPEATS} calls"
    )
    print_table(table, ["backend", "ms_per_batch", "speedup_vs_torch", "min_cosine_vs_fp32"])
    floor_ms = median(timings["matmul floor"]) * 1e3
    emit(
        f"\nBest possible fp32 ratio here: torch / matmul floor = {torch_ms / floor_ms:.2f}x "
        f"(the floor runs at {flops / floor_ms / 1e6:.0f} GFLOP/s)"
    )
    print_json(
        {
            "batch": args.batch,
            "length": args.length,
            "threads": args.threads,
            "model": source.name,
            "weight_matmuls": len(shapes),
            "gflop_per_batch": flops / 1e9,
            "rows": table,
            "best_fp32_ratio": torch_ms / floor_ms,
        }
    )


if __name__ == "__main__":
    main()
