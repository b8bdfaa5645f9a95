"""The co-occurrence lists a sequence tower carries: the item-kNN baseline's construction, its
recency-weighted score, and a file that is refused when it was changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.encoder.cooccurrence import (
    MAX_EVENTS,
    build_neighbours,
    read_neighbours,
    write_neighbours,
)
from models.evaluation.baselines import fit_item_knn
from stream.core.errors import ModelError

IDS = [f"i{n}" for n in range(12)]
USERS = {
    f"u{u}": [IDS[(u * 5 + k * (u % 3 + 1)) % len(IDS)] for k in range(2 + u % 5)] + ["not-in-catalogue"]
    for u in range(30)
}


@pytest.mark.parametrize("limit", [3, 200])
def test_the_lists_and_scores_are_the_item_knn_baselines(limit: int) -> None:
    # The offline fusion was measured with `fit_item_knn`: the stream must rank with the same term.
    neighbours = build_neighbours(USERS, IDS, max_neighbours=limit)
    rows = {item: n for n, item in enumerate(IDS)}
    baseline = fit_item_knn(USERS, rows, len(IDS), max_neighbours=limit)
    catalogue = neighbours.for_catalogue(IDS, baseline.decay, 1.0)
    for row in range(len(IDS)):
        np.testing.assert_array_equal(catalogue.rows[row], baseline.neighbours[row])
        np.testing.assert_allclose(catalogue.weights[row], baseline.similarities[row], rtol=1e-6)
    history = [3, 7, 3, 0, 11]  # oldest first, a repeat included
    dense = baseline.scores(history) - baseline.popularity * np.float32(1e-6)
    term_rows, values = catalogue.scores(list(reversed(history)))
    got = np.zeros(len(IDS), np.float32)
    got[term_rows] = values
    np.testing.assert_allclose(got, dense, atol=1e-6)
    assert (got[dense == 0] == 0).all()


def test_the_work_per_window_is_bounded_and_unknown_rows_are_dropped() -> None:
    neighbours = build_neighbours(USERS, IDS, max_neighbours=2)
    assert max(np.diff(neighbours.indptr)) <= 2
    # A catalogue that lacks i0 and holds a new item: i0 leaves every list, the new item has none.
    catalogue_ids = ["new", *IDS[1:]]
    catalogue = neighbours.for_catalogue(catalogue_ids, 0.9, 1.0)
    assert len(catalogue.rows[0]) == 0 and all(0 not in r.tolist() for r in catalogue.rows)
    # Only the newest MAX_EVENTS items count: an old item's neighbours get nothing.
    lone = build_neighbours({"a": ["i1", "i2"], "b": ["i3", "i4"]}, IDS).for_catalogue(IDS, 0.9, 1.0)
    rows, _ = lone.scores([1] * MAX_EVENTS + [3])
    assert rows.tolist() == [2]


def test_the_file_round_trips_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    neighbours = build_neighbours(USERS, IDS, max_neighbours=4)
    name, digest = write_neighbours(tmp_path, neighbours)
    back = read_neighbours(tmp_path, name, digest)
    assert back.ids == neighbours.ids
    for field in ("indptr", "indices", "weights"):
        np.testing.assert_array_equal(getattr(back, field), getattr(neighbours, field))
    with pytest.raises(ModelError, match="sha256"):
        read_neighbours(tmp_path, name, "0" * 64)
    # A consistent-looking rewrite with other lists: its digest no longer matches the manifest's.
    write_neighbours(tmp_path, build_neighbours(USERS, IDS, max_neighbours=3))
    with pytest.raises(ModelError, match="sha256"):
        read_neighbours(tmp_path, name, digest)
    (tmp_path / name).unlink()
    with pytest.raises(ModelError, match="missing"):
        read_neighbours(tmp_path, name, digest)


def test_sequential_lists_hold_what_follows_nearer_ones_weighted_more() -> None:
    # Counts of users holding each item: a 3, b 2, c 2. Pairs in order, weight 0.7**(steps - 1),
    # the closest per user: a->b 1 (u1), a->c 0.7 (u1) + 1 (u2), b->c 1 (u1), b->a 1 (u3);
    # the repeat of a in u2 is not a pair with itself.
    users = {"u1": ["a", "b", "c"], "u2": ["a", "a", "c"], "u3": ["b", "a", "zz-unknown"]}
    lists = build_neighbours(users, ["a", "b", "c"], kind="sequential", distance_decay=0.7)
    got = {item: lists.neighbours_of(item) for item in ("a", "b", "c")}
    assert [j for j, _ in got["a"]] == ["c", "b"] and [j for j, _ in got["b"]] == ["c", "a"]
    np.testing.assert_allclose([w for _, w in got["a"]], [1.7 / np.sqrt(6), 1 / np.sqrt(6)], rtol=1e-6)
    np.testing.assert_allclose([w for _, w in got["b"]], [1 / np.sqrt(4), 1 / np.sqrt(6)], rtol=1e-6)
    assert got["c"] == []  # nothing ever followed c
    # The baseline's lists are symmetric: c has a and b as neighbours there.
    assert {j for j, _ in build_neighbours(users, ["a", "b", "c"]).neighbours_of("c")} == {"a", "b"}
    with pytest.raises(ValueError, match="kind"):
        build_neighbours(users, ["a"], kind="other")
    with pytest.raises(ValueError, match="distance_decay"):
        build_neighbours(users, ["a"], kind="sequential", distance_decay=1.5)
