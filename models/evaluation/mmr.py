"""The MMR weight against accuracy and diversity: the stream's own re-ranking, swept over lambda.

For a method's user vectors and the score the stream serves (cosine plus the popularity prior),
each row's pool is its best ``top_k x MMR_POOL_FACTOR`` items (what `ProfileComputer` hands to
MMR), and `stream.core.ranking.mmr_order` picks ``top_k`` of them with the tower's item vectors,
as the worker does. The target's place in that list gives HR@10, NDCG@10 and MRR@top_k (a target
outside the list is a miss), and the lists' first 10 the diversity of `stats.diversity`. One point
per lambda; `plot_sweep` draws NDCG@10 against intra-list similarity (the accuracy-against-
diversity curve from which the MMR weight is chosen, on the valid rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.evaluation import report as report_files
from models.evaluation import stats
from stream.core.ranking import mmr_order
from stream.profiles.computer import MMR_POOL_FACTOR

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]

MMR_LAMBDAS: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.3)
SCORE_CHUNK = 512


@dataclass(frozen=True, slots=True)
class MmrPoint:
    mmr_lambda: float
    hr_at_10: float
    ndcg_at_10: float
    mrr: float  # MRR over the top_k list (a target outside it counts 0)
    diversity: stats.Diversity

    def to_dict(self) -> dict[str, Any]:
        return {
            "mmr_lambda": self.mmr_lambda,
            "hr_at_10": self.hr_at_10,
            "ndcg_at_10": self.ndcg_at_10,
            "mrr": self.mrr,
            **self.diversity.to_dict(),
        }


def mmr_sweep(
    user_vectors: FloatArray,
    item_matrix: FloatArray,
    targets: IntArray,
    *,
    prior: FloatArray | None,
    diversity_vectors: FloatArray,
    brand_ids: npt.NDArray[np.int64],
    popularity_rank: npt.NDArray[np.float64],
    lambdas: Sequence[float] = MMR_LAMBDAS,
    top_k: int = 20,
) -> list[MmrPoint]:
    """One `MmrPoint` per lambda for these rows (rows of `user_vectors`; all-zero rows are ranked
    by the prior alone, as the evaluation's fallback)."""
    pool = min(top_k * MMR_POOL_FACTOR, len(item_matrix))
    lists = {lam: np.empty((len(targets), min(top_k, pool)), dtype=np.intp) for lam in lambdas}
    for start in range(0, len(targets), SCORE_CHUNK):
        scores = user_vectors[start : start + SCORE_CHUNK] @ item_matrix.T
        if prior is not None:
            scores += prior
        candidates = stats.top_rows(scores, pool)
        for offset, rows in enumerate(candidates):
            relevance = scores[offset, rows]
            vectors = item_matrix[rows]
            for lam in lambdas:
                lists[lam][start + offset] = rows[mmr_order(relevance, vectors, top_k, lam)]
    points = []
    for lam in lambdas:
        chosen = lists[lam]
        hit = chosen == targets[:, None]
        ranks = np.where(hit.any(axis=1), hit.argmax(axis=1), -1).astype(np.intp)
        values = stats.per_row(ranks, (10,))
        points.append(
            MmrPoint(
                lam,
                float(values["hr@10"].mean()),
                float(values["ndcg@10"].mean()),
                float(values["mrr"].mean()),
                stats.diversity(
                    chosen[:, : stats.DIVERSITY_K], diversity_vectors, brand_ids, popularity_rank
                ),
            )
        )
    return points


def sweep_table(label: str, points: Sequence[MmrPoint]) -> list[str]:
    """Markdown rows, one per lambda."""
    return [
        f"| {label} | {p.mmr_lambda:g} | {p.hr_at_10:.4f} | {p.ndcg_at_10:.4f} | {p.mrr:.4f} | "
        f"{p.diversity.intra_list_similarity:.3f} | {p.diversity.distinct_brands:.2f} | "
        f"{p.diversity.coverage:.3f} | {p.diversity.mean_popularity_rank:.0f} |"
        for p in points
    ]


SWEEP_TITLES = (
    "method",
    "MMR lambda",
    "HR@10",
    "NDCG@10",
    "MRR@20",
    "ILS@10",
    "brands@10",
    "coverage@10",
    "pop. rank@10",
)


def plot_sweep(sweeps: Sequence[tuple[str, Sequence[MmrPoint]]], path: Path, title: str) -> None:
    """NDCG@10 against intra-list similarity per method, each point labelled with its lambda."""
    with report_files.saved_figure(path, width_in=7.2, height_in=4.8) as axis:
        for label, points in sweeps:
            x = [p.diversity.intra_list_similarity for p in points]
            y = [p.ndcg_at_10 for p in points]
            axis.plot(x, y, "o-", label=label)
            for p, xi, yi in zip(points, x, y, strict=True):
                axis.annotate(
                    f"{p.mmr_lambda:g}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
        axis.set_xlabel("intra-list similarity of the top 10 (lower = more diverse)")
        axis.set_ylabel("NDCG@10")
        axis.set_title(title, fontsize=9)
        axis.invert_xaxis()
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
