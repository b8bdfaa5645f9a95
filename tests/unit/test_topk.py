"""Exact top-K: order, exclusions, stock filter, short candidate lists, deterministic ties."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from models.topk import top_indices, top_k

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
