"""The popularity prior: recommendation score = cosine + weight * ln(1 + popularity).

Why: the towers are trained with InfoNCE over in-batch negatives, and a batch holds items in
proportion to how often they are bought, so the learned score s(u, i) / temperature estimates
log p(i | u) - log p(i) (Yi et al., "Sampling-bias-corrected neural modeling", RecSys 2019). Adding
``temperature * log p(i)`` back ranks by log p(i | u): the "logQ correction", applied at serving
time. With the training temperature, 0.05 (also all-MiniLM-L6-v2's own: scale 20), that is the
default weight; ln(1 + count) stands in for log p(i) up to a constant, which ranking ignores.

How, without touching the exact top-K: one extra coordinate. Items get ``prior_i`` and user
vectors a 1 (queries a 0), so the plain dot product of the widened vectors is cosine + prior for
recommendations and the bare cosine for search, and `models.index.topk`'s error bounds, int8 prefilter
included, hold for the widened vectors as for any others.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def popularity_prior(popularity: npt.NDArray[np.floating], weight: float) -> FloatArray:
    """``weight * ln(1 + popularity)`` per item (0 for every item when the weight is 0)."""
    if weight < 0:
        raise ValueError(f"popularity weight {weight} must be >= 0")
    counts = np.asarray(popularity, dtype=np.float64)
    if counts.size and (not np.isfinite(counts).all() or counts.min() < 0):
        raise ValueError("popularity counts must be finite and >= 0")
    prior: FloatArray = (weight * np.log1p(counts)).astype(np.float32)
    return prior


def has_prior(prior: FloatArray) -> bool:
    return bool(prior.size) and bool(np.any(prior != 0))


def ranking_matrix(vectors: FloatArray, prior: FloatArray) -> FloatArray:
    """The item matrix the recommender ranks: the vectors, widened by the prior column if any."""
    if len(prior) != len(vectors):
        raise ValueError(f"{len(prior)} prior values for {len(vectors)} item vectors")
    if not has_prior(prior):
        return vectors
    widened: FloatArray = np.hstack([vectors, prior[:, None]]).astype(np.float32)
    return widened


def widen_users(users: FloatArray, width: int, *, with_prior: bool = True) -> FloatArray:
    """User (or query) vectors fitted to a ranking matrix of `width` columns.

    Unchanged when the matrix is not widened; else a 1 is appended (the prior counts) or, with
    `with_prior` false, a 0 (bare cosine, as a search query needs).
    """
    if users.shape[1] == width:
        return users
    if users.shape[1] + 1 != width:
        raise ValueError(
            f"user vectors of width {users.shape[1]} do not fit a ranking matrix of width {width}"
        )
    column = np.full((users.shape[0], 1), 1.0 if with_prior else 0.0, dtype=np.float32)
    widened: FloatArray = np.hstack([users.astype(np.float32, copy=False), column])
    return widened


# Forward decay: adding w * 2^((t - origin) / half_life) instead of decaying all counts keeps the
# popular set a plain ZINCRBY; ranks are unchanged by the common factor. The origin (2020-01-01)
# and a half-life of at least a day keep the factor finite for decades.
POPULARITY_ORIGIN_MS = 1_577_836_800_000


def popularity_increment(weight: float, ts_ms: int, half_life_ms: int) -> float:
    return weight * math.pow(2.0, (ts_ms - POPULARITY_ORIGIN_MS) / half_life_ms)
