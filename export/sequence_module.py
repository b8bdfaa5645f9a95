"""The sequence user tower as a torch module, and its checkpoint folder (training and export share it).

`SequenceTowerModule` reads `models.encoder.sequence_tower.SequenceInputs` (per event: the item
or query vector, event type, log2 age bucket; right-aligned, newest last) through a small pre-norm
transformer, bidirectional over the window (at serving time the whole window is known). Its output
is the newest slot's state projected to the item space PLUS the newest event's own vector,
L2-normalised; the projection starts at zero, so an untrained tower is exactly `last item`, the
strongest zero-shot mode, and training learns what to move away from it. Attention is written out
(padding as -1e4 logits) so the ONNX export is a plain graph.

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

from models.encoder.sequence_tower import EVENT_TYPE_VOCAB, GAP_BUCKETS, SequenceInputs
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


class SequenceTowerModule(nn.Module):
    """(vectors, event_types, gap_buckets, mask) -> L2-normalised user vector in the item space."""

    def __init__(self, dim: int, config: SequenceConfig) -> None:
        super().__init__()
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
) -> Path:
    """``sequence_tower.pt`` (state dict) and ``sequence_config.json`` (config, dims, the item
    encoder whose vectors it reads, and `trained`: figures of the training run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / CHECKPOINT)
    meta: dict[str, Any] = {
        "config": asdict(config),
        "dim": model.dim,
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
    model = SequenceTowerModule(int(meta["dim"]), config)
    model.load_state_dict(torch.load(directory / CHECKPOINT, map_location="cpu"))
    model.eval()
    return model, config, meta
