from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from models.data.amazon import (
    allowed_sequences,
    interactions,
    items_with_popularity,
    load_dataset,
    training_pairs,
)
from models.evaluation.baselines import fit_item_knn, popularity_scores
from models.evaluation.recommend import (
    K_VALUES,
    _rank_rows,
    evaluate_recommendations,
    summarise,
    target_ranks,
    write_report,
)
from stream.core.errors import ConfigError, SourceError
from stream.core.window import WindowConfig
from tests.support.fakes import BagOfWordsEncoder
from tests.support.rec_fixtures import write_dataset


def test_ranks_count_higher_scores_and_break_ties_by_column() -> None:
    scores = np.asarray(
        [
            [0.1, 0.9, 0.5, 0.5],  # target 2: one higher (col 1), a tie after it (col 3): rank 1
            [0.5, 0.9, 0.5, 0.5],  # target 3: one higher, ties at columns 0 and 2 before it: rank 3
            [0.9, 0.1, 0.2, 0.3],  # target 0: rank 0
            [0.9, 0.1, 0.2, 0.3],  # unknown target
        ],
        dtype=np.float32,
    )
    ranks = target_ranks(scores, np.asarray([2, 3, 0, -1], dtype=np.intp))
    assert ranks.tolist() == [1, 3, 0, -1]


def test_metrics_on_hand_made_ranks() -> None:
    # ranks 0, 1, 4, 9, 25 and one unknown target, over 6 rows.
    metrics = summarise(np.asarray([0, 1, 4, 9, 25, -1], dtype=np.intp))
    assert metrics.ks == K_VALUES
    hr5, ndcg5 = metrics.at(5)
    assert hr5 == pytest.approx(3 / 6)
    assert ndcg5 == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 6)
    hr10, ndcg10 = metrics.at(10)
    assert hr10 == pytest.approx(4 / 6)
    assert ndcg10 == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11)) / 6)
    assert metrics.at(20)[0] == pytest.approx(4 / 6)
    assert metrics.mrr == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10 + 1 / 26) / 6)


def test_a_perfect_ranking_scores_one() -> None:
    metrics = summarise(np.zeros(5, dtype=np.intp))
    assert metrics.hr == (1.0, 1.0, 1.0)
    assert metrics.ndcg == (1.0, 1.0, 1.0)
    assert metrics.mrr == 1.0


def test_training_never_sees_a_test_target(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    sequences = allowed_sequences(dataset, "test")
    pairs = training_pairs(sequences)
    seen_items = {item for s in sequences for item in s.items}
    # Test targets t0..t3 occur only as test targets and in later test histories.
    assert not {item for item in seen_items if item.startswith("t")}
    user_targets = {(p.user_id, p.target) for p in pairs}
    for row in dataset.rows["test"]:
        assert (row.user_id, row.target) not in user_targets
        assert row.target not in {i for p in pairs if p.user_id == row.user_id for i in p.history}
    # Valid targets are allowed and used.
    assert all((row.user_id, row.target) in user_targets for row in dataset.rows["valid"])
    # Evaluating on valid: not even the valid targets.
    valid_pairs = training_pairs(allowed_sequences(dataset, "valid"))
    valid_targets = {(r.user_id, r.target) for r in dataset.rows["valid"]}
    assert not valid_targets & {(p.user_id, p.target) for p in valid_pairs}


def test_overlapping_histories_count_once(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data", users_per_topic=1))
    seen = interactions(allowed_sequences(dataset, "test"))
    # u0-0: valid sequence 0,1,2,3; first test history 0,1,2,3 (the same items): 4 interactions.
    assert [item for user, item in seen if user == "u0-0"] == ["0", "1", "2", "3"]
    pairs = training_pairs(allowed_sequences(dataset, "test"))
    assert [(p.history, p.target) for p in pairs if p.user_id == "u0-0"] == [
        (("0",), "1"),
        (("0", "1"), "2"),
        (("0", "1", "2"), "3"),
    ]


def test_item_knn_prefers_co_occurring_items_then_popularity() -> None:
    rows = {name: n for n, name in enumerate("abcde")}
    knn = fit_item_knn({"u1": ["a", "b"], "u2": ["a", "b", "c"], "u3": ["d", "e"], "u4": ["e"]}, rows, 5)
    scores = knn.scores([rows["a"]])
    order = np.argsort(-scores, kind="stable").tolist()
    # b co-occurred with a twice, c once; the rest by how many users had them (a and e: 2, d: 1).
    assert order == [rows[name] for name in "bcaed"]
    popularity = popularity_scores([("u1", "a"), ("u2", "a"), ("u2", "zzz")], rows, 5)
    assert popularity.tolist() == [2.0, 0.0, 0.0, 0.0, 0.0]


def test_evaluation_runs_every_method_and_writes_the_report(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    report = evaluate_recommendations(
        dataset, [("zero-shot", BagOfWordsEncoder())], window=WindowConfig(), batch_size=16
    )
    names = [(m.group, m.name) for m in report.methods]
    assert names == [
        ("baseline", "popularity"),
        ("baseline", "item-kNN"),
        ("zero-shot", "text"),
        ("zero-shot", "items"),
        ("zero-shot", "hybrid"),
        ("zero-shot", "last item"),
    ]
    assert report.rows == len(dataset.rows["test"])
    assert report.unknown_targets == 1  # "missing-item": a miss for every method, not dropped
    assert report.catalogue == len(dataset.items)
    for method in report.methods:
        hr = method.metrics.hr
        assert hr[0] <= hr[1] <= hr[2] <= (report.rows - 1) / report.rows
    # Topic-bound users: item-kNN finds the next topic item far better than popularity.
    assert report.method("item-kNN").metrics.at(10)[0] > report.method("popularity").metrics.at(10)[0]
    paths = write_report(report, tmp_path / "out")
    assert [p.name for p in paths] == ["rec_eval.json", "rec_eval.md", "rec_eval.png"]
    document = json.loads(paths[0].read_text())
    assert document["task"] == "recommend"
    assert {"hr_at_10", "ndcg_at_20", "mrr"} <= set(document["methods"][0])
    assert "| zero-shot: hybrid (text weight 0.5) |" in paths[1].read_text()
    assert paths[2].stat().st_size > 0


def test_the_prior_ranking_adds_weight_times_log_count_to_each_mode(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    modes = ("text", "last item")
    plain, weighted = (
        evaluate_recommendations(
            dataset,
            [("zero-shot", BagOfWordsEncoder())],
            window=WindowConfig(),
            batch_size=16,
            modes=modes,
            popularity_weight=weight,
        )
        for weight in (0.0, 0.05)
    )
    assert [m.name for m in plain.methods[2:]] == ["text", "last item"]
    assert [m.name for m in weighted.methods[2:]] == [
        "text",
        "text + prior",
        "last item",
        "last item + prior",
    ]
    # The bare rankings do not depend on the weight.
    assert weighted.method("text").metrics == plain.method("text").metrics
    # Hand-made: user 0 is item 0's direction; a prior of 1.5 on item 2 lifts it from last to first.
    items = np.eye(3, dtype=np.float32)
    users = np.asarray([[1.0, 0.2, 0.0]], dtype=np.float32)
    has = np.ones(1, dtype=bool)
    fallback = np.zeros(3, dtype=np.float32)
    target = np.asarray([2])
    assert _rank_rows(users, has, items, fallback, target)[0].tolist() == [2]
    prior = np.asarray([0.0, 0.0, 1.5], dtype=np.float32)
    assert _rank_rows(users, has, items, fallback, target, prior=prior)[0].tolist() == [0]
    assert weighted.to_dict()["popularity_weight"] == 0.05
    assert "| zero-shot: text + prior (prior weight 0.05) |" in weighted.to_markdown()


def test_catalogue_popularity_counts_allowed_interactions_only(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    counted = {item.item_id: item.popularity for item in items_with_popularity(dataset, "test")}
    assert list(counted) == list(dataset.items)
    expected = Counter(item for _, item in interactions(allowed_sequences(dataset, "test")))
    assert counted == {item_id: float(expected[item_id]) for item_id in dataset.items}
    # A test target that appears nowhere else counts 0: targets never feed the prior.
    only_targets = {row.target for row in dataset.rows["test"]} - {
        item for sequence in allowed_sequences(dataset, "test") for item in sequence.items
    }
    assert only_targets and all(counted.get(item_id, 0.0) == 0.0 for item_id in only_targets)


def test_a_folder_without_items_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"items\.json: missing"):
        load_dataset(tmp_path)


def test_excluding_purchases_ranks_as_the_stream_serves(tmp_path: Path) -> None:
    """`--exclude-purchased`: no method ranks an item of the row's history, and a target among
    them is a miss, as in the stream's lists (`ProfileComputer` never recommends a purchase)."""
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    ids = list(dataset.items)
    rows = dataset.rows["test"]
    kwargs = {"window": WindowConfig(), "batch_size": 16, "modes": ("last item",), "popularity_weight": 0.05}
    plain = evaluate_recommendations(dataset, [("zero-shot", BagOfWordsEncoder())], **kwargs)  # type: ignore[arg-type]
    served = evaluate_recommendations(
        dataset,
        [("zero-shot", BagOfWordsEncoder())],
        exclude_purchased=True,
        **kwargs,  # type: ignore[arg-type]
    )
    assert [m.name for m in served.methods] == [m.name for m in plain.methods]
    for method in served.methods:
        assert method.top is not None and method.ranks is not None
        for n, row in enumerate(rows):
            history = {ids.index(i) for i in row.history if i in dataset.items}
            assert not history & set(method.top[n].tolist()), (method.name, n)
            if row.target in row.history:
                assert method.ranks[n] >= len(ids) - len(history), (method.name, n)
    # "last item" ranks the newest item first when it may: excluded, the rest move up.
    assert served.method("last item").metrics != plain.method("last item").metrics
    assert "the history's purchases excluded (as served)" in served.to_markdown()
    assert served.to_dict()["protocol"].startswith("full ranking of the whole catalogue, the history's")
    assert "nothing excluded" in plain.to_dict()["protocol"]
    # Hand-made: user 0 looks like item 0, bought it; item 1 is next best.
    items = np.eye(3, dtype=np.float32)
    users = np.asarray([[1.0, 0.5, 0.0]], dtype=np.float32)
    has, fallback = np.ones(1, dtype=bool), np.zeros(3, dtype=np.float32)
    bought = [np.asarray([0], dtype=np.intp)]
    assert _rank_rows(users, has, items, fallback, np.asarray([1]))[0].tolist() == [1]
    assert _rank_rows(users, has, items, fallback, np.asarray([1]), excluded=bought)[0].tolist() == [0]
    assert _rank_rows(users, has, items, fallback, np.asarray([0]), excluded=bought)[0].tolist() == [2]


def test_the_mmr_sweep_and_exclusion_are_run_apart(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    with pytest.raises(ConfigError, match="--mmr-sweep and --exclude-purchased in two evaluations"):
        evaluate_recommendations(
            dataset,
            [("zero-shot", BagOfWordsEncoder())],
            window=WindowConfig(),
            exclude_purchased=True,
            mmr_lambdas=(0.5,),
        )
