"""Exact top-K: order, exclusions, stock filter, short lists, ties; the int8 path equals the plain one."""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from models.index.quantised import BLOCK, quantise_items
from models.index.topk import (
    Boost,
    _exclusion_pairs,
    _gamma,
    _quantised_candidates,
    _underflow,
    exact_scores,
    prepare_items,
    top_indices,
    top_k,
    top_k_rows,
)

IDS = ["a", "b", "c", "d", "e"]


def _unit(rows: list[list[float]]) -> NDArray[np.float32]:
    matrix = np.asarray(rows, dtype=np.float32)
    unit: NDArray[np.float32] = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit


ITEMS = _unit([[1, 0], [0.9, 0.1], [0, 1], [0.5, 0.5], [-1, 0]])


def test_order_is_by_cosine() -> None:
    users = _unit([[1, 0], [0, 1]])
    result = top_k(users, ITEMS, IDS, 3)
    assert [item for item, _ in result[0]] == ["a", "b", "d"]
    assert [item for item, _ in result[1]] == ["c", "d", "b"]
    assert result[0][0][1] == pytest.approx(1.0)


def test_exclusions_are_per_user() -> None:
    users = _unit([[1, 0], [1, 0]])
    result = top_k(users, ITEMS, IDS, 2, exclude=[{0}, set()])
    assert [item for item, _ in result[0]] == ["b", "d"]
    assert [item for item, _ in result[1]] == ["a", "b"]


def test_out_of_stock_items_never_appear() -> None:
    in_stock = np.array([False, True, True, True, True])
    result = top_k(_unit([[1, 0]]), ITEMS, IDS, 5, in_stock=in_stock)
    assert "a" not in [item for item, _ in result[0]]
    assert len(result[0]) == 4


def test_k_larger_than_candidates_returns_what_is_left() -> None:
    in_stock = np.array([True, False, True, False, False])
    result = top_k(_unit([[1, 0]]), ITEMS, IDS, 10, in_stock=in_stock, exclude=[{2}])
    assert [[item for item, _ in ranked] for ranked in result] == [["a"]]
    assert result[0][0][1] == pytest.approx(1.0)


def test_ties_are_broken_by_item_index() -> None:
    items = _unit([[1, 0]] * 6)
    ids = [f"i{n}" for n in range(6)]
    for k in (1, 3, 6):
        assert [item for item, _ in top_k(_unit([[1, 0]]), items, ids, k)[0]] == ids[:k]
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.5], dtype=np.float32)
    assert top_indices(scores, 3).tolist() == [1, 3, 0]
    assert top_indices(scores, 0).tolist() == []


def test_matches_a_full_sort_on_random_data() -> None:
    rng = np.random.default_rng(3)
    items = rng.standard_normal((500, 16)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    users = items[:4] + 0.1
    ids = [str(n) for n in range(500)]
    result = top_k(users, items, ids, 10)
    scores = users @ items.T
    for row, ranked in enumerate(result):
        expected = np.argsort(-scores[row], kind="stable")[:10]
        assert [item for item, _ in ranked] == [ids[i] for i in expected]


def test_shape_errors_are_explained() -> None:
    with pytest.raises(ValueError, match="same width"):
        top_k(np.ones((1, 3), dtype=np.float32), ITEMS, IDS, 1)
    with pytest.raises(ValueError, match="item ids"):
        top_k(_unit([[1, 0]]), ITEMS, IDS[:2], 1)
    with pytest.raises(ValueError, match="in_stock"):
        top_k(_unit([[1, 0]]), ITEMS, IDS, 1, in_stock=np.ones(2, dtype=bool))


# --- the quantised path: same answer as the plain one, bit for bit --------------------------------

small_floats = st.floats(-1.0, 1.0, width=32, allow_subnormal=False)


@st.composite
def catalogues(draw: st.DrawFn) -> tuple[NDArray[np.float32], NDArray[np.float32], int, Any, Any]:
    """Users, items, k, in-stock mask and exclusions, with duplicates, zero rows and exact ties."""
    dim = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 90))
    n_users = draw(st.integers(1, 4))
    if draw(st.booleans()):
        # Small integers: many exactly equal scores, so the tie-break by index is exercised.
        pool = draw(hnp.arrays(np.float32, (draw(st.integers(1, 8)), dim), elements=st.integers(-2, 2)))
    else:
        pool = draw(hnp.arrays(np.float32, (draw(st.integers(1, 40)), dim), elements=small_floats))
    rows = draw(hnp.arrays(np.intp, n_items, elements=st.integers(0, len(pool) - 1)))
    items = np.ascontiguousarray(pool[rows])
    if draw(st.booleans()):
        norms = np.linalg.norm(items, axis=1, keepdims=True)
        items = (items / np.where(norms == 0, 1, norms)).astype(np.float32)
    users = draw(hnp.arrays(np.float32, (n_users, dim), elements=small_floats))
    if draw(st.booleans()):
        users[0] = 0.0
    k = draw(st.integers(0, n_items + 3))
    in_stock = draw(st.none() | hnp.arrays(np.bool_, n_items))
    exclude = draw(
        st.none()
        | st.lists(st.sets(st.integers(0, n_items - 1), max_size=5), min_size=n_users, max_size=n_users)
    )
    return users, items, k, in_stock, exclude


def _brute_force(
    users: NDArray[np.float32], items: NDArray[np.float32], k: int, in_stock: Any, exclude: Any
) -> list[list[tuple[int, float]]]:
    """Every pair scored by `exact_scores`, sorted by (-score, index): the definition of the answer."""
    result = []
    for user in range(users.shape[0]):
        rows = np.arange(items.shape[0])
        if in_stock is not None:
            rows = rows[in_stock]
        if exclude is not None:
            rows = rows[~np.isin(rows, list(exclude[user]))]
        scores = exact_scores(users, items, np.full(len(rows), user, dtype=np.intp), rows)
        order = np.lexsort((rows, -scores))[: max(k, 0)]
        result.append([(int(rows[i]), float(scores[i])) for i in order])
    return result


@settings(max_examples=150, deadline=None)
@given(catalogues())
def test_quantised_path_equals_plain_path_and_brute_force(
    case: tuple[NDArray[np.float32], NDArray[np.float32], int, Any, Any],
) -> None:
    users, items, k, in_stock, exclude = case
    ids = [f"i{n}" for n in range(items.shape[0])]
    prepared = prepare_items(items, min_items=1)
    assert prepared.quantised is not None
    plain = top_k(users, items, ids, k, in_stock=in_stock, exclude=exclude)
    # Tiny catalogues have too few blocks for the int8 path to be chosen: force it.
    with mock.patch("models.index.topk._MIN_BLOCKS_PER_K", 0):
        fast = top_k(users, prepared, ids, k, in_stock=in_stock, exclude=exclude)
    assert fast == plain  # same ids, same order, bit-identical scores
    expected = [
        [(ids[row], score) for row, score in user]
        for user in _brute_force(users, items, k, in_stock, exclude)
    ]
    assert plain == expected
    blas = users @ items.T
    for user, ranked in enumerate(fast):
        for item_id, score in ranked:
            row = ids.index(item_id)
            # Within float32 rounding of the BLAS product (gamma_d * ||q|| * ||x|| at most). The
            # norms in float64: in float32 the squares of tiny elements underflow and the bound
            # came out below one float32 rounding of the score itself.
            bound = (
                2
                * items.shape[1]
                * 2.0**-24
                * np.linalg.norm(users[user].astype(np.float64))
                * np.linalg.norm(items[row].astype(np.float64))
            )
            assert abs(score - float(blas[user, row])) <= bound + 1e-30


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 200), st.integers(1, 40)), elements=small_floats),
    st.integers(1, 6),
    st.floats(1e-3, 1e3),
)
# Found by CI: a product of the smallest normal float32 and a small user coordinate underflows,
# an error that only an absolute term of the bound covers.
@example(np.array([[np.finfo(np.float32).tiny]], dtype=np.float32), 1, 0.0625)
def test_the_int8_error_bound_holds(items: NDArray[np.float32], n_users: int, user_scale: float) -> None:
    """|exact - unit * y| <= unit * (offset + slope * residual) for every user and item."""
    rng = np.random.default_rng(items.size)
    users = (rng.standard_normal((n_users, items.shape[1])) * user_scale).astype(np.float32)
    quantised = quantise_items(items)
    dim = items.shape[1]
    approx = quantised.score(users, exact_error=_gamma(dim), exact_underflow=_underflow(dim))
    n_users, n_items = users.shape[0], items.shape[0]
    user_rows = np.repeat(np.arange(n_users), n_items)
    item_rows = np.tile(np.arange(n_items), n_users)
    exact = exact_scores(users, items, user_rows, item_rows).reshape(n_users, n_items).astype(np.float64)
    unit = approx.unit[:, None]
    error = np.abs(exact - unit * approx.scores[:, :n_items])
    bound = unit * (approx.error_offset[:, None] + approx.error_slope[:, None] * quantised.residuals[None, :])
    assert (error <= bound).all()
    assert (approx.scores[:, n_items:] == -np.inf).all()  # padding never competes
    blocks = approx.scores.reshape(n_users, BLOCK, -1)
    assert np.array_equal(approx.block_max, blocks.max(axis=1))


def test_a_stock_mask_changed_in_place_changes_the_next_scores() -> None:
    rng = np.random.default_rng(3)
    items = rng.standard_normal((200, 8)).astype(np.float32)
    users = rng.standard_normal((2, 8)).astype(np.float32)
    quantised = quantise_items(items)
    error, underflow = _gamma(8), _underflow(8)
    in_stock = np.ones(200, dtype=bool)
    first = quantised.score(users, in_stock, exact_error=error, exact_underflow=underflow).scores
    in_stock[::2] = False  # the same array, changed in place
    second = quantised.score(users, in_stock, exact_error=error, exact_underflow=underflow).scores
    assert np.isfinite(first[:, :200]).all()
    assert (second[:, :200:2] == -np.inf).all()
    assert np.array_equal(second[:, 1:200:2], first[:, 1:200:2])
    unmasked = quantised.score(users, None, exact_error=error, exact_underflow=underflow).scores
    assert np.isfinite(unmasked[:, :200]).all()


def test_quantised_path_prunes_and_still_matches_on_a_large_catalogue() -> None:
    rng = np.random.default_rng(7)
    items = rng.standard_normal((6000, 48)).astype(np.float32)
    # Near-duplicates one float32 step apart: near-ties that BLAS may order either way.
    items[1::7] = items[::7][: len(items[1::7])] + np.float32(1e-7)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    users = (
        items[rng.integers(0, 6000, 16)] + rng.standard_normal((16, 48)).astype(np.float32) * 0.3
    ).astype(np.float32)
    ids = [str(n) for n in range(6000)]
    in_stock = rng.random(6000) < 0.8
    exclude = [set(rng.integers(0, 6000, 30).tolist()) for _ in range(16)]
    prepared = prepare_items(items, min_items=1)
    assert prepared.quantised is not None
    excluded = _exclusion_pairs(exclude, 16, 6000)
    pairs = _quantised_candidates(prepared.quantised, users, items, 20, in_stock=in_stock, excluded=excluded)
    assert len(pairs[0]) < 16 * 6000 // 20  # the bound prunes almost everything
    for k in (1, 20, 100):
        fast = top_k(users, prepared, ids, k, in_stock=in_stock, exclude=exclude)
        assert fast == top_k(users, items, ids, k, in_stock=in_stock, exclude=exclude)
        assert all(len(ranked) == k for ranked in fast)


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 30), st.integers(1, 20)), elements=small_floats),
    st.data(),
)
def test_exact_scores_do_not_depend_on_the_other_pairs(
    items: NDArray[np.float32], data: st.DataObject
) -> None:
    users = items[::-1].copy()
    n = items.shape[0]
    user_rows = np.asarray(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=50)), dtype=np.intp)
    item_rows = np.asarray(
        data.draw(st.lists(st.integers(0, n - 1), min_size=len(user_rows), max_size=len(user_rows))),
        dtype=np.intp,
    )
    together = exact_scores(users, items, user_rows, item_rows)
    alone = [
        exact_scores(users, items, user_rows[i : i + 1], item_rows[i : i + 1])[0]
        for i in range(len(user_rows))
    ]
    assert together.tobytes() == np.asarray(alone, dtype=np.float32).tobytes()


def test_small_catalogues_are_not_quantised_and_bad_exclusions_are_refused() -> None:
    assert prepare_items(ITEMS).quantised is None
    assert prepare_items(ITEMS, min_items=1).quantised is not None
    with pytest.raises(ValueError, match="outside"):
        top_k(_unit([[1, 0]]), ITEMS, IDS, 1, exclude=[{5}])


def test_seven_bit_codes_for_cpus_whose_product_saturates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.index.quantised._u8s8_product_is_exact", lambda dim: False)
    rng = np.random.default_rng(11)
    items = rng.standard_normal((3000, 24)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    users = rng.standard_normal((5, 24)).astype(np.float32)
    ids = [str(n) for n in range(3000)]
    prepared = prepare_items(items, min_items=1)
    assert prepared.quantised is not None and prepared.quantised.item_levels == 63
    assert top_k(users, prepared, ids, 15) == top_k(users, items, ids, 15)


def test_rows_are_the_positions_of_the_ids_top_k_returns() -> None:
    rng = np.random.default_rng(5)
    items = rng.standard_normal((300, 8)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    users = _unit(rng.standard_normal((6, 8)).tolist())
    ids = [f"sku-{n}" for n in range(300)]
    in_stock = rng.random(300) > 0.2
    exclude = [set(rng.integers(0, 300, 5).tolist()) for _ in range(6)]
    for prepared in (items, prepare_items(items, min_items=1)):
        by_id = top_k(users, prepared, ids, 12, in_stock=in_stock, exclude=exclude)
        by_row = top_k_rows(users, prepared, 12, in_stock=in_stock, exclude=exclude)
        assert by_id == [[(ids[row], score) for row, score in user] for user in by_row]
        assert all(len(user) == 12 for user in by_row)


def _brute_force_boosted(
    users: NDArray[np.float32],
    items: NDArray[np.float32],
    k: int,
    boost: Boost,
    *,
    in_stock: NDArray[np.bool_],
    exclude: list[set[int]],
) -> list[list[tuple[int, float]]]:
    """Every item's exact score plus its boost in float32, sorted; the definition `top_k_rows`
    must meet with a boost."""
    added = np.zeros((users.shape[0], items.shape[0]), dtype=np.float32)
    added[boost.user_rows, boost.item_rows] = boost.values
    result = []
    for user in range(users.shape[0]):
        rows = np.arange(items.shape[0], dtype=np.intp)
        scores = exact_scores(users, items, np.full(len(rows), user, dtype=np.intp), rows) + added[user]
        order = sorted(
            (row for row in rows.tolist() if in_stock[row] and row not in exclude[user]),
            key=lambda row: (-scores[row], row),
        )
        result.append([(row, float(scores[row])) for row in order[:k]])
    return result


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_boost_ranks_by_the_boosted_exact_score_on_both_paths(seed: int) -> None:
    rng = np.random.default_rng(seed)
    items = rng.standard_normal((2048, 16)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    items[7] = items[3]  # a tie, broken by row, boosted or not
    users = _unit(rng.standard_normal((9, 16)).tolist())
    in_stock = rng.random(2048) > 0.1
    exclude = [set(rng.integers(0, 2048, 4).tolist()) for _ in range(9)]
    # Per user a few hundred boosted rows, some large enough to lift a far item into the top k,
    # some on excluded or out-of-stock rows (which must stay out), user 4 none.
    user_rows, item_rows, values = [], [], []
    for user in range(9):
        if user == 4:
            continue
        rows = np.unique(np.concatenate([rng.choice(2048, 300, replace=False), sorted(exclude[user])]))
        user_rows.append(np.full(len(rows), user, dtype=np.intp))
        item_rows.append(rows.astype(np.intp))
        values.append((rng.random(len(rows)) ** 4 * 0.8).astype(np.float32))
    boost = Boost(np.concatenate(user_rows), np.concatenate(item_rows), np.concatenate(values))
    expected = _brute_force_boosted(users, items, 10, boost, in_stock=in_stock, exclude=exclude)
    plain = top_k_rows(users, items, 10, in_stock=in_stock, exclude=exclude, boost=boost)
    prepared = prepare_items(items, min_items=1)
    assert prepared.quantised is not None
    int8 = top_k_rows(users, prepared, 10, in_stock=in_stock, exclude=exclude, boost=boost)
    assert plain == expected
    assert int8 == expected
    unboosted = top_k_rows(users, items, 10, in_stock=in_stock, exclude=exclude)
    assert sum(a != b for a, b in zip(plain, unboosted, strict=True)) >= 6  # the boost mattered
    assert plain[4] == unboosted[4]


def test_a_boost_that_does_not_fit_is_refused() -> None:
    users = _unit([[1, 0]])
    one = np.zeros(1, dtype=np.intp)
    with pytest.raises(ValueError, match=">= 0"):
        top_k_rows(users, ITEMS, 2, boost=Boost(one, one, np.asarray([-1.0], dtype=np.float32)))
    with pytest.raises(ValueError, match="item rows outside"):
        top_k_rows(users, ITEMS, 2, boost=Boost(one, one + 5, np.ones(1, dtype=np.float32)))
