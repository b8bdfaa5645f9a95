"""The popularity prior: its values, the widened matrices, exact top-K on them, and the profiles."""

from __future__ import annotations

import numpy as np
import pytest

from models.index.topk import prepare_items, top_k
from stream.core.events import EventType
from stream.core.prior import has_prior, popularity_prior, ranking_matrix, widen_users
from stream.core.window import WindowConfig
from stream.profiles.computer import ProfileComputer, ProfileConfig
from stream.profiles.offline import offline_payloads
from tests.support.fakes import BagOfWordsEncoder, FakeCatalogue
from tests.unit.stream.profiles.test_computer import TITLES, ev


def test_prior_is_weight_times_log1p_of_the_count() -> None:
    counts = np.asarray([0.0, 1.0, 9.0, 1e6])
    np.testing.assert_allclose(popularity_prior(counts, 0.05), 0.05 * np.log1p(counts), rtol=1e-6)
    assert not has_prior(popularity_prior(counts, 0.0))
    assert not has_prior(popularity_prior(np.zeros(3), 0.05))
    with pytest.raises(ValueError, match="weight"):
        popularity_prior(counts, -0.1)
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="finite and >= 0"):
            popularity_prior(np.asarray([1.0, bad]), 0.05)


def test_widened_vectors_give_cosine_plus_prior_for_users_and_bare_cosine_for_queries() -> None:
    rng = np.random.default_rng(3)
    items = rng.standard_normal((6, 4)).astype(np.float32)
    users = rng.standard_normal((2, 4)).astype(np.float32)
    prior = popularity_prior(np.asarray([0, 1, 2, 3, 50, 0]), 0.05)
    matrix = ranking_matrix(items, prior)
    assert matrix.shape == (6, 5)
    np.testing.assert_allclose(widen_users(users, 5) @ matrix.T, users @ items.T + prior, rtol=1e-5)
    np.testing.assert_allclose(widen_users(users, 5, with_prior=False) @ matrix.T, users @ items.T, rtol=1e-5)
    # No prior: the matrix and the users stay as they are (the same arrays).
    zero = popularity_prior(np.zeros(6), 0.05)
    assert ranking_matrix(items, zero) is items
    assert widen_users(users, 4) is users
    with pytest.raises(ValueError, match="width"):
        widen_users(users, 7)
    with pytest.raises(ValueError, match="prior values"):
        ranking_matrix(items, prior[:3])


@pytest.mark.parametrize("quantised", [False, True])
def test_exact_top_k_on_the_widened_matrix_ranks_by_cosine_plus_prior(quantised: bool) -> None:
    rng = np.random.default_rng(11)
    items = rng.standard_normal((3000, 16)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    users = rng.standard_normal((5, 16)).astype(np.float32)
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    counts = rng.zipf(1.5, size=3000).astype(np.float64)
    prior = popularity_prior(counts, 0.05)
    prepared = prepare_items(ranking_matrix(items, prior), min_items=1000 if quantised else 10**9)
    assert (prepared.quantised is not None) == quantised
    ids = [str(n) for n in range(3000)]
    ranked = top_k(widen_users(users, 17), prepared, ids, 10)
    expected = users.astype(np.float64) @ items.T.astype(np.float64) + prior
    for user, got in enumerate(ranked):
        want = np.argsort(-expected[user], kind="stable")[:10]
        assert [int(item_id) for item_id, _ in got] == want.tolist()
        np.testing.assert_allclose([score for _, score in got], expected[user][want], atol=1e-5)
    # The prior changes the answer here: without it, the lists differ.
    bare = top_k(users, prepare_items(items, min_items=10**9), ids, 10)
    assert [pair[0] for pair in bare[0]] != [pair[0] for pair in ranked[0]]


def _payload_ids(catalogue: FakeCatalogue, weight: float) -> list[tuple[str, float]]:
    config = ProfileConfig(WindowConfig(), top_k=4, user_vector="text", popularity_weight=weight)
    events = [ev(1, "u", EventType.VIEW, "stapler")]
    payload = offline_payloads(events, ProfileComputer(BagOfWordsEncoder(), catalogue, config))["u"]
    return [(item["item_id"], item["score"]) for item in payload["items"]]


def test_a_popular_item_climbs_by_exactly_its_prior() -> None:
    plain = _payload_ids(FakeCatalogue(TITLES), 0.05)  # no counts: the prior is zero everywhere
    assert plain == _payload_ids(FakeCatalogue(TITLES), 0.0)
    last_id, last_score = plain[-1]
    counts = {last_id: 1e6}
    boosted = _payload_ids(FakeCatalogue(TITLES, counts=counts), 0.05)
    scores = dict(boosted)
    assert scores[last_id] == pytest.approx(last_score + 0.05 * np.log1p(1e6), abs=1e-5)
    # 0.69 above its cosine: no longer last, and the list is still in score order.
    assert [item_id for item_id, _ in boosted].index(last_id) < len(plain) - 1
    assert [score for _, score in boosted] == sorted(scores.values(), reverse=True)
    # The other items keep their cosine scores.
    for item_id, score in plain[:-1]:
        if item_id in scores:
            assert scores[item_id] == pytest.approx(score, abs=1e-6)
    # Weight 0 switches it off whatever the counts.
    assert _payload_ids(FakeCatalogue(TITLES, counts=counts), 0.0) == plain
