"""Exact cosine top-K over the item matrix for a batch of users (pure numpy, no I/O).

Vectors are L2-normalised, so cosine = dot product: one matrix product scores the whole batch.
Candidates come from `argpartition` (linear time) and only those are sorted; ties are broken by
item index so that the same inputs always give the same ranking.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from numpy.typing import NDArray

Ranked = list[tuple[str, float]]


def score_matrix(
    users: NDArray[np.float32], items: NDArray[np.float32], in_stock: NDArray[np.bool_] | None = None
) -> NDArray[np.float32]:
    """(n_users, n_items) cosine scores; out-of-stock items score -inf."""
    if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
        raise ValueError(f"users {users.shape} and items {items.shape} must be 2-D with the same width")
    scores: NDArray[np.float32] = users @ items.T
    if in_stock is not None:
        if in_stock.shape != (items.shape[0],):
            raise ValueError(f"in_stock has shape {in_stock.shape}, expected ({items.shape[0]},)")
        # One broadcast add of 0/-inf is cheaper than boolean column indexing on a wide matrix.
        penalty = np.where(in_stock, np.float32(0.0), np.float32(-np.inf)).astype(np.float32)
        scores += penalty
    return scores


def top_indices(scores: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """Indices of the k best finite scores of one row, best first, ties by ascending index."""
    n = scores.shape[0]
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.intp)
    if k < n:
        part = np.argpartition(scores, n - k)[n - k :]
        threshold = scores[part].min()
        # argpartition picks arbitrarily among scores equal to the threshold; take all of them
        # and let the sort below decide by index.
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(n)
    candidates = candidates[np.isfinite(scores[candidates])]
    order = np.lexsort((candidates, -scores[candidates]))
    selected: NDArray[np.intp] = candidates[order[:k]].astype(np.intp)
    return selected


def top_k(
    users: NDArray[np.float32],
    items: NDArray[np.float32],
    item_ids: Sequence[str],
    k: int,
    *,
    in_stock: NDArray[np.bool_] | None = None,
    exclude: Sequence[Collection[int]] | None = None,
) -> list[Ranked]:
    """Per user, up to k (item_id, score) pairs, best first.

    `exclude[u]` holds item indices user u must not get (e.g. already bought); out-of-stock items
    never appear; a user gets fewer than k pairs when fewer candidates remain.
    """
    if len(item_ids) != items.shape[0]:
        raise ValueError(f"{len(item_ids)} item ids for {items.shape[0]} item vectors")
    if exclude is not None and len(exclude) != users.shape[0]:
        raise ValueError(f"{len(exclude)} exclusion sets for {users.shape[0]} users")
    scores = score_matrix(users, items, in_stock)
    results: list[Ranked] = []
    for row in range(scores.shape[0]):
        row_scores = scores[row]
        if exclude is not None and exclude[row]:
            row_scores[np.fromiter(exclude[row], dtype=np.intp)] = -np.inf
        chosen = top_indices(row_scores, k)
        results.append([(item_ids[i], float(row_scores[i])) for i in chosen])
    return results
