"""Item co-occurrence neighbour lists (item-kNN) that a sequence tower carries to the stream.

Two constructions, both strongest first and at most `max_neighbours` per item:

- ``sequential`` (`profilestream train --knn-lists sequential`): ordered co-occurrence, "bought
  i, then j": j follows i in the same user's allowed sequence at distance d >= 1, adding
  ``distance_decay**(d - 1)`` (the largest per user and pair), normalised as the cosine,
  ``c(i -> j) / sqrt(n(i) n(j))`` with n the users holding the item. Only what FOLLOWS an item is
  its neighbour, which is what a next-item ranking needs.
- ``cooccurrence`` (the default): the item-kNN baseline's
  (`models.evaluation.baselines.fit_item_knn`): items in the same user's sequence at any distance
  and in either order, ``c(i, j) / sqrt(n(i) n(j))`` over distinct items per user.

On the valid rows of amazon-office the sequential lists at distance decay 0.7 and fusion weight
0.3 beat the baseline's at its best weight by +0.0055 NDCG@10, but the recipe with them did not
beat round 3's on the test rows (models/README.md, "Round 4"), so the baseline's stay the default.
`profilestream train` builds them from the training pairs only (never a target of the evaluated
split) and exports them beside the tower (``item_neighbours.npz``, listed with its sha256 in the
manifest, with the fusion weight chosen on the valid rows). The file format and the serving term
below are the same for both: a construction changes only what the lists hold.

At serving, `CatalogueNeighbours.scores` turns a window into the kNN term the ranking adds to the
tower's score: each of the window's newest `MAX_EVENTS` item events, newest first, adds
``decay**age x similarity`` to each of its neighbours (the baseline's recency weighting). The
stream's `ProfileComputer` is the only caller at serving and evaluation time, so the worker, the
offline recomputation and `profilestream evaluate` rank with the same fused score.

Pure numpy: the worker imports this module.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.encoder.manifest import listed_file, sha256_file
from stream.core.errors import ModelError

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

NEIGHBOURS_FILE = "item_neighbours.npz"
# Neighbours kept per item: the offline fusion was measured with the baseline's 200; most items of
# amazon-office have far fewer, and the tail beyond 100 adds per-user work, not accuracy.
DEFAULT_MAX_NEIGHBOURS = 100
# Weight of the kNN term added to the tower's score (cosine plus prior), chosen on the valid rows
# of amazon-office (models/README.md, "Round 3"; 0.3 for the sequential lists, "Round 4");
# `profilestream train --knn-weight` overrides it.
DEFAULT_KNN_WEIGHT = 0.15
# The lists' construction (`build_neighbours`): the baseline's by default (round 4: the sequential
# ones won on valid, not on test).
LIST_KINDS = ("sequential", "cooccurrence")
DEFAULT_LIST_KIND = "cooccurrence"
# Sequential lists: weight of a pair d steps apart is DISTANCE_DECAY**(d - 1) (valid: 0.5 and 0.7
# within 0.0003 NDCG@10, 0.85 and adjacent-only pairs lower).
DEFAULT_DISTANCE_DECAY = 0.7
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
        # Concatenations and one grouped sum instead of a Python step per neighbour; the decays are
        # Python's `decay**age`, repeated per neighbour, so the products are those of a loop.
        neighbours = np.concatenate([self.rows[row] for row in history])
        decays = np.repeat(
            np.asarray([self.decay**age for age in range(len(history))], dtype=np.float64),
            [len(self.rows[row]) for row in history],
        )
        contributions = np.concatenate([self.weights[row] for row in history]).astype(np.float64) * decays
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


def sequential_cooccurrence(
    user_items: Mapping[str, Sequence[str]], rows: Mapping[str, int], distance_decay: float
) -> defaultdict[int, list[tuple[float, int]]]:
    """Ordered co-occurrence: per row i, ``(similarity, j)`` for each j that follows i in some
    user's sequence (oldest first), similarity = sum over users of ``distance_decay**(d - 1)`` for
    the closest such pair, d the steps from i to j, over sqrt(n(i) n(j)), n the users holding the
    item. Repeats of the same item are not pairs; items outside `rows` are ignored."""
    if not 0.0 <= distance_decay <= 1.0:
        raise ValueError(f"distance_decay must be in [0, 1], got {distance_decay}")
    counts: Counter[int] = Counter()
    pairs: defaultdict[tuple[int, int], float] = defaultdict(float)
    for items in user_items.values():
        sequence = [rows[item] for item in items if item in rows]
        counts.update(set(sequence))
        closest: dict[tuple[int, int], float] = {}
        for a, first in enumerate(sequence):
            for d, second in enumerate(sequence[a + 1 :], start=1):
                if second != first:
                    weight = distance_decay ** (d - 1)
                    if weight > closest.get((first, second), 0.0):
                        closest[(first, second)] = weight
        for pair, weight in closest.items():
            pairs[pair] += weight
    by_row: defaultdict[int, list[tuple[float, int]]] = defaultdict(list)
    for (first, second), together in pairs.items():
        if together > 0.0:
            by_row[first].append((together / math.sqrt(counts[first] * counts[second]), second))
    return by_row


def build_neighbours(
    user_items: Mapping[str, Sequence[str]],
    ids: Sequence[str],
    *,
    max_neighbours: int = DEFAULT_MAX_NEIGHBOURS,
    kind: str = DEFAULT_LIST_KIND,
    distance_decay: float = DEFAULT_DISTANCE_DECAY,
) -> ItemNeighbours:
    """Neighbour lists over the items in `ids` (items outside it are ignored), from each user's
    items oldest first (training data only: what the lists hold is what serving will reward).
    `kind`: "cooccurrence" (the item-kNN baseline's lists) or "sequential" (what follows each
    item, pairs weighted `distance_decay`**(steps - 1)); the module docstring has both."""
    if max_neighbours < 1:
        raise ValueError(f"max_neighbours must be at least 1, got {max_neighbours}")
    if kind not in LIST_KINDS:
        raise ValueError(f"kind must be one of {', '.join(LIST_KINDS)}, got {kind!r}")
    position = {item_id: n for n, item_id in enumerate(ids)}
    if kind == "sequential":
        by_row = sequential_cooccurrence(user_items, position, distance_decay)
    else:
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
    return NEIGHBOURS_FILE, sha256_file(path)


def read_neighbours(directory: Path, file_name: str, digest: str) -> ItemNeighbours:
    """The neighbour lists listed in a manifest, checked against its sha256 and their shapes."""
    return load_neighbours(listed_file(directory, file_name, NEIGHBOURS_FILE, digest))


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
