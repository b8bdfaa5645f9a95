"""Uncertainty and diversity of a full-ranking evaluation (numpy only, seeded).

- `per_row`: each row's HR@K, NDCG@K and reciprocal rank from the target's 0-based rank.
- `bootstrap_intervals`: 95 % percentile bootstrap interval of each metric's mean over rows. Every
  method is resampled with the SAME row indices (one seeded draw per evaluation), so intervals of
  different methods describe the same resamples and `paired_difference` is a paired test.
- `paired_difference`: mean per-row difference of two methods, its 95 % interval and the share of
  resamples in which it is <= 0 (a one-sided bootstrap p-value).
- `diversity`: of each row's top 10, the intra-list similarity (mean pairwise cosine of the item
  vectors), distinct brands (an item without a brand counts as its own), catalogue coverage
  (distinct items in any row's top 10 / catalogue size) and mean popularity rank (1 = the most
  popular item by the allowed-interaction counts; ties share the better rank).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 20_240_917
DIVERSITY_K = 10


def per_row(ranks: IntArray, ks: Sequence[int]) -> dict[str, npt.NDArray[np.float64]]:
    """``hr@k``, ``ndcg@k`` per K and ``mrr`` per row; rank -1 (unknown target) is a miss."""
    found = ranks >= 0
    safe = np.where(found, ranks, 0).astype(np.float64)
    values: dict[str, npt.NDArray[np.float64]] = {}
    for k in ks:
        hit = found & (ranks < k)
        values[f"hr@{k}"] = hit.astype(np.float64)
        values[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(safe + 2.0), 0.0)
    values["mrr"] = np.where(found, 1.0 / (safe + 1.0), 0.0)
    return values


def resample_indices(rows: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> IntArray:
    """(samples, rows) row indices drawn with replacement; one draw serves every method."""
    indices: IntArray = np.random.default_rng(seed).integers(0, rows, size=(samples, rows)).astype(np.intp)
    return indices


def bootstrap_interval(values: npt.NDArray[np.float64], indices: IntArray) -> tuple[float, float]:
    """95 % percentile interval of the mean of `values` over the resamples `indices`."""
    if len(values) == 0:
        return (0.0, 0.0)
    means = values[indices].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_intervals(
    values: Mapping[str, npt.NDArray[np.float64]], indices: IntArray
) -> dict[str, tuple[float, float]]:
    return {name: bootstrap_interval(v, indices) for name, v in values.items()}


@dataclass(frozen=True, slots=True)
class PairedDifference:
    metric: str
    better: str
    baseline: str
    mean: float  # mean over rows of better - baseline
    low: float
    high: float
    p_value: float  # share of resamples with a difference <= 0

    def sentence(self) -> str:
        verdict = "above" if self.low > 0 else ("below" if self.high < 0 else "not distinguishable from")
        return (
            f"Paired bootstrap ({BOOTSTRAP_SAMPLES} resamples of the rows): {self.better} minus "
            f"{self.baseline}, {self.metric} {self.mean:+.4f} (95 % interval {self.low:+.4f} .. "
            f"{self.high:+.4f}, one-sided p {self.p_value:.4f}): {verdict} the baseline."
        )


def paired_difference(
    metric: str,
    better: tuple[str, npt.NDArray[np.float64]],
    baseline: tuple[str, npt.NDArray[np.float64]],
    indices: IntArray,
) -> PairedDifference:
    diff = better[1] - baseline[1]
    means = diff[indices].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedDifference(
        metric,
        better[0],
        baseline[0],
        float(diff.mean()),
        float(low),
        float(high),
        float((means <= 0).mean()),
    )


@dataclass(frozen=True, slots=True)
class Diversity:
    intra_list_similarity: float
    distinct_brands: float
    coverage: float
    mean_popularity_rank: float

    def to_dict(self) -> dict[str, float]:
        return {
            "intra_list_similarity_at_10": round(self.intra_list_similarity, 4),
            "distinct_brands_at_10": round(self.distinct_brands, 3),
            "coverage_at_10": round(self.coverage, 4),
            "mean_popularity_rank_at_10": round(self.mean_popularity_rank, 1),
        }


def popularity_ranks(popularity: FloatArray) -> npt.NDArray[np.float64]:
    """1-based rank of each item by popularity, most popular first; ties share the better rank."""
    counts = np.asarray(popularity, dtype=np.float64)
    higher = np.sort(counts)[::-1]
    # Items strictly more popular than this one, plus one.
    ahead = len(counts) - np.searchsorted(higher[::-1], counts, side="right")
    ranks: npt.NDArray[np.float64] = ahead.astype(np.float64) + 1.0
    return ranks


def diversity(
    top: IntArray,
    item_vectors: FloatArray,
    brand_ids: npt.NDArray[np.int64],
    popularity_rank: npt.NDArray[np.float64],
) -> Diversity:
    """`top`: (rows, k) catalogue rows of each row's top k, best first. `brand_ids`: an integer per
    item, equal for items of the same brand (unique for items without one)."""
    if top.size == 0:
        return Diversity(0.0, 0.0, 0.0, 0.0)
    k = top.shape[1]
    vectors = item_vectors[top].astype(np.float64)  # rows, k, dim
    gram = vectors @ vectors.transpose(0, 2, 1)
    off_diagonal = (gram.sum(axis=(1, 2)) - np.trace(gram, axis1=1, axis2=2)) / (k * (k - 1))
    brands = np.sort(brand_ids[top], axis=1)
    distinct = 1 + (np.diff(brands, axis=1) != 0).sum(axis=1)
    return Diversity(
        intra_list_similarity=float(off_diagonal.mean()),
        distinct_brands=float(distinct.mean()),
        coverage=float(len(np.unique(top)) / len(item_vectors)),
        mean_popularity_rank=float(popularity_rank[top].mean()),
    )


def brand_ids(brands: Sequence[str | None]) -> npt.NDArray[np.int64]:
    """An id per item: shared by items whose brand is the same (case and spaces ignored)."""
    known: dict[str, int] = {}
    ids = np.empty(len(brands), dtype=np.int64)
    for n, brand in enumerate(brands):
        key = (brand or "").strip().lower()
        ids[n] = known.setdefault(key, len(known)) if key else -(n + 1)
    return ids


def top_rows(scores: FloatArray, k: int = DIVERSITY_K) -> IntArray:
    """Each row's k best columns, best first; equal scores by column, lower first (as the ranks)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    result: IntArray = np.take_along_axis(part, order, axis=1).astype(np.intp)
    return result
