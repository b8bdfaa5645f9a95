"""`profilestream train` (the default recipe): the sequence user tower on the allowed next-item pairs.

The tower (`export.sequence_module.SequenceTowerModule`) reads
`models.encoder.sequence_tower.sequence_features` of the window the stream would hold after a
history (`models.data.amazon.history_window`): per event the item vector the index stores (the
frozen zero-shot item tower's, so new items work from their text alone), the event type, the log2
age bucket and the position from the newest, and outputs a user vector in the item space.

Loss: InfoNCE with the full softmax over the whole catalogue (3,459 items on amazon-office: one
small matrix product per batch), temperature `temperature`, and the popularity prior of
`stream.core.prior` added to the logits (``prior / temperature``), so the tower learns what the
served score ``cosine + prior`` lacks instead of re-learning popularity. Examples:
`training_pairs` of `allowed_sequences` (valid rows and first test histories, never a test
target). AdamW, linear warm-up then linear decay, fixed seeds; a few minutes on a 2-core CPU.

Item residuals (``SequenceConfig.item_residuals``): every item seen in the training pairs (as a
target or in a history) gets a learned vector added to its text vector before normalising, on the
history side and on the scoring side alike (`export.sequence_module.ItemResidualTable`); items not
seen keep their text vector, so new items still work from text alone.

`train_sequence_tower` does the whole recipe: item vectors from the encoder (as `profilestream
index` stores them), training, the checkpoint, and the parity-checked ONNX export into the same
folder, which the worker (`PROFILESTREAM_SEQUENCE_MODEL_DIR`) and `profilestream evaluate --model`
read directly.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from export.sequence_export import export_sequence_tower
from export.sequence_module import (
    SequenceConfig,
    SequenceTowerModule,
    item_rows,
    save_tower,
    tensors,
    with_item_matrix,
)
from models.data.amazon import (
    Dataset,
    allowed_sequences,
    history_window,
    interactions,
    items_with_popularity,
    training_pairs,
)
from models.encoder.cooccurrence import NEIGHBOURS_FILE, ItemNeighbours, build_neighbours, write_neighbours
from models.encoder.onnx_encoder import TextEncoder
from models.encoder.sequence_tower import SequenceInputs, SequenceManifest, sequence_features
from models.encoder.sessions import SESSIONS_FILE, ItemSessions, build_sessions, write_sessions
from models.index.item_index import ItemIndex, build_index, check_encoder
from stream.core.errors import SourceError
from stream.core.prior import popularity_prior
from stream.core.window import WindowConfig

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


@dataclass
class SequenceTrainResult:
    examples: int
    epochs: int
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    threads: int = 1

    def first_last_loss(self) -> tuple[float, float]:
        return (self.losses[0], self.losses[-1]) if self.losses else (math.nan, math.nan)


@dataclass(frozen=True, slots=True)
class TrainingData:
    inputs: SequenceInputs
    targets: npt.NDArray[np.int64]  # catalogue row of each example's target


def training_data(
    dataset: Dataset,
    item_ids: Sequence[str],
    item_vectors: FloatArray,
    config: SequenceConfig,
    window: WindowConfig,
) -> TrainingData:
    """The allowed pairs as tower inputs (targets outside the catalogue are left out)."""
    positions = {item_id: n for n, item_id in enumerate(item_ids)}
    pairs = [
        pair
        for pair in training_pairs(allowed_sequences(dataset, config.eval_split))
        if pair.target in positions and any(item in positions for item in pair.history)
    ]
    if not pairs:
        raise SourceError(f"{dataset.name}: no training pair has a known target and history item")
    windows = [history_window(pair.history, window) for pair in pairs]
    inputs = sequence_features(windows, positions.get, item_vectors, {}, config.max_length)
    targets = np.asarray([positions[pair.target] for pair in pairs], dtype=np.int64)
    return TrainingData(inputs, targets)


def train_tower(
    data: TrainingData,
    item_vectors: FloatArray,
    popularity: FloatArray,
    config: SequenceConfig,
) -> tuple[SequenceTowerModule, SequenceTrainResult]:
    """Train a tower on `data` (full softmax over `item_vectors`, prior of `popularity` in the logits)."""
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    model = SequenceTowerModule(
        item_vectors.shape[1], config, len(item_vectors), warm_items(data, len(item_vectors))
    )
    items = torch.from_numpy(item_vectors)
    prior = torch.from_numpy(popularity_prior(popularity, config.popularity_weight)) / config.temperature
    table = [] if model.item_table is None else list(model.item_table.parameters())
    others = [p for name, p in model.named_parameters() if not name.startswith("item_table.")]
    groups: list[dict[str, object]] = [{"params": others, "weight_decay": config.weight_decay}]
    if table:
        groups.append({"params": table, "weight_decay": config.residual_weight_decay})
    optimiser = torch.optim.AdamW(groups, lr=config.learning_rate)
    n = len(data.targets)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, total // 10)

    def schedule(step: int) -> float:
        # Linear warm-up over a tenth of the steps, then linear decay to zero.
        return min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    generator = np.random.default_rng(config.seed)
    result = SequenceTrainResult(n, config.epochs, total, 0.0, threads=torch.get_num_threads())
    started = time.perf_counter()
    model.train()
    for epoch in range(config.epochs):
        order = generator.permutation(n)
        total_loss = 0.0
        for start in range(0, n, config.batch_size):
            batch = order[start : start + config.batch_size]
            vectors, *rest = tensors(data.inputs, batch)
            matrix = model.item_matrix(items)
            if model.item_table is not None:
                vectors = with_item_matrix(vectors, item_rows(data.inputs, batch), matrix)
            users = model(vectors, *rest)
            logits = users @ matrix.T / config.temperature + prior
            loss = nn.functional.cross_entropy(logits, torch.from_numpy(data.targets[batch]))
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(batch)
        result.losses.append(total_loss / n)
        log.info("sequence tower epoch %d/%d: loss %.4f", epoch + 1, config.epochs, result.losses[-1])
    result.seconds = time.perf_counter() - started
    model.eval()
    return model, result


def warm_items(data: TrainingData, items: int) -> npt.NDArray[np.bool_]:
    """Items the training pairs hold (a target or a history item): those that get a residual."""
    warm = np.zeros(items, dtype=bool)
    warm[data.targets] = True
    if data.inputs.rows is not None:
        rows = data.inputs.rows[data.inputs.rows >= 0]
        warm[rows] = True
    return warm


def tower_item_vectors(model: SequenceTowerModule, item_vectors: FloatArray) -> FloatArray:
    """The trained tower's item vectors (residuals applied), as the stream will rank against them."""
    with torch.no_grad():
        out: FloatArray = model.item_matrix(torch.from_numpy(item_vectors)).numpy()
    return out


def _training_user_items(dataset: Dataset, eval_split: str) -> dict[str, list[str]]:
    """Each user's allowed items of `eval_split`'s protocol (never one of its targets), oldest first."""
    user_items: dict[str, list[str]] = {}
    for user, item in interactions(allowed_sequences(dataset, eval_split)):
        user_items.setdefault(user, []).append(item)
    return user_items


def training_neighbours(dataset: Dataset, item_ids: Sequence[str], config: SequenceConfig) -> ItemNeighbours:
    """Co-occurrence lists from the allowed sequences of `config.eval_split` only (the pairs the
    tower trains on; never one of that split's targets), each user's items oldest first, built as
    `config.knn_lists` says ("cooccurrence", the default: what the item-kNN baseline fits;
    "sequential": what follows each item)."""
    return build_neighbours(
        _training_user_items(dataset, config.eval_split),
        item_ids,
        max_neighbours=config.max_neighbours,
        kind=config.knn_lists,
        distance_decay=config.knn_distance_decay,
    )


def training_sessions(dataset: Dataset, item_ids: Sequence[str], config: SequenceConfig) -> ItemSessions:
    """The session term's stored sessions: the same allowed sequences as the lists, no user ids."""
    return build_sessions(_training_user_items(dataset, config.eval_split), item_ids)


def catalogue_popularity(dataset: Dataset, eval_split: str) -> FloatArray:
    """Allowed-interaction counts per item in items.json order (the popularity baseline's)."""
    return np.asarray(
        [item.popularity for item in items_with_popularity(dataset, eval_split)], dtype=np.float32
    )


@dataclass(frozen=True, slots=True)
class SequenceRecipeResult:
    train: SequenceTrainResult
    manifest: SequenceManifest
    encode_seconds: float  # the catalogue's item vectors
    out_dir: Path


def train_sequence_tower(
    dataset: Dataset,
    encoder: TextEncoder,
    out_dir: Path,
    config: SequenceConfig,
    window: WindowConfig,
    *,
    batch_size: int = 64,
    item_index: ItemIndex | None = None,
) -> SequenceRecipeResult:
    """Item vectors by `encoder` (as the index stores them), training, checkpoint and ONNX export
    into `out_dir`. `item_index`: the same vectors already computed (a `profilestream index` of the
    data set's items by `encoder`), used instead of encoding the catalogue again."""
    started = time.perf_counter()
    if item_index is None:
        index = build_index(dataset.items.values(), encoder, batch_size=batch_size)
    else:
        check_encoder(item_index, encoder.model_version, "the item index given to train")
        index = item_index
    encode_seconds = time.perf_counter() - started
    item_ids = list(index.ids)
    popularity_by_id = {
        item.item_id: item.popularity for item in items_with_popularity(dataset, config.eval_split)
    }
    popularity = np.asarray([popularity_by_id.get(i, 0.0) for i in item_ids], dtype=np.float32)
    data = training_data(dataset, item_ids, index.vectors, config, window)
    model, result = train_tower(data, index.vectors, popularity, config)
    trained = {
        "examples": result.examples,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "losses": [round(x, 4) for x in result.losses],
        "dataset": dataset.name,
        "eval_split": config.eval_split,
    }
    save_tower(
        model, config, out_dir, item_model_version=encoder.model_version, trained=trained, item_ids=item_ids
    )
    if config.knn_weight > 0 and config.max_neighbours > 0:
        write_neighbours(out_dir, training_neighbours(dataset, item_ids, config))
    else:
        (out_dir / NEIGHBOURS_FILE).unlink(missing_ok=True)
    if config.session_weight > 0 and config.session_neighbours > 0:
        write_sessions(out_dir, training_sessions(dataset, item_ids, config))
    else:
        (out_dir / SESSIONS_FILE).unlink(missing_ok=True)
    manifest = export_sequence_tower(out_dir, out_dir)
    return SequenceRecipeResult(result, manifest, encode_seconds, out_dir)
