from __future__ import annotations

import numpy as np
import numpy.typing as npt

from stream.core.events import EventType
from stream.core.ranking import Anchor, explain, mmr_order, nearest_anchors


def unit(*rows: list[float]) -> npt.NDArray[np.float32]:
    m = np.asarray(rows, dtype=np.float32)
    normalised: npt.NDArray[np.float32] = m / np.linalg.norm(m, axis=1, keepdims=True)
    return normalised


def test_mmr_with_lambda_one_is_relevance_order() -> None:
    rel = np.asarray([0.2, 0.9, 0.5], dtype=np.float32)
    assert mmr_order(rel, unit([1, 0], [0, 1], [1, 1]), 3, 1.0) == [1, 2, 0]


def test_mmr_prefers_a_novel_item_over_a_near_duplicate() -> None:
    vectors = unit([1, 0], [1, 0.01], [0, 1])
    rel = np.asarray([0.9, 0.89, 0.6], dtype=np.float32)
    assert mmr_order(rel, vectors, 2, 1.0) == [0, 1]
    assert mmr_order(rel, vectors, 2, 0.5) == [0, 2]


def test_mmr_k_larger_than_candidates_and_empty() -> None:
    rel = np.asarray([0.3], dtype=np.float32)
    assert mmr_order(rel, unit([1, 0]), 5, 0.7) == [0]
    assert mmr_order(np.zeros(0, dtype=np.float32), np.zeros((0, 2), dtype=np.float32), 3, 0.7) == []


def test_explain_picks_the_most_similar_anchor_and_words_the_reason() -> None:
    anchors = [
        Anchor("e1", EventType.VIEW, "red stapler"),
        Anchor("e2", EventType.SEARCH, "gel pens"),
    ]
    reasons = explain(unit([0.1, 1], [1, 0]), unit([1, 0], [0, 1]), anchors)
    assert [a.reason if a else None for a in reasons] == [
        "because you searched 'gel pens'",
        "because you viewed red stapler",
    ]
    assert explain(unit([1, 0]), np.zeros((0, 2), dtype=np.float32), []) == [None]


def test_nearest_anchors_are_positions_with_ties_to_the_earlier_anchor() -> None:
    recommended = unit([1, 0], [0, 1], [1, 1])
    anchors = unit([0, 1], [1, 0], [1, 0])
    assert nearest_anchors(recommended, anchors) == [1, 0, 0]
    assert nearest_anchors(recommended, anchors[:0]) is None
    assert nearest_anchors(recommended[:0], anchors) is None
