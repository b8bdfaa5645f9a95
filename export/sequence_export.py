"""Export a trained sequence user tower (`models.training.sequence`) to ONNX, parity-checked.

Writes ``sequence_tower.onnx`` and ``sequence_manifest.json`` (dims, max length, event-type
vocabulary, gap buckets, temperature, prior weight, the item encoder it reads, sha256, parity) into
the output folder, which `models.encoder.sequence_tower.SequenceTower` loads. Parity: the runtime
wrapper itself against torch on seeded random sequences of every length (padding included), and,
for a tower with item residuals, the runtime's item vectors (`ItemResiduals.apply`) against the
module's `item_matrix` on seeded random item vectors; the export fails above `MAX_ABS_DIFF`.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from export.sequence_module import SequenceTowerModule, load_tower, tower_vectors
from models.encoder.cooccurrence import (
    DEFAULT_DECAY,
    NEIGHBOURS_FILE,
    ItemNeighbours,
    load_neighbours,
    write_neighbours,
)
from models.encoder.manifest import sha256_file
from models.encoder.sequence_tower import (
    EVENT_TYPE_VOCAB,
    GAP_BUCKETS,
    INPUT_NAMES,
    OUTPUT_NAME,
    RESIDUAL_IDS_FILE,
    RESIDUALS_FILE,
    SEQUENCE_FORMAT_VERSION,
    ItemResiduals,
    SequenceInputs,
    SequenceManifest,
    SequenceTower,
    write_residuals,
    write_sequence_manifest,
)
from models.encoder.sessions import (
    DEFAULT_FOLLOW_DECAY,
    SESSIONS_FILE,
    ItemSessions,
    load_sessions,
    write_sessions,
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
            # The length axis too: the runtime runs each batch's rows grouped by length, cut to
            # it (positions count from the newest slot, so cutting left padding changes nothing).
            dynamic_axes={
                **{name: {0: "batch", 1: "length"} for name in INPUT_NAMES},
                OUTPUT_NAME: {0: "batch"},
            },
        )


def _source_residuals(source: Path, model: SequenceTowerModule) -> ItemResiduals | None:
    """The checkpoint's warm-item residuals by id (None for a tower without them)."""
    if model.item_table is None:
        return None
    ids_path = source / RESIDUAL_IDS_FILE
    if not ids_path.is_file():
        raise ModelError(f"{ids_path}: missing; the checkpoint has item residuals but not their ids")
    ids = [str(i) for i in json.loads(ids_path.read_text(encoding="utf-8"))]
    table = model.item_table
    warm = table.warm_items()
    catalogue = [""] * int(table.table.shape[0])
    rows = np.flatnonzero(warm)
    if len(rows) != len(ids):
        raise ModelError(f"{ids_path}: {len(ids)} ids for {len(rows)} warm items; retrain the tower")
    for row, item_id in zip(rows, ids, strict=True):
        catalogue[row] = item_id
    return table.residuals(catalogue)


def _item_side_diff(model: SequenceTowerModule, runtime: SequenceTower, residuals: ItemResiduals) -> float:
    """Max |torch item_matrix - runtime item_vectors| on seeded random unit item vectors."""
    assert model.item_table is not None
    items = int(model.item_table.table.shape[0])
    rng = np.random.default_rng(1)
    text = rng.normal(size=(items, model.dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    warm = model.item_table.warm_items()
    ids = [f"cold-{row}" for row in range(items)]
    for row, item_id in zip(np.flatnonzero(warm), residuals.ids, strict=True):
        ids[row] = item_id
    with torch.no_grad():
        expected = model.item_matrix(torch.from_numpy(text)).numpy()
    return float(np.abs(expected - runtime.item_vectors(ids, text)).max())


def _same_neighbours(a: ItemNeighbours, b: ItemNeighbours) -> bool:
    return (
        a.ids == b.ids
        and np.array_equal(a.indptr, b.indptr)
        and np.array_equal(a.indices, b.indices)
        and np.array_equal(a.weights, b.weights)
    )


def _same_sessions(a: ItemSessions, b: ItemSessions) -> bool:
    return a.ids == b.ids and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.items, b.items)


def export_sequence_tower(source: Path, out_dir: Path) -> SequenceManifest:
    """`source`: a `profilestream train` output folder; `out_dir` receives the ONNX tower."""
    model, config, meta = load_tower(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / ONNX_FILE
    export_tower_module(model, onnx_path)
    digest = sha256_file(onnx_path)
    residuals = _source_residuals(source, model)
    residuals_file, residuals_sha = write_residuals(out_dir, residuals) if residuals else (None, None)
    if residuals is None:
        for name in (RESIDUALS_FILE, RESIDUAL_IDS_FILE):
            (out_dir / name).unlink(missing_ok=True)
    # The co-occurrence lists `profilestream train` wrote from the training pairs (none in older
    # checkpoints, or with knn_weight 0: then the export has no kNN term).
    neighbours = None
    if config.knn_weight > 0 and (source / NEIGHBOURS_FILE).is_file():
        neighbours = load_neighbours(source / NEIGHBOURS_FILE)
    neighbours_file, neighbours_sha = write_neighbours(out_dir, neighbours) if neighbours else (None, None)
    if neighbours is None:
        (out_dir / NEIGHBOURS_FILE).unlink(missing_ok=True)
    # The training sessions (none in older checkpoints, or with session_weight 0: no session term).
    sessions = None
    if config.session_weight > 0 and (source / SESSIONS_FILE).is_file():
        sessions = load_sessions(source / SESSIONS_FILE)
    sessions_file, sessions_sha = write_sessions(out_dir, sessions) if sessions else (None, None)
    if sessions is None:
        (out_dir / SESSIONS_FILE).unlink(missing_ok=True)
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
        # The lists and sessions change the ranking: profiles name them too ("/knn:<sha256 prefix>").
        version=f"sequence:{digest[:12]}"
        + (f"/knn:{neighbours_sha[:8]}" if neighbours_sha else "")
        + (f"/sessions:{sessions_sha[:8]}" if sessions_sha else ""),
        trained={k: meta[k] for k in ("examples", "steps", "seconds", "losses") if k in meta},
        residuals_file=residuals_file,
        residuals_sha256=residuals_sha,
        residual_items=len(residuals.ids) if residuals else 0,
        neighbours_file=neighbours_file,
        neighbours_sha256=neighbours_sha,
        neighbour_items=int((np.diff(neighbours.indptr) > 0).sum()) if neighbours else 0,
        max_neighbours=config.max_neighbours if neighbours else 0,
        knn_weight=config.knn_weight if neighbours else 0.0,
        knn_decay=DEFAULT_DECAY,
        sessions_file=sessions_file,
        sessions_sha256=sessions_sha,
        sessions=len(sessions) if sessions else 0,
        session_weight=config.session_weight if sessions else 0.0,
        session_neighbours=config.session_neighbours if sessions else 0,
        session_follow_decay=DEFAULT_FOLLOW_DECAY,
    )
    write_sequence_manifest(out_dir, manifest)
    inputs = parity_inputs(model.dim, model.max_length)
    expected = tower_vectors(model, inputs)
    runtime = SequenceTower(out_dir, provider="cpu")
    diff = float(np.abs(expected - runtime.encode(inputs)).max())
    if residuals is not None:
        diff = max(diff, _item_side_diff(model, runtime, residuals))
    read_back = runtime.neighbours
    if neighbours is not None and (read_back is None or not _same_neighbours(neighbours, read_back)):
        raise ModelError(
            f"{out_dir / NEIGHBOURS_FILE}: the runtime read back other neighbour lists; re-export the tower"
        )
    sessions_back = runtime.sessions
    if sessions is not None and (sessions_back is None or not _same_sessions(sessions, sessions_back)):
        raise ModelError(
            f"{out_dir / SESSIONS_FILE}: the runtime read back other sessions; re-export the tower"
        )
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
