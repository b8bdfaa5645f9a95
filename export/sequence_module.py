"""The sequence user tower as a torch module, and its checkpoint folder (training and export share it).

`SequenceTowerModule` reads `models.encoder.sequence_tower.SequenceInputs` (per event: the item
or query vector, event type, log2 age bucket; right-aligned, newest last) through a small pre-norm
transformer, bidirectional over the window (at serving time the whole window is known). Its output
is the newest slot's state projected to the item space PLUS the newest event's own vector,
L2-normalised; the projection starts at zero, so an untrained tower is exactly `last item`, the
strongest zero-shot mode, and training learns what to move away from it. Attention is written out
(padding as -1e4 logits) so the ONNX export is a plain graph.

With ``item_residuals``, the module also holds `ItemResidualTable`: one learned vector per
catalogue item seen in training (zero and frozen for the others), so the tower's item vectors are
``normalise(text vector + residual)``: on the input side (the history's items) and on the scoring
side (what the user vector is ranked against). It is not part of the ONNX graph: the export writes
the warm items' residuals beside it (`models.encoder.sequence_tower.ItemResiduals`), and the stream
applies them to the index's vectors before the tower reads or ranks them.

Lives in `export/` (as `export.wrapper` does for the text encoder) because both
`models.training.sequence` (writes the checkpoint) and `export.sequence_export` (reads it) need it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from models.encoder.cooccurrence import (
    DEFAULT_DISTANCE_DECAY,
    DEFAULT_KNN_WEIGHT,
    DEFAULT_LIST_KIND,
    DEFAULT_MAX_NEIGHBOURS,
)
from models.encoder.sequence_tower import (
    EVENT_TYPE_VOCAB,
    GAP_BUCKETS,
    RESIDUAL_IDS_FILE,
    RESIDUALS_FILE,
    ItemResiduals,
    SequenceInputs,
    write_residuals,
)
from models.encoder.sessions import DEFAULT_SESSION_NEIGHBOURS, DEFAULT_SESSION_WEIGHT
from stream.core.errors import ModelError

FloatArray = npt.NDArray[np.float32]
CHECKPOINT = "sequence_tower.pt"
CONFIG_FILE = "sequence_config.json"


@dataclass(frozen=True, slots=True)
class SequenceConfig:
    hidden: int = 256
    layers: int = 1
    heads: int = 4
    max_length: int = 20  # events read per window (amazon histories hold at most 10)
    # 0.2: 0.1 won on valid in round 4 (+0.0016 and +0.0019 NDCG@10 at seeds 13 and 14) but lost on
    # test (tower + prior 0.1023 -> 0.0996), so it did not become the default (models/README.md).
    dropout: float = 0.2
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    temperature: float = 0.05
    # Prior weight in the training logits and at serving (stream.core.prior); 0: none.
    popularity_weight: float = 0.05
    eval_split: str = "test"  # the split whose targets are kept out
    seed: int = 13
    threads: int | None = None
    # A learned residual per item seen in training, added to its text vector on both sides.
    item_residuals: bool = True
    # AdamW weight decay of the residual table (pulls unused directions back to the text vector).
    residual_weight_decay: float = 0.0
    # Item co-occurrence lists exported with the tower (`models.encoder.cooccurrence`), from the
    # training pairs: neighbours kept per item and the kNN term's weight in the served ranking.
    # 0 for either: none (the tower's score alone).
    max_neighbours: int = DEFAULT_MAX_NEIGHBOURS
    knn_weight: float = DEFAULT_KNN_WEIGHT
    # How the lists are built (`models.encoder.cooccurrence.build_neighbours`): "cooccurrence" (the
    # item-kNN baseline's, the default) or "sequential" (what follows each item, pairs weighted
    # knn_distance_decay**(steps - 1); best on valid with knn_weight 0.3, not confirmed on test).
    knn_lists: str = DEFAULT_LIST_KIND
    knn_distance_decay: float = DEFAULT_DISTANCE_DECAY
    # The training sessions exported with the tower (`models.encoder.sessions`, V-SKNN "follow"):
    # the session term's weight in the served ranking (0: none) and the neighbour sessions read.
    session_weight: float = DEFAULT_SESSION_WEIGHT
    session_neighbours: int = DEFAULT_SESSION_NEIGHBOURS


class _Block(nn.Module):
    """Pre-norm self-attention and feed-forward, attention written out (padding as -1e4 logits)
    so the ONNX export is a plain graph."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor, *, newest_only: bool = False) -> torch.Tensor:
        """`newest_only`: only the newest slot queries (the last block: nothing else is read), which
        makes it attention pooling from the newest event at a fraction of the cost."""
        batch, _, hidden = x.shape
        head_dim = hidden // self.heads
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        if newest_only:
            x, q = x[:, -1:], q[:, -1:]

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, t.shape[1], self.heads, head_dim).transpose(1, 2)

        scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(head_dim) + key_bias[:, None, None, :]
        attended = (
            (torch.softmax(scores, dim=-1) @ split(v)).transpose(1, 2).reshape(batch, x.shape[1], hidden)
        )
        x = x + self.drop(self.proj(attended))
        out: torch.Tensor = x + self.drop(self.ffn(self.norm2(x)))
        return out


class ItemResidualTable(nn.Module):
    """A residual per catalogue item, zero at the start; only `warm` items (seen in training) move."""

    def __init__(self, items: int, dim: int, warm: npt.NDArray[np.bool_] | None = None) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(items, dim))
        mask = torch.zeros(items, 1) if warm is None else torch.from_numpy(warm.astype(np.float32))[:, None]
        self.register_buffer("warm", mask)

    def _warm(self) -> torch.Tensor:
        warm: torch.Tensor = self.warm  # type: ignore[assignment]  # a registered buffer
        return warm

    def forward(self, text_vectors: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(text_vectors + self.table * self._warm(), dim=-1)

    def warm_items(self) -> npt.NDArray[np.bool_]:
        """Which catalogue rows have a residual (were seen in training)."""
        warm: npt.NDArray[np.bool_] = self._warm()[:, 0].detach().numpy() > 0
        return warm

    def residuals(self, ids: list[str]) -> ItemResiduals:
        """The warm items' residuals, by id (what the export writes)."""
        rows = np.flatnonzero(self.warm_items())
        vectors = self.table.detach().numpy()[rows].astype(np.float32)
        return ItemResiduals(tuple(ids[row] for row in rows), vectors)


class SequenceTowerModule(nn.Module):
    """(vectors, event_types, gap_buckets, mask) -> L2-normalised user vector in the item space."""

    def __init__(
        self, dim: int, config: SequenceConfig, items: int = 0, warm: npt.NDArray[np.bool_] | None = None
    ) -> None:
        super().__init__()
        # Not part of forward (nor of the ONNX graph): see `item_matrix`.
        self.item_table = ItemResidualTable(items, dim, warm) if config.item_residuals and items else None
        self.dim = dim
        self.max_length = config.max_length
        hidden = config.hidden
        self.inp = nn.Linear(dim, hidden)
        self.types = nn.Embedding(len(EVENT_TYPE_VOCAB) + 1, hidden)
        self.gaps = nn.Embedding(GAP_BUCKETS, hidden)
        self.positions = nn.Embedding(config.max_length, hidden)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            [_Block(hidden, config.heads, config.dropout) for _ in range(config.layers)]
        )
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)
        # Start as `last item`: the learned part is added to the newest item's vector.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, vectors: torch.Tensor, event_types: torch.Tensor, gap_buckets: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        length = vectors.shape[1]
        slots = torch.arange(length, device=vectors.device) + (self.max_length - length)
        x = self.inp(vectors) + self.types(event_types) + self.gaps(gap_buckets) + self.positions(slots)[None]
        x = self.drop(x)
        key_bias = (1.0 - mask) * -1e4
        for n, block in enumerate(self.blocks):
            x = block(x, key_bias, newest_only=n == len(self.blocks) - 1)
        newest = x[:, -1]
        user = self.out(self.norm(newest)) + vectors[:, -1]
        return nn.functional.normalize(user, dim=-1)

    def item_matrix(self, text_vectors: torch.Tensor) -> torch.Tensor:
        """The tower's item vectors from the index's (residuals applied; unchanged without them)."""
        return text_vectors if self.item_table is None else self.item_table(text_vectors)


def tensors(inputs: SequenceInputs, index: npt.NDArray[np.int64] | slice) -> tuple[torch.Tensor, ...]:
    """The rows `index` as tensors, cut to their longest sequence: the slots are right-aligned,
    so all-padding columns on the left change nothing but cost (positions count from the right)."""
    mask = inputs.mask[index]
    width = max(1, int(mask.sum(axis=1).max())) if len(mask) else 1
    return (
        torch.from_numpy(np.ascontiguousarray(inputs.vectors[index][:, -width:])),
        torch.from_numpy(np.ascontiguousarray(inputs.event_types[index][:, -width:])),
        torch.from_numpy(np.ascontiguousarray(inputs.gap_buckets[index][:, -width:])),
        torch.from_numpy(np.ascontiguousarray(mask[:, -width:])),
    )


def item_rows(inputs: SequenceInputs, index: npt.NDArray[np.int64] | slice) -> torch.Tensor:
    """`SequenceInputs.rows` of the rows `index`, cut as `tensors` cuts them (-1: no item)."""
    if inputs.rows is None:
        raise ValueError("these inputs carry no catalogue rows; build them with sequence_features")
    mask = inputs.mask[index]
    width = max(1, int(mask.sum(axis=1).max())) if len(mask) else 1
    return torch.from_numpy(np.ascontiguousarray(inputs.rows[index][:, -width:]))


def with_item_matrix(vectors: torch.Tensor, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Each slot's vector taken from `items` (the tower's item matrix) where it holds an item,
    kept as it is elsewhere (searches, padding): the input side of the residuals, with gradients."""
    known = (rows >= 0)[..., None]
    return torch.where(known, items[rows.clamp(min=0)], vectors)


def tower_vectors(model: SequenceTowerModule, inputs: SequenceInputs, batch_size: int = 1024) -> FloatArray:
    """The trained tower's user vectors (torch, eval mode); rows without events are zero."""
    out = np.zeros((inputs.vectors.shape[0], model.dim), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(out), batch_size):
            index = slice(start, start + batch_size)
            out[index] = model(*tensors(inputs, index)).numpy()
    out[inputs.lengths == 0] = 0.0
    return out


def save_tower(
    model: SequenceTowerModule,
    config: SequenceConfig,
    out_dir: Path,
    *,
    item_model_version: str,
    trained: dict[str, Any] | None = None,
    item_ids: list[str] | None = None,
) -> Path:
    """``sequence_tower.pt`` (state dict) and ``sequence_config.json`` (config, dims, the item
    encoder whose vectors it reads, and `trained`: figures of the training run); with item
    residuals, also the warm items' residuals by id (`item_ids`: the catalogue rows' ids)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    items = 0
    if model.item_table is not None:
        items = int(model.item_table.table.shape[0])
        if item_ids is None or len(item_ids) != items:
            raise ModelError(f"the tower holds {items} item residuals: save it with their {items} item ids")
        write_residuals(out_dir, model.item_table.residuals(item_ids))
    else:
        for name in (RESIDUALS_FILE, RESIDUAL_IDS_FILE):
            (out_dir / name).unlink(missing_ok=True)
    torch.save(model.state_dict(), out_dir / CHECKPOINT)
    meta: dict[str, Any] = {
        "config": asdict(config),
        "dim": model.dim,
        "items": items,
        "item_model_version": item_model_version,
        **(trained or {}),
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out_dir


def load_tower(directory: Path) -> tuple[SequenceTowerModule, SequenceConfig, dict[str, Any]]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ModelError(
            f"{path}: missing; train a tower with `profilestream train DATASET --out {directory}`"
        )
    meta = json.loads(path.read_text(encoding="utf-8"))
    config = SequenceConfig(**meta["config"])
    model = SequenceTowerModule(int(meta["dim"]), config, int(meta.get("items", 0)))
    model.load_state_dict(torch.load(directory / CHECKPOINT, map_location="cpu"))
    model.eval()
    return model, config, meta
