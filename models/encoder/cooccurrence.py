"""Item co-occurrence neighbour lists (item-kNN) that a sequence tower carries to the stream.

The same construction as the item-kNN baseline (`models.evaluation.baselines.fit_item_knn`):
items that occurred in the same user's allowed training sequence are neighbours, with the cosine
similarity ``c(i, j) / sqrt(n(i) n(j))`` over distinct items per user, strongest first, at most
`max_neighbours` per item. `profilestream train` builds them from the training pairs only (never a
target of the evaluated split) and exports them beside the tower (``item_neighbours.npz``, listed
with its sha256 in the manifest, with the fusion weight chosen on the valid rows).

At serving, `CatalogueNeighbours.scores` turns a window into the kNN term the ranking adds to the
tower's score: each of the window's newest `MAX_EVENTS` item events, newest first, adds
``decay**age x similarity`` to each of its neighbours (the baseline's recency weighting). The
stream's `ProfileComputer` is the only caller at serving and evaluation time, so the worker, the
offline recomputation and `profilestream evaluate` rank with the same fused score.

Pure numpy: the worker imports this module.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stream.core.errors import ModelError

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

NEIGHBOURS_FILE = "item_neighbours.npz"
# Neighbours kept per item: the offline fusion was measured with the baseline's 200; most items of
# amazon-office have far fewer, and the tail beyond 100 adds per-user work, not accuracy.
DEFAULT_MAX_NEIGHBOURS = 100
# Weight of the kNN term added to the tower's score (cosine plus prior), chosen on the valid rows
# of amazon-office (models/README.md, "Round 3"); `profilestream train --knn-weight` overrides it.
DEFAULT_KNN_WEIGHT = 0.15
# Recency weighting of the window's items (the item-kNN baseline's RECENCY_DECAY).
DEFAULT_DECAY = 0.9
# Item events of a window that contribute (the window holds at most 50 by default): bounds the
# per-user work at MAX_EVENTS x max_neighbours additions.
MAX_EVENTS = 50


@dataclass(frozen=True)
class ItemNeighbours:
    """Neighbour lists by item id, in compressed rows: item ``ids[n]``'s neighbours are
    ``ids[indices[indptr[n]:indptr[n + 1]]]`` with `weights` (cosine similarities, strongest first)."""

    ids: tuple[str, ...]
    indptr: IntArray  # (len(ids) + 1,)
    indices: IntArray  # positions into `ids`
    weights: FloatArray

    def neighbours_of(self, item_id: str) -> list[tuple[str, float]]:
        n = self.ids.index(item_id)
        span = slice(int(self.indptr[n]), int(self.indptr[n + 1]))
        return [
            (self.ids[int(j)], float(w)) for j, w in zip(self.indices[span], self.weights[span], strict=True)
        ]

    def for_catalogue(self, catalogue_ids: Sequence[str], decay: float, weight: float) -> CatalogueNeighbours:
        """The lists in a catalogue's row numbers (neighbours the catalogue lacks are dropped;
        catalogue items without a list get none, i.e. new items only get the tower's score)."""
        rows = {item_id: row for row, item_id in enumerate(catalogue_ids)}
        mapped = np.asarray([rows.get(item_id, -1) for item_id in self.ids], dtype=np.int64)
        neighbour_rows: list[IntArray] = [np.empty(0, np.int64)] * len(catalogue_ids)
        neighbour_weights: list[FloatArray] = [np.empty(0, np.float32)] * len(catalogue_ids)
        for n, row in enumerate(mapped.tolist()):
            if row < 0:
                continue
            span = slice(int(self.indptr[n]), int(self.indptr[n + 1]))
            targets = mapped[self.indices[span]]
            keep = targets >= 0
            neighbour_rows[row] = targets[keep]
            neighbour_weights[row] = self.weights[span][keep]
        return CatalogueNeighbours(tuple(neighbour_rows), tuple(neighbour_weights), decay, weight)


@dataclass(frozen=True)
class CatalogueNeighbours:
    """Neighbour lists in catalogue rows, ready to score windows; the ranking adds
    ``fusion_weight x scores(...)`` to the tower's score (cosine plus prior)."""

    rows: tuple[IntArray, ...]
    weights: tuple[FloatArray, ...]
    decay: float
    fusion_weight: float

    def scores(self, history_newest_first: Sequence[int]) -> tuple[IntArray, FloatArray]:
        """The kNN term of a history (catalogue rows, newest first, at most `MAX_EVENTS` read):
        the rows it is non-zero for (ascending) and their values."""
        history = list(history_newest_first[:MAX_EVENTS])
        if not history:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        # One concatenation and one grouped sum instead of a Python step per neighbour.
        neighbours = np.concatenate([self.rows[row] for row in history])
        contributions = np.concatenate(
            [self.weights[row].astype(np.float64) * self.decay**age for age, row in enumerate(history)]
        )
        rows, inverse = np.unique(neighbours, return_inverse=True)
        values = np.bincount(inverse, weights=contributions, minlength=len(rows)).astype(np.float32)
        return rows.astype(np.int64), values


def cooccurrence(
    user_items: Mapping[str, Iterable[str]], rows: Mapping[str, int]
) -> tuple[Counter[int], defaultdict[int, list[tuple[float, int]]]]:
    """Item co-occurrence within each user's distinct items (any distance), cosine-normalised.

    Returns how many users hold each row, and per row its ``(similarity, other_row)`` pairs with
    similarity = together / sqrt(count_a x count_b). Items outside `rows` are ignored. Shared by
    the served lists (`build_neighbours`) and the item-kNN baseline (`models.evaluation.baselines`).
    """
    counts: Counter[int] = Counter()
    pairs: Counter[tuple[int, int]] = Counter()
    for items in user_items.values():
        distinct = sorted({rows[item] for item in items if item in rows})
        counts.update(distinct)
        for a, first in enumerate(distinct):
            for second in distinct[a + 1 :]:
                pairs[(first, second)] += 1
    by_row: defaultdict[int, list[tuple[float, int]]] = defaultdict(list)
    for (first, second), together in pairs.items():
        similarity = together / math.sqrt(counts[first] * counts[second])
        by_row[first].append((similarity, second))
        by_row[second].append((similarity, first))
    return counts, by_row


def build_neighbours(
    user_items: Mapping[str, Iterable[str]],
    ids: Sequence[str],
    *,
    max_neighbours: int = DEFAULT_MAX_NEIGHBOURS,
) -> ItemNeighbours:
    """Co-occurrence neighbour lists over the items in `ids` (items outside it are ignored), from
    each user's items (training data only: what the lists hold is what serving will reward)."""
    if max_neighbours < 1:
        raise ValueError(f"max_neighbours must be at least 1, got {max_neighbours}")
    position = {item_id: n for n, item_id in enumerate(ids)}
    _, by_row = cooccurrence(user_items, position)
    indptr = [0]
    indices: list[int] = []
    weights: list[float] = []
    for row in range(len(ids)):
        # Strongest first, then lowest position: deterministic whatever the dict order.
        best = sorted(by_row.get(row, []), key=lambda pair: (-pair[0], pair[1]))[:max_neighbours]
        indices.extend(r for _, r in best)
        weights.extend(s for s, _ in best)
        indptr.append(len(indices))
    return ItemNeighbours(
        tuple(ids),
        np.asarray(indptr, dtype=np.int64),
        np.asarray(indices, dtype=np.int64),
        np.asarray(weights, dtype=np.float32),
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_neighbours(directory: Path, neighbours: ItemNeighbours) -> tuple[str, str]:
    """Write ``item_neighbours.npz`` into `directory`; returns (file name, sha256)."""
    path = directory / NEIGHBOURS_FILE
    with path.open("wb") as handle:
        np.savez(
            handle,
            ids=np.asarray(neighbours.ids, dtype=np.str_),
            indptr=neighbours.indptr,
            indices=neighbours.indices,
            weights=neighbours.weights,
        )
    return NEIGHBOURS_FILE, _digest(path)


def read_neighbours(directory: Path, file_name: str, digest: str) -> ItemNeighbours:
    """The neighbour lists listed in a manifest, checked against its sha256 and their shapes."""
    path = directory / file_name
    if file_name != NEIGHBOURS_FILE or not path.is_file():
        raise ModelError(f"{path}: missing (listed in the tower's manifest); re-export the tower")
    found = _digest(path)
    if found != digest:
        raise ModelError(
            f"{path}: sha256 {found[:12]} does not match the manifest's {digest[:12]}; the file is "
            "corrupt or was replaced, re-export the tower"
        )
    return load_neighbours(path)


def load_neighbours(path: Path) -> ItemNeighbours:
    """``item_neighbours.npz`` as written by `write_neighbours`, its offsets and rows checked."""
    try:
        with np.load(path, allow_pickle=False) as data:
            ids = tuple(str(i) for i in data["ids"].tolist())
            indptr = data["indptr"].astype(np.int64)
            indices = data["indices"].astype(np.int64)
            weights = data["weights"].astype(np.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}: neighbour lists unreadable ({exc}); re-export the tower") from exc
    consistent = (
        indptr.shape == (len(ids) + 1,)
        and indices.shape == weights.shape
        and (len(indptr) == 0 or (indptr[0] == 0 and indptr[-1] == len(indices)))
        and bool(np.all(np.diff(indptr) >= 0))
        and (len(indices) == 0 or (int(indices.min()) >= 0 and int(indices.max()) < len(ids)))
    )
    if not consistent:
        raise ModelError(
            f"{path}: neighbour lists are inconsistent (offsets or rows out of range); re-export"
        )
    return ItemNeighbours(ids, indptr, indices, weights)
