"""Export a trained sequence user tower (`models.training.sequence`) to ONNX, parity-checked.

Writes ``sequence_tower.onnx`` and ``sequence_manifest.json`` (dims, max length, event-type
vocabulary, gap buckets, temperature, prior weight, the item encoder it reads, sha256, parity) into
the output folder, which `models.encoder.sequence_tower.SequenceTower` loads. Parity: the runtime
wrapper itself against torch on seeded random sequences of every length (padding included); the
export fails above `MAX_ABS_DIFF`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from export.sequence_module import SequenceTowerModule, load_tower, tower_vectors
from models.encoder.manifest import sha256_file
from models.encoder.sequence_tower import (
    EVENT_TYPE_VOCAB,
    GAP_BUCKETS,
    INPUT_NAMES,
    OUTPUT_NAME,
    SEQUENCE_FORMAT_VERSION,
    SequenceInputs,
    SequenceManifest,
    SequenceTower,
    write_sequence_manifest,
)
from stream.core.errors import ModelError

logger = logging.getLogger(__name__)

ONNX_FILE = "sequence_tower.onnx"
MAX_ABS_DIFF = 1e-4
OPSET = 17


def parity_inputs(dim: int, max_length: int, batch: int = 64, seed: int = 0) -> SequenceInputs:
    """Seeded unit vectors with every length from 1 to `max_length` (and one empty row)."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(batch, max_length, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
    mask = np.zeros((batch, max_length), dtype=np.float32)
    for b in range(batch):
        length = b % (max_length + 1)
        if length:
            mask[b, max_length - length :] = 1.0
    vectors *= mask[:, :, None]
    types = (rng.integers(1, len(EVENT_TYPE_VOCAB) + 1, size=(batch, max_length)) * mask).astype(np.int64)
    gaps = (rng.integers(1, GAP_BUCKETS, size=(batch, max_length)) * mask).astype(np.int64)
    return SequenceInputs(vectors, types, gaps, mask)


def export_tower_module(model: SequenceTowerModule, path: Path) -> None:
    sample = parity_inputs(model.dim, model.max_length, batch=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation notices
        torch.onnx.export(
            model,
            tuple(
                torch.from_numpy(a)
                for a in (sample.vectors, sample.event_types, sample.gap_buckets, sample.mask)
            ),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: {0: "batch"} for name in (*INPUT_NAMES, OUTPUT_NAME)},
        )


def export_sequence_tower(source: Path, out_dir: Path) -> SequenceManifest:
    """`source`: a `profilestream train` output folder; `out_dir` receives the ONNX tower."""
    model, config, meta = load_tower(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / ONNX_FILE
    export_tower_module(model, onnx_path)
    digest = sha256_file(onnx_path)
    manifest = SequenceManifest(
        format_version=SEQUENCE_FORMAT_VERSION,
        onnx_file=ONNX_FILE,
        sha256=digest,
        dim=model.dim,
        hidden=config.hidden,
        layers=config.layers,
        max_length=config.max_length,
        event_types=EVENT_TYPE_VOCAB,
        gap_buckets=GAP_BUCKETS,
        temperature=config.temperature,
        popularity_weight=config.popularity_weight,
        item_model_version=str(meta.get("item_model_version", "")),
        version=f"sequence:{digest[:12]}",
        trained={k: meta[k] for k in ("examples", "steps", "seconds", "losses") if k in meta},
    )
    write_sequence_manifest(out_dir, manifest)
    inputs = parity_inputs(model.dim, model.max_length)
    expected = tower_vectors(model, inputs)
    got = SequenceTower(out_dir, provider="cpu").encode(inputs)
    diff = float(np.abs(expected - got).max())
    if not diff <= MAX_ABS_DIFF:
        onnx_path.unlink(missing_ok=True)
        raise ModelError(
            f"{onnx_path}: ONNX output differs from torch by {diff:.2e} (limit {MAX_ABS_DIFF:g}); "
            "the export is broken, nothing was written"
        )
    manifest = SequenceManifest(**{**manifest.__dict__, "parity_max_abs_diff": diff})
    write_sequence_manifest(out_dir, manifest)
    logger.info("sequence tower exported to %s: parity max |diff| %.2e", onnx_path, diff)
    return manifest
