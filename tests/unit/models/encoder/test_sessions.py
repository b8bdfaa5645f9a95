"""The session term a sequence tower carries (V-SKNN "follow", models/encoder/sessions.py): the same
values as a plain-loop reading of its definition, what it rewards, its bounds, and a file that is
refused when it was changed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.encoder.sessions import (
    MAX_QUERY_EVENTS,
    MAX_SESSIONS_PER_ITEM,
    build_sessions,
    load_sessions,
    read_sessions,
    write_sessions,
)
from stream.core.errors import ModelError

IDS = [f"i{n}" for n in range(15)]


def random_users(seed: int, users: int = 40) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    return {
        f"u{u}": [IDS[int(i)] for i in rng.integers(0, len(IDS), int(rng.integers(1, 9)))] + ["gone"]
        for u in range(users)
    }


def reference(
    sessions: list[list[int]], history: list[int], neighbours: int, decay: float, weight: float
) -> dict[int, float]:
    """The module docstring's definition, one loop per step (no posting lists, no numpy)."""
    history = history[:MAX_QUERY_EVENTS]
    weights: dict[int, float] = {}
    for age, row in enumerate(history):
        weights.setdefault(row, (len(history) - age) / len(history))
    norm = math.sqrt(sum(w * w for w in weights.values()))
    similar = []
    for n, session in enumerate(sessions):
        shared = sum(w for row, w in weights.items() if row in set(session))
        if shared > 0:
            similar.append((shared / (norm * math.sqrt(len(set(session)))), n))
    similar.sort(key=lambda pair: (-pair[0], pair[1]))
    term: dict[int, float] = {}
    for similarity, n in similar[:neighbours]:
        session = sessions[n]
        last = max(p for p, row in enumerate(session) if row in weights)
        for p in range(last + 1, len(session)):
            term[session[p]] = term.get(session[p], 0.0) + similarity * decay ** (p - last - 1)
    top = max(term.values(), default=0.0)
    return {row: value / top * weight for row, value in term.items() if value > 0}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("neighbours", [1, 3, 200])
def test_the_term_is_its_definition(seed: int, neighbours: int) -> None:
    users = random_users(seed)
    stored = build_sessions(users, IDS)
    catalogue = stored.for_catalogue(IDS, weight=0.15, neighbours=neighbours, follow_decay=0.8)
    as_rows = [[IDS.index(i) for i in items if i in IDS] for items in users.values()]
    rng = np.random.default_rng(100 + seed)
    for _ in range(25):
        history = [int(i) for i in rng.integers(0, len(IDS), int(rng.integers(1, 14)))]
        rows, values = catalogue.scores(history)
        expected = reference(as_rows, history, neighbours, 0.8, 0.15)
        assert rows.tolist() == sorted(expected)
        np.testing.assert_allclose(values, [expected[r] for r in sorted(expected)], rtol=1e-5)
        assert values.dtype == np.float32 and (values <= np.float32(0.15) + 1e-7).all()


def test_only_what_similar_shoppers_bought_next_counts() -> None:
    # Two shoppers bought i1 then i2 then i3; one bought i9 before i1. A window holding i1: i2 and
    # i3 follow it (i2 first, one step nearer), i9 came before it and i1 is the window's own item.
    stored = build_sessions({"a": ["i1", "i2", "i3"], "b": ["i9", "i1", "i2"], "c": ["i5", "i6"]}, IDS)
    rows, values = stored.for_catalogue(IDS, weight=1.0).scores([1])
    got = dict(zip(rows.tolist(), values.tolist(), strict=True))
    assert set(got) == {2, 3}
    assert got[2] == pytest.approx(1.0) and got[3] < got[2]
    # A window sharing nothing with any session gets no term; an empty one neither.
    assert stored.for_catalogue(IDS, weight=1.0).scores([12])[0].size == 0
    assert stored.for_catalogue(IDS, weight=1.0).scores([])[0].size == 0


def test_the_work_per_window_is_bounded_and_unknown_items_are_dropped() -> None:
    # Only the newest MAX_QUERY_EVENTS items count: an older one finds no session.
    stored = build_sessions({"a": ["i1", "i2"], "b": ["i3", "i4"]}, IDS)
    rows, _ = stored.for_catalogue(IDS, weight=1.0).scores([1] * MAX_QUERY_EVENTS + [3])
    assert rows.tolist() == [2]
    # An item's posting list keeps its last MAX_SESSIONS_PER_ITEM sessions.
    many = {f"u{n}": ["i1", "i2"] for n in range(MAX_SESSIONS_PER_ITEM + 7)}
    catalogue = build_sessions(many, IDS).for_catalogue(IDS, weight=1.0)
    assert int(catalogue.item_indptr[2] - catalogue.item_indptr[1]) == MAX_SESSIONS_PER_ITEM
    # A catalogue without i2: it leaves every session (and cannot be recommended).
    without = build_sessions({"a": ["i1", "i2", "i3"]}, IDS).for_catalogue(["i1", "i3", "new"], weight=1.0)
    assert without.items.tolist() == [0, 1]
    assert without.scores([0])[0].tolist() == [1]


def test_no_user_id_is_stored(tmp_path: Path) -> None:
    _, _ = write_sessions(tmp_path, build_sessions({"user-with-a-name": ["i1", "i2"]}, IDS))
    assert b"user-with-a-name" not in (tmp_path / "item_sessions.npz").read_bytes()


def test_the_file_round_trips_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    stored = build_sessions(random_users(3), IDS)
    name, digest = write_sessions(tmp_path, stored)
    back = read_sessions(tmp_path, name, digest)
    assert back.ids == stored.ids
    np.testing.assert_array_equal(back.indptr, stored.indptr)
    np.testing.assert_array_equal(back.items, stored.items)
    with pytest.raises(ModelError, match="does not match the manifest"):
        read_sessions(tmp_path, name, "0" * 64)
    with pytest.raises(ModelError, match="missing"):
        read_sessions(tmp_path, "other.npz", digest)
    bad = tmp_path / "bad.npz"
    np.savez(bad, ids=np.asarray(IDS), indptr=np.asarray([0, 5]), items=np.asarray([1, 2]))
    with pytest.raises(ModelError, match="inconsistent"):
        load_sessions(bad)


def test_a_batch_scores_each_history_as_alone() -> None:
    """The worker scores a batch at once, `profilestream evaluate` one window at a time: online
    equals offline only if a window's term does not depend on its batch (bit for bit)."""
    catalogue = build_sessions(random_users(9, users=80), IDS).for_catalogue(IDS, weight=0.15, neighbours=5)
    rng = np.random.default_rng(4)
    histories = [[int(i) for i in rng.integers(0, len(IDS), int(rng.integers(0, 14)))] for _ in range(60)]
    histories.append([14])  # an item no session holds
    batch = catalogue.scores_batch(histories)
    for history, (rows, values) in zip(histories, batch, strict=True):
        alone_rows, alone_values = catalogue.scores(history)
        np.testing.assert_array_equal(rows, alone_rows)
        np.testing.assert_array_equal(values, alone_values)
    shuffled = list(reversed(histories))
    for (rows, values), (back_rows, back_values) in zip(
        batch, reversed(catalogue.scores_batch(shuffled)), strict=True
    ):
        np.testing.assert_array_equal(rows, back_rows)
        np.testing.assert_array_equal(values, back_values)
    assert any(len(rows) for rows, _ in batch) and catalogue.scores_batch([]) == []
