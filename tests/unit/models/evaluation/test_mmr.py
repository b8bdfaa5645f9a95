"""The MMR sweep: at lambda 1 it is the plain ranking, lower lambdas trade accuracy for diversity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data.amazon import load_dataset
from models.evaluation.recommend import evaluate_recommendations, write_report
from stream.core.window import WindowConfig
from tests.support.fakes import BagOfWordsEncoder
from tests.support.rec_fixtures import write_dataset


def test_the_sweep_starts_at_the_plain_ranking_and_diversifies_below_it(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    report = evaluate_recommendations(
        dataset,
        [("zero-shot", BagOfWordsEncoder())],
        window=WindowConfig(),
        split="valid",
        modes=("items", "last item"),
        popularity_weight=0.05,
        mmr_lambdas=(1.0, 0.5, 0.0),
    )
    swept = [m for m in report.methods if m.mmr]
    # The served ranking of each mode (with the prior) is swept, not the bare one.
    assert [m.name for m in swept] == ["items + prior", "last item + prior"]
    for method in swept:
        plain, _half, none = method.mmr
        assert plain.mmr_lambda == 1.0
        # Lambda 1 is the full ranking's own top 10 (the target is in the pool whenever it is in it).
        hr10, ndcg10 = method.metrics.at(10)
        assert (plain.hr_at_10, plain.ndcg_at_10) == pytest.approx((hr10, ndcg10))
        assert method.diversity is not None
        assert plain.diversity.intra_list_similarity == pytest.approx(method.diversity.intra_list_similarity)
        # Pure novelty picks lists whose items are less alike.
        assert none.diversity.intra_list_similarity < plain.diversity.intra_list_similarity
    paths = write_report(report, tmp_path / "eval", tmp_path / "mmr.png")
    assert tmp_path / "mmr.png" in paths and (tmp_path / "mmr.png").stat().st_size > 0
    markdown = (tmp_path / "eval" / "rec_eval.md").read_text()
    assert "| zero-shot: items + prior | 0.5 |" in markdown
    assert np.isfinite([p.ndcg_at_10 for m in swept for p in m.mmr]).all()
