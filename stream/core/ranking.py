"""Re-ranking and explanations on top of exact top-K: MMR diversity and "because you ..." reasons.

Pure numpy; vectors are L2-normalised, so a dot product is a cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stream.core.events import EventType

FloatArray = npt.NDArray[np.float32]

_VERBS = {
    EventType.VIEW: "viewed",
    EventType.CLICK: "clicked",
    EventType.ADD_TO_CART: "added to cart",
    EventType.PURCHASE: "bought",
    EventType.SEARCH: "searched",
}


@dataclass(frozen=True, slots=True)
class Anchor:
    """A window event a recommendation can be explained by."""

    event_id: str
    type: EventType
    label: str  # the item's title or the query

    @property
    def reason(self) -> str:
        verb = _VERBS.get(self.type, "interacted with")
        shown = f"'{self.label}'" if self.type is EventType.SEARCH else self.label
        return f"because you {verb} {shown}"


def mmr_order(relevance: FloatArray, vectors: FloatArray, k: int, lambda_: float) -> list[int]:
    """Maximal marginal relevance: positions of `k` candidates trading relevance for novelty.

    lambda_ = 1 keeps the relevance order; lower values penalise candidates similar to those
    already chosen. Ties go to the earlier candidate, so the order is deterministic.
    """
    n = len(relevance)
    k = min(k, n)
    if k == 0:
        return []
    if lambda_ >= 1.0:
        return list(np.argsort(-relevance, kind="stable")[:k])
    chosen: list[int] = []
    max_sim = np.full(n, -np.inf, dtype=np.float64)
    available = np.ones(n, dtype=bool)
    for _ in range(k):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        gain = lambda_ * relevance.astype(np.float64) - (1.0 - lambda_) * penalty
        gain[~available] = -np.inf
        best = int(np.argmax(gain))
        chosen.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, vectors @ vectors[best])
    return chosen


def nearest_anchors(recommended: FloatArray, anchor_vectors: FloatArray) -> list[int] | None:
    """For each recommended item vector (n x d), the position of the most similar anchor vector
    (m x d; ties go to the earlier anchor); None without anchors or recommendations."""
    if len(anchor_vectors) == 0 or len(recommended) == 0:
        return None
    best: list[int] = np.argmax(recommended @ anchor_vectors.T, axis=1).tolist()
    return best


def explain(
    recommended: FloatArray, anchor_vectors: FloatArray, anchors: Sequence[Anchor]
) -> list[Anchor | None]:
    """For each recommended item vector, the anchor most similar to it (None without anchors)."""
    nearest = nearest_anchors(recommended, anchor_vectors) if len(anchors) else None
    if nearest is None:
        return [None] * len(recommended)
    return [anchors[i] for i in nearest]
