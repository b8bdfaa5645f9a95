"""Non-neural next-item baselines, fitted only on what `models.data.amazon.allowed_sequences` allows.

- Popularity: how often each item occurs among the allowed interactions.
- Item co-occurrence item-kNN: items that occurred in the same user's allowed sequence are
  neighbours, cosine-normalised (``c(i, j) / sqrt(n(i) n(j))``); a history scores each item by the
  recency-weighted sum of its neighbour similarities. Both break ties by popularity, so an item no
  history item co-occurred with still has a defined place (the whole catalogue is ranked).

Pure numpy; neighbour lists instead of a dense item-by-item matrix, so a catalogue of 100k items
costs memory in proportion to the pairs seen, not to the square of its size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.encoder.cooccurrence import cooccurrence

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]

# Keep the strongest neighbours only: the tail adds noise and memory, not accuracy.
MAX_NEIGHBOURS = 200
# Newest history item first; each step back weighs this much less (a 10-item history keeps
# about a third of the weight at its oldest end).
RECENCY_DECAY = 0.9
# Popularity only breaks ties: a full neighbour similarity is orders of magnitude larger.
TIE_BREAK = 1e-6


def popularity_scores(
    interactions: Sequence[tuple[str, str]], rows: Mapping[str, int], size: int
) -> FloatArray:
    """Interaction counts per catalogue row (items outside the catalogue are ignored)."""
    scores = np.zeros(size, dtype=np.float32)
    for _, item in interactions:
        row = rows.get(item)
        if row is not None:
            scores[row] += 1.0
    return scores


@dataclass(frozen=True, slots=True)
class ItemKnn:
    """Per catalogue row: neighbour rows and their similarities (strongest first)."""

    neighbours: tuple[IntArray, ...]
    similarities: tuple[FloatArray, ...]
    popularity: FloatArray  # normalised to [0, 1], the tie-breaker
    decay: float = RECENCY_DECAY

    def scores(self, history: Sequence[int]) -> FloatArray:
        """Scores of every catalogue row for a history of catalogue rows (oldest first)."""
        scores = self.popularity * np.float32(TIE_BREAK)
        for age, row in enumerate(reversed(history)):
            weight = np.float32(self.decay**age)
            scores[self.neighbours[row]] += weight * self.similarities[row]
        return scores


def fit_item_knn(
    user_items: Mapping[str, Sequence[str]],
    rows: Mapping[str, int],
    size: int,
    *,
    max_neighbours: int = MAX_NEIGHBOURS,
    decay: float = RECENCY_DECAY,
) -> ItemKnn:
    """Co-occurrence within each user's allowed items (distinct items, any distance)."""
    counts, by_row = cooccurrence(user_items, rows)
    neighbours: list[IntArray] = []
    similarities: list[FloatArray] = []
    for row in range(size):
        # Strongest first, then lowest row: deterministic whatever the dict order.
        best = sorted(by_row.get(row, []), key=lambda pair: (-pair[0], pair[1]))[:max_neighbours]
        neighbours.append(np.asarray([r for _, r in best], dtype=np.intp))
        similarities.append(np.asarray([s for s, _ in best], dtype=np.float32))
    popularity = np.zeros(size, dtype=np.float32)
    for row, count in counts.items():
        popularity[row] = count
    top = float(popularity.max()) if size else 0.0
    return ItemKnn(tuple(neighbours), tuple(similarities), popularity / (top or 1.0), decay)
