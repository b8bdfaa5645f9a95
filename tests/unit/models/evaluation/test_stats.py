"""Bootstrap intervals, the paired comparison and the diversity figures of the evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.data.amazon import load_dataset
from models.evaluation import stats
from models.evaluation.recommend import evaluate_recommendations, write_report
from stream.core.window import WindowConfig
from tests.support.fakes import BagOfWordsEncoder
from tests.support.rec_fixtures import write_dataset


def test_per_row_metrics_follow_the_rank() -> None:
    values = stats.per_row(np.asarray([0, 3, -1, 12]), (5, 10))
    assert values["hr@5"].tolist() == [1, 1, 0, 0]
    assert values["ndcg@10"].tolist() == pytest.approx([1.0, 1 / np.log2(5), 0.0, 0.0])
    assert values["mrr"].tolist() == pytest.approx([1.0, 0.25, 0.0, 1 / 13])


def test_the_interval_holds_the_mean_narrows_with_rows_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    small, large = (rng.random(n) < 0.1 for n in (200, 5000))
    widths = []
    for values in (small.astype(float), large.astype(float)):
        indices = stats.resample_indices(len(values))
        low, high = stats.bootstrap_interval(values, indices)
        assert low <= values.mean() <= high
        widths.append(high - low)
        assert (low, high) == stats.bootstrap_interval(values, stats.resample_indices(len(values)))
    assert widths[1] < widths[0] / 3


def test_the_paired_difference_tells_a_real_gain_from_noise() -> None:
    rng = np.random.default_rng(2)
    base = (rng.random(3000) < 0.1).astype(float)
    better = np.maximum(base, (rng.random(3000) < 0.05).astype(float))
    indices = stats.resample_indices(3000)
    gain = stats.paired_difference("HR", ("model", better), ("kNN", base), indices)
    assert gain.low > 0 and gain.p_value < 0.01 and "above the baseline" in gain.sentence()
    same = stats.paired_difference("HR", ("model", base), ("kNN", base), indices)
    assert same.mean == 0 and same.p_value == 1.0 and "not distinguishable" in same.sentence()


def test_diversity_of_hand_made_lists() -> None:
    vectors = np.asarray([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    brands = stats.brand_ids(["Acme", "acme ", "", "Other"])
    assert brands[0] == brands[1] and len(set(brands.tolist())) == 3
    popularity = stats.popularity_ranks(np.asarray([5.0, 3.0, 5.0, 0.0], dtype=np.float32))
    assert popularity.tolist() == [1, 3, 1, 4]
    same = stats.diversity(np.asarray([[0, 1]]), vectors, brands, popularity)
    assert same.intra_list_similarity == pytest.approx(1.0) and same.distinct_brands == 1
    mixed = stats.diversity(np.asarray([[0, 2], [1, 3]]), vectors, brands, popularity)
    assert mixed.intra_list_similarity == pytest.approx(0.0) and mixed.distinct_brands == 2
    assert mixed.coverage == 1.0 and mixed.mean_popularity_rank == pytest.approx((1 + 1 + 3 + 4) / 4)


def test_top_rows_are_best_first_with_ties_by_column() -> None:
    scores = np.asarray([[0.1, 0.5, 0.5, 0.9, 0.0]], dtype=np.float32)
    assert stats.top_rows(scores, 3).tolist() == [[3, 1, 2]]


def test_the_report_carries_intervals_diversity_and_the_paired_comparison(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    report = evaluate_recommendations(
        dataset,
        [("zero-shot", BagOfWordsEncoder())],
        window=WindowConfig(),
        batch_size=16,
        modes=("items", "last item"),
        popularity_weight=0.05,
    )
    for method in report.methods:
        low, high = method.intervals["ndcg@10"]
        assert low <= method.metrics.at(10)[1] <= high
        assert method.diversity is not None and 0 < method.diversity.coverage <= 1
    assert report.method("popularity").diversity.coverage == pytest.approx(10 / len(dataset.items))  # type: ignore[union-attr]
    assert any(note.startswith("Paired bootstrap") and "item-kNN" in note for note in report.notes)
    paths = write_report(report, tmp_path / "out")
    document = json.loads(paths[0].read_text())
    assert {"ci95", "intra_list_similarity_at_10", "coverage_at_10"} <= set(document["methods"][0])
    assert "NDCG@10 95 % CI" in paths[1].read_text()
