"""Runtime sequence user tower: a window's item and query vectors -> one user vector (onnxruntime).

The tower (trained by `models.training.sequence`, exported by `export.sequence_export`) reads the
user's window as a sequence: per event the item vector the index stores (or the search query's
vector), the event type, the log2 bucket of its age relative to the newest event, and its position
counted from the newest. It outputs an L2-normalised vector in the item space, ranked against the
item index like any other user vector.

`sequence_features` is the one place that turns windows into the tower's inputs: training, the
offline evaluation and the worker all call it, so they cannot disagree about what the tower reads.

Item residuals: a tower may carry a learned vector per item seen in training
(``item_residuals.npy`` with its ids, listed with its sha256 in the manifest). The tower's item
vectors are then ``normalise(index vector + residual)`` for those items and the index's own vector
for every other one (new items keep working from their text alone); `ItemResiduals.apply` is the
one function that does it, and the stream uses the result on both sides, as the tower's input and
as what it ranks against, exactly as training did. No torch here (the worker imports this module).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]  # ships no type information

from models.encoder.cooccurrence import CatalogueNeighbours, ItemNeighbours, read_neighbours
from models.encoder.manifest import sha256_file
from models.encoder.sessions import CatalogueSessions, ItemSessions, read_sessions
from stream.core.errors import ModelError
from stream.core.events import EventType
from stream.core.window import Window

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

SEQUENCE_MANIFEST = "sequence_manifest.json"
RESIDUALS_FILE = "item_residuals.npy"
RESIDUAL_IDS_FILE = "item_residual_ids.json"
SEQUENCE_FORMAT_VERSION = 1
# Id 0 is padding; the order is part of the manifest, so an exported tower keeps its meaning.
EVENT_TYPE_VOCAB: tuple[str, ...] = ("search", "view", "click", "add_to_cart", "purchase")
# Age buckets: 0 padding, then 1 + floor(log2(1 + age_s)), capped: 1 s .. ~ 2^20 s (12 days) and older.
GAP_BUCKETS = 24
INPUT_NAMES = ("vectors", "event_types", "gap_buckets", "mask")
OUTPUT_NAME = "user_vector"


@dataclass(frozen=True, slots=True)
class SequenceInputs:
    """A batch of right-aligned sequences (the newest event in the last slot, padding on the left).

    `vectors` (B, L, D) float32; `event_types`, `gap_buckets` (B, L) int64 (0 = padding);
    `mask` (B, L) float32, 1 where an event is. `lengths[b]` is how many events row b holds.
    """

    vectors: FloatArray
    event_types: IntArray
    gap_buckets: IntArray
    mask: FloatArray
    # (B, L) catalogue row of each slot's item, -1 for padding and searches: what training needs to
    # learn item residuals through the input side too. Not an ONNX input.
    rows: IntArray | None = None

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        lengths: npt.NDArray[np.int64] = self.mask.sum(axis=1).astype(np.int64)
        return lengths

    def feeds(self, rows: npt.NDArray[np.intp] | None = None, width: int | None = None) -> dict[str, Any]:
        """The ONNX inputs: every row at full width, or only `rows`, cut to their newest `width` slots."""
        arrays = (self.vectors, self.event_types, self.gap_buckets, self.mask)
        if rows is not None:
            cut = slice(None) if width is None else slice(-width, None)
            arrays = tuple(np.ascontiguousarray(a[rows][:, cut]) for a in arrays)  # type: ignore[assignment]
        return dict(zip(INPUT_NAMES, arrays, strict=True))


def gap_bucket(age_ms: int) -> int:
    """1 + floor(log2(1 + age in seconds)), capped at GAP_BUCKETS - 1 (0 is padding)."""
    seconds = max(0, age_ms) / 1000.0
    return min(GAP_BUCKETS - 1, 1 + math.floor(math.log2(1.0 + seconds)))


def _type_id(event_type: EventType) -> int:
    name = str(event_type)
    return EVENT_TYPE_VOCAB.index(name) + 1 if name in EVENT_TYPE_VOCAB else 0


_TYPE_IDS = {event_type: _type_id(event_type) for event_type in EventType}


def sequence_features(
    windows: Sequence[Window],
    row_of: Callable[[str], int | None],
    item_vectors: FloatArray,
    query_vectors: Mapping[str, FloatArray],
    max_length: int,
) -> SequenceInputs:
    """The tower's inputs for each window: its events oldest first, the newest `max_length` that
    have a vector (catalogue items; searches whose query vector is given); unknown items skipped.
    A window with none of them gives an all-padding row (its `lengths` entry is 0)."""
    dim = item_vectors.shape[1]
    batch = len(windows)
    vectors = np.zeros((batch, max_length, dim), dtype=np.float32)
    # Each kept event's (row of the batch, slot) and features; written into the arrays at once
    # below, since a numpy assignment per slot cost more than choosing the events.
    slot_batch: list[int] = []
    slot_position: list[int] = []
    slot_type: list[int] = []
    slot_gap: list[int] = []
    slot_row: list[int] = []  # -1: a search, its vector in `searches`
    searches: list[tuple[int, FloatArray]] = []  # (index into the slot lists, query vector)
    for b, window in enumerate(windows):
        newest = window.newest
        if newest is None:
            continue
        position = max_length - 1  # newest in the last slot
        for event in reversed(window.events):
            if position < 0:
                break
            if event.item_id is not None:
                row = row_of(event.item_id)
                if row is None:
                    continue
            elif event.type is EventType.SEARCH and event.query and event.query in query_vectors:
                row = -1
                searches.append((len(slot_row), query_vectors[event.query]))
            else:
                continue
            slot_batch.append(b)
            slot_position.append(position)
            slot_type.append(_TYPE_IDS[event.type])
            slot_gap.append(gap_bucket(newest.ts_ms - event.ts_ms))
            slot_row.append(row)
            position -= 1
    types = np.zeros((batch, max_length), dtype=np.int64)
    gaps = np.zeros((batch, max_length), dtype=np.int64)
    mask = np.zeros((batch, max_length), dtype=np.float32)
    rows = np.full((batch, max_length), -1, dtype=np.int64)
    if slot_row:
        at = (np.asarray(slot_batch, dtype=np.intp), np.asarray(slot_position, dtype=np.intp))
        row_ids = np.asarray(slot_row, dtype=np.int64)
        items = row_ids >= 0
        vectors[at[0][items], at[1][items]] = item_vectors[row_ids[items]]
        if searches:
            index = np.asarray([n for n, _ in searches], dtype=np.intp)
            vectors[at[0][index], at[1][index]] = np.stack([vector for _, vector in searches])
        types[at] = slot_type
        gaps[at] = slot_gap
        mask[at] = 1.0
        rows[at] = row_ids
    return SequenceInputs(vectors, types, gaps, mask, rows)


@dataclass(frozen=True)
class ItemResiduals:
    """Learned per-item vectors added to the index's item vectors (items seen in training only)."""

    ids: tuple[str, ...]
    vectors: FloatArray  # (len(ids), dim)

    def apply(self, ids: Sequence[str], item_vectors: FloatArray) -> FloatArray:
        """The tower's item vectors: ``normalise(item_vectors[row] + residual)`` for the items that
        have a residual, `item_vectors`' own row for every other one (a new copy)."""
        out = np.array(item_vectors, dtype=np.float32, copy=True)
        if not self.ids or not len(out):
            return out
        position = {item_id: n for n, item_id in enumerate(self.ids)}
        pairs = [(row, position[i]) for row, i in enumerate(ids) if i in position]
        if not pairs:
            return out
        rows = np.asarray([row for row, _ in pairs], dtype=np.int64)
        picked = np.asarray([n for _, n in pairs], dtype=np.int64)
        moved = out[rows] + self.vectors[picked]
        norms = np.linalg.norm(moved, axis=1, keepdims=True)
        out[rows] = moved / np.where(norms == 0, 1.0, norms)
        return out


def _residuals_digest(directory: Path) -> str:
    """sha256 over the residual table's file and its ids' file (both say what a row means)."""
    digest = hashlib.sha256()
    for name in (RESIDUALS_FILE, RESIDUAL_IDS_FILE):
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()


def write_residuals(directory: Path, residuals: ItemResiduals) -> tuple[str, str]:
    """Write the residual table and its ids into `directory`; returns (file name, sha256 of both)."""
    np.save(directory / RESIDUALS_FILE, np.ascontiguousarray(residuals.vectors, dtype=np.float32))
    (directory / RESIDUAL_IDS_FILE).write_text(json.dumps(list(residuals.ids)), encoding="utf-8")
    return RESIDUALS_FILE, _residuals_digest(directory)


def read_residuals(directory: Path, file_name: str, digest: str, dim: int) -> ItemResiduals:
    """The residual table listed in a manifest, checked against its sha256 and shape."""
    path = directory / file_name
    if file_name != RESIDUALS_FILE or not path.is_file() or not (directory / RESIDUAL_IDS_FILE).is_file():
        raise ModelError(
            f"{directory}: {RESIDUALS_FILE} or {RESIDUAL_IDS_FILE} missing (listed in {SEQUENCE_MANIFEST}); "
            "re-export the tower"
        )
    found = _residuals_digest(directory)
    if found != digest:
        raise ModelError(
            f"{path}: sha256 {found[:12]} does not match the manifest's {digest[:12]}; the file is "
            "corrupt or was replaced, re-export the tower"
        )
    try:
        vectors = np.load(path, allow_pickle=False).astype(np.float32, copy=False)
        ids = tuple(str(i) for i in json.loads((directory / RESIDUAL_IDS_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{directory}: item residuals unreadable ({exc}); re-export the tower") from exc
    if vectors.shape != (len(ids), dim):
        raise ModelError(
            f"{path}: shape {vectors.shape} but {len(ids)} ids of dimension {dim}; re-export the tower"
        )
    return ItemResiduals(ids, vectors)


@dataclass(frozen=True)
class SequenceManifest:
    """``sequence_manifest.json`` of an exported tower: what the runtime needs to load and trust it."""

    format_version: int
    onnx_file: str
    sha256: str
    dim: int  # input item-vector width = output width
    hidden: int
    layers: int
    max_length: int
    event_types: tuple[str, ...]
    gap_buckets: int
    temperature: float
    popularity_weight: float  # the prior weight the tower was trained and tuned with
    item_model_version: str  # the encoder whose item vectors it reads
    version: str  # "sequence:<sha256 prefix>"
    parity_max_abs_diff: float | None = None
    trained: Mapping[str, Any] | None = None
    # Learned per-item residuals (`ItemResiduals`): file name, sha256 and item count; None: none.
    residuals_file: str | None = None
    residuals_sha256: str | None = None
    residual_items: int = 0
    # Item co-occurrence neighbour lists (`models.encoder.cooccurrence`), fused into the ranking as
    # ``knn_weight x kNN term`` (the weight chosen on the valid rows); None: none (exports before
    # them), the tower's score alone.
    neighbours_file: str | None = None
    neighbours_sha256: str | None = None
    neighbour_items: int = 0
    max_neighbours: int = 0
    knn_weight: float = 0.0
    knn_decay: float = 0.9
    # Training sessions (`models.encoder.sessions`), fused as ``session_weight x session term``;
    # None: none (exports before them).
    sessions_file: str | None = None
    sessions_sha256: str | None = None
    sessions: int = 0
    session_weight: float = 0.0
    session_neighbours: int = 0
    session_follow_decay: float = 0.8

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["event_types"] = list(self.event_types)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: Path) -> SequenceManifest:
        try:
            manifest = cls(**{**data, "event_types": tuple(data["event_types"])})
        except (TypeError, KeyError) as exc:
            raise ModelError(f"{where}: not a sequence tower manifest ({exc}); re-export the tower") from exc
        if manifest.format_version != SEQUENCE_FORMAT_VERSION:
            raise ModelError(
                f"{where}: format {manifest.format_version}, this version reads {SEQUENCE_FORMAT_VERSION}; "
                "re-export the tower with `profilestream export --sequence`"
            )
        if tuple(manifest.event_types) != EVENT_TYPE_VOCAB or manifest.gap_buckets != GAP_BUCKETS:
            raise ModelError(
                f"{where}: event types {manifest.event_types} / {manifest.gap_buckets} gap buckets differ "
                f"from this version's {EVENT_TYPE_VOCAB} / {GAP_BUCKETS}; re-export the tower"
            )
        return manifest


def write_sequence_manifest(directory: Path, manifest: SequenceManifest) -> Path:
    path = directory / SEQUENCE_MANIFEST
    path.write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def read_sequence_manifest(directory: Path) -> SequenceManifest:
    path = directory / SEQUENCE_MANIFEST
    if not path.is_file():
        raise ModelError(
            f"{path}: missing; PROFILESTREAM_USER_VECTOR=sequence needs a trained tower "
            "(`profilestream train DATASET --out DIR`, then set PROFILESTREAM_SEQUENCE_MODEL_DIR=DIR)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable ({exc}); re-export the tower") from exc
    return SequenceManifest.from_json(data, path)


class SequenceTower:
    """The exported tower through onnxruntime: `SequenceInputs` -> (B, dim) L2-normalised vectors."""

    def __init__(self, directory: Path, *, provider: str = "auto", intra_op_threads: int = 1) -> None:
        self.manifest = read_sequence_manifest(directory)
        onnx_path = directory / self.manifest.onnx_file
        if not onnx_path.is_file():
            raise ModelError(f"{onnx_path}: missing (listed in {SEQUENCE_MANIFEST}); re-export the tower")
        digest = sha256_file(onnx_path)
        if digest != self.manifest.sha256:
            raise ModelError(
                f"{onnx_path}: sha256 {digest[:12]} does not match the manifest's "
                f"{self.manifest.sha256[:12]}; the file is corrupt or was replaced, re-export the tower"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        want_cuda = provider in ("auto", "cuda") and "CUDAExecutionProvider" in available
        if provider == "cuda" and not want_cuda:
            raise ModelError("PROFILESTREAM_ENCODER_PROVIDER=cuda but onnxruntime has no CUDA provider")
        providers = (["CUDAExecutionProvider"] if want_cuda else []) + ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(
                f"{onnx_path}: onnxruntime could not load it ({exc}); re-export the tower"
            ) from exc
        self.provider = self._session.get_providers()[0]
        # Towers exported before the length axis was dynamic take full-width rows only.
        self.dynamic_length = not isinstance(self._session.get_inputs()[0].shape[1], int)
        self.residuals: ItemResiduals | None = None
        if self.manifest.residuals_file:
            self.residuals = read_residuals(
                directory, self.manifest.residuals_file, self.manifest.residuals_sha256 or "", self.dim
            )
        self.neighbours: ItemNeighbours | None = None
        if self.manifest.neighbours_file:
            self.neighbours = read_neighbours(
                directory, self.manifest.neighbours_file, self.manifest.neighbours_sha256 or ""
            )
        self.sessions: ItemSessions | None = None
        if self.manifest.sessions_file:
            self.sessions = read_sessions(
                directory, self.manifest.sessions_file, self.manifest.sessions_sha256 or ""
            )
        logger.info(
            "sequence tower %s on %s (%d item residuals, %d items with neighbour lists, kNN weight %g, "
            "%d sessions, session weight %g)",
            self.manifest.version,
            self.provider,
            len(self.residuals.ids) if self.residuals else 0,
            self.manifest.neighbour_items if self.neighbours else 0,
            self.manifest.knn_weight if self.neighbours else 0.0,
            len(self.sessions) if self.sessions else 0,
            self.manifest.session_weight if self.sessions else 0.0,
        )

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    @property
    def version(self) -> str:
        return self.manifest.version

    def item_vectors(self, ids: Sequence[str], vectors: FloatArray) -> FloatArray:
        """The item vectors this tower reads and ranks against: the index's `vectors` (rows in
        `ids` order) with the tower's learned residuals applied (unchanged without any)."""
        if self.residuals is None:
            return vectors
        return self.residuals.apply(ids, vectors)

    def neighbours_for(self, ids: Sequence[str]) -> CatalogueNeighbours | None:
        """The tower's co-occurrence lists in the rows of a catalogue (`ids`), with the fusion
        weight and recency decay it was measured with; None for a tower without them."""
        if self.neighbours is None or self.manifest.knn_weight <= 0.0:
            return None
        return self.neighbours.for_catalogue(ids, self.manifest.knn_decay, self.manifest.knn_weight)

    def sessions_for(self, ids: Sequence[str]) -> CatalogueSessions | None:
        """The tower's training sessions in the rows of a catalogue (`ids`), with the fusion weight,
        neighbour count and follow decay they were measured with; None for a tower without them."""
        if self.sessions is None or self.manifest.session_weight <= 0.0:
            return None
        return self.sessions.for_catalogue(
            ids,
            weight=self.manifest.session_weight,
            neighbours=self.manifest.session_neighbours,
            follow_decay=self.manifest.session_follow_decay,
        )

    def encode(self, inputs: SequenceInputs) -> FloatArray:
        """(B, dim) float32 user vectors; rows without any event come back as zero vectors.

        One call per distinct row length, each cut to that length: the rows of a worker's batch
        are mostly far shorter than `max_length`, and padding costs as much as events. The slots
        are right-aligned and positions count from the newest, so a cut row gives the vector its
        full-width form gives (up to float rounding; the export's parity check runs this path).
        Raises ModelError when onnxruntime fails.
        """
        batch = inputs.vectors.shape[0]
        result = np.zeros((batch, self.dim), dtype=np.float32)
        lengths = inputs.lengths
        groups = (
            [(np.flatnonzero(lengths == width), int(width)) for width in np.unique(lengths) if width > 0]
            if self.dynamic_length
            else [(np.flatnonzero(lengths > 0), None)]
        )
        for rows, width in groups:
            if not len(rows):
                continue
            try:
                (out,) = self._session.run([OUTPUT_NAME], inputs.feeds(rows, width))
            except Exception as exc:
                shape = f"{len(rows)} rows" + ("" if width is None else f" of length {width}")
                raise ModelError(f"sequence tower {self.version} failed on {shape}: {exc}") from exc
            result[rows] = out
        return result
