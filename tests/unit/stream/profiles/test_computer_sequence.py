"""`PROFILESTREAM_USER_VECTOR=sequence`: the tower reads the window as a sequence, in one call per
batch, and the stream's incremental computation equals the offline recomputation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from models.encoder.cooccurrence import CatalogueNeighbours, build_neighbours
from models.encoder.sequence_tower import ItemResiduals, SequenceInputs, sequence_features
from models.encoder.sessions import CatalogueSessions, build_sessions
from stream.core.batch import group_by_user
from stream.core.errors import ConfigError
from stream.core.events import Event, EventType
from stream.core.window import Window, WindowConfig, apply_events
from stream.profiles.computer import ProfileComputer, ProfileConfig
from stream.profiles.offline import offline_payloads
from tests.support.fakes import BagOfWordsEncoder, FakeCatalogue

TITLES = {
    "stapler": "red metal stapler",
    "staples": "staples for red metal stapler",
    "stapler2": "blue metal stapler",
    "pens": "gel pens black",
    "pens2": "gel pens blue",
    "lamp": "desk lamp led",
    "lamp2": "desk lamp halogen",
    "paper": "printer paper a4",
}
T0 = 1_700_000_000_000
# Training sequences of the co-occurrence lists: staplers go with paper, pens with lamps (which
# the item texts do not suggest).
CO_BOUGHT = {
    "a": ["stapler", "paper"],
    "b": ["stapler", "paper", "pens"],
    "c": ["pens", "lamp2"],
    "d": ["pens", "lamp2", "staples"],
    "e": ["lamp", "stapler2"],
}


class RecencyTower:
    """A stand-in for the ONNX tower: each slot weighted 4x the one before (newest last)."""

    max_length = 6
    version = "sequence:fake"

    def __init__(
        self, residuals: ItemResiduals | None = None, knn_weight: float = 0.0, session_weight: float = 0.0
    ) -> None:
        self.batches: list[SequenceInputs] = []
        self.residuals = residuals
        self.knn_weight = knn_weight  # > 0: carries CO_BOUGHT's neighbour lists
        self.session_weight = session_weight  # > 0: carries CO_BOUGHT as sessions

    def item_vectors(self, ids: Sequence[str], vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return vectors if self.residuals is None else self.residuals.apply(ids, vectors)

    def neighbours_for(self, ids: Sequence[str]) -> CatalogueNeighbours | None:
        if self.knn_weight <= 0:
            return None
        return build_neighbours(CO_BOUGHT, list(TITLES)).for_catalogue(ids, 0.9, self.knn_weight)

    def sessions_for(self, ids: Sequence[str]) -> CatalogueSessions | None:
        if self.session_weight <= 0:
            return None
        return build_sessions(CO_BOUGHT, list(TITLES)).for_catalogue(ids, weight=self.session_weight)

    def encode(self, inputs: SequenceInputs) -> npt.NDArray[np.float32]:
        self.batches.append(inputs)
        weights = 4.0 ** np.arange(inputs.vectors.shape[1]) * inputs.mask
        out = (weights[:, :, None] * inputs.vectors).sum(axis=1)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        result: npt.NDArray[np.float32] = (out / np.where(norms == 0, 1, norms)).astype(np.float32)
        return result


def ev(n: int, user: str, kind: EventType, item: str | None = None, query: str | None = None) -> Event:
    return Event(f"e{n}", user, kind, T0 + n * 1000, item_id=item, query=query)


def sequence_computer(top_k: int = 3, tower: RecencyTower | None = None) -> ProfileComputer:
    config = ProfileConfig(WindowConfig(), top_k=top_k, user_vector="sequence")
    return ProfileComputer(BagOfWordsEncoder(), FakeCatalogue(TITLES), config, tower or RecencyTower())


def test_the_newest_events_neighbours_come_first() -> None:
    # Four events about staplers, then one lamp: a mean of the window would say "staplers".
    events = [
        ev(1, "u", EventType.VIEW, "stapler"),
        ev(2, "u", EventType.VIEW, "stapler2"),
        ev(3, "u", EventType.CLICK, "staples"),
        ev(4, "u", EventType.VIEW, "stapler"),
        ev(5, "u", EventType.VIEW, "lamp"),
    ]
    payload = offline_payloads(events, sequence_computer(top_k=2))["u"]
    assert [i["item_id"] for i in payload["items"]] == ["lamp", "lamp2"]
    assert payload["model_version"] == "bow-test+sequence:fake"


def test_one_tower_call_per_batch_with_queries_and_unknown_items_skipped() -> None:
    tower = RecencyTower()
    comp = sequence_computer(tower=tower)
    events = [
        ev(1, "a", EventType.VIEW, "lamp"),
        ev(2, "a", EventType.VIEW, "not-in-catalogue"),
        ev(3, "b", EventType.SEARCH, query="gel pens"),
        ev(4, "c", EventType.VIEW, "not-in-catalogue"),
    ]
    payloads = offline_payloads(events, comp)
    assert sorted(payloads) == ["a", "b"]  # c has nothing the tower could read
    assert len(tower.batches) == 1
    (batch,) = tower.batches
    assert batch.lengths.tolist() == [1, 1]  # the unknown item was skipped, the query read
    assert batch.event_types[:, -1].tolist() == [2, 1]  # view, search
    assert payloads["b"]["items"][0]["item_id"] in {"pens", "pens2"}


def test_without_a_tower_the_mode_is_a_clear_error() -> None:
    config = ProfileConfig(WindowConfig(), user_vector="sequence")
    with pytest.raises(ConfigError, match="PROFILESTREAM_SEQUENCE_MODEL_DIR"):
        ProfileComputer(BagOfWordsEncoder(), FakeCatalogue(TITLES), config)


@pytest.mark.parametrize("knn_weight", [0.0, 0.5], ids=["tower", "tower + kNN"])
def test_incremental_batches_equal_the_offline_recomputation(knn_weight: float) -> None:
    events = _random_events(seed=3)
    comp = sequence_computer(top_k=4, tower=RecencyTower(knn_weight=knn_weight))
    windows: dict[str, Window] = {}
    online: dict[str, dict[str, Any]] = {}
    # As the worker: apply each batch to the users' windows, recompute the changed users.
    for start in range(0, len(events), 13):
        changed = group_by_user(events[start : start + 13])
        for user, user_events in changed.items():
            windows[user] = apply_events(windows.get(user, Window()), user_events, comp.config.window).window
        for profile in comp.compute([(user, windows[user]) for user in sorted(changed)]):
            payload = profile.payload(computed_at_ms=0)
            del payload["computed_at_ms"]
            online[profile.user_id] = payload
    offline = offline_payloads(events, sequence_computer(top_k=4, tower=RecencyTower(knn_weight=knn_weight)))
    assert sorted(online) == sorted(offline)
    # Ids, reasons and versions exactly; scores to float32 rounding (batch composition differs).
    for user, expected in offline.items():
        got = dict(online[user])
        got_items, expected_items = got.pop("items"), dict(expected).pop("items")
        assert got == {k: v for k, v in expected.items() if k != "items"}
        assert [(i["item_id"], i["reason"]) for i in got_items] == [
            (i["item_id"], i["reason"]) for i in expected_items
        ]
        assert [i["score"] for i in got_items] == pytest.approx(
            [i["score"] for i in expected_items], abs=1e-6
        )


def test_item_residuals_move_both_the_input_and_the_ranked_items_and_cold_items_keep_their_text() -> None:
    catalogue = FakeCatalogue(TITLES)
    # A residual that pulls "paper" towards the lamps; every other item has none (cold) and keeps
    # its text vector exactly.
    lamp = catalogue.vectors[catalogue.row("lamp") or 0]
    residuals = ItemResiduals(("paper",), (3.0 * lamp)[None, :].astype(np.float32))
    config = ProfileConfig(WindowConfig(), top_k=3, user_vector="sequence")
    ranked: dict[str, dict[str, list[str]]] = {}
    for name, tower in (("residuals", RecencyTower(residuals)), ("text only", RecencyTower())):
        comp = ProfileComputer(BagOfWordsEncoder(), catalogue, config, tower)
        ranked[name] = {
            item: [
                i["item_id"] for i in offline_payloads([ev(1, "u", EventType.VIEW, item)], comp)["u"]["items"]
            ]
            for item in ("lamp2", "paper")
        }
        if name == "residuals":
            adjusted = comp.catalogue.vectors
            cold = [row for i in TITLES if i != "paper" and (row := catalogue.row(i)) is not None]
            np.testing.assert_array_equal(adjusted[cold], catalogue.vectors[cold])
            # Input side: the tower read "paper" through its residual.
            np.testing.assert_allclose(
                tower.batches[-1].vectors[0, -1], adjusted[catalogue.row("paper") or 0]
            )
        else:
            assert comp.catalogue.vectors is catalogue.vectors
    # Scoring side: a lamp viewer (lamp2 is cold: it works from its text) is now shown paper.
    assert ranked["residuals"]["lamp2"] == ["lamp2", "lamp", "paper"], ranked
    assert "paper" not in ranked["text only"]["lamp2"], ranked
    # Input side: a paper viewer is shown lamps, which the text alone does not suggest.
    assert ranked["residuals"]["paper"][1:] == ["lamp", "lamp2"], ranked
    assert "lamp" not in ranked["text only"]["paper"], ranked


def _random_events(seed: int, n: int = 60, users: int = 5) -> list[Event]:
    kinds = [EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE, EventType.SEARCH]
    items = list(TITLES)
    rng = np.random.default_rng(seed)
    events: list[Event] = []
    for n_ in range(n):
        kind = kinds[int(rng.integers(len(kinds)))]
        user = f"u{int(rng.integers(users))}"
        if kind is EventType.SEARCH:
            events.append(ev(n_, user, kind, query=str(rng.choice(["gel pens", "desk lamp", "paper"]))))
        else:
            events.append(ev(n_, user, kind, item=items[int(rng.integers(len(items)))]))
    return events


def _brute_force_fused(
    window: Window, comp: ProfileComputer, weight: float, k: int, session_weight: float = 0.0
) -> list[tuple[str, float]]:
    """The fused score of every catalogue item, written out: cosine with the tower's user vector,
    plus the prior, plus weight x sum over the window's items (newest first, age a) of
    0.9**a x similarity, plus the session term of the window's items (newest first); purchased and
    out-of-stock items left out; top k, ties by row."""
    catalogue = comp.catalogue
    ids = list(catalogue.ids)
    encoder = BagOfWordsEncoder()
    queries = {e.query: encoder.encode([e.query])[0] for e in window.events if e.query}
    assert comp.tower is not None
    user = comp.tower.encode(sequence_features([window], catalogue.row, catalogue.vectors, queries, 6))[0]
    lists = build_neighbours(CO_BOUGHT, ids)
    knn = np.zeros(len(ids))
    item_events = [e.item_id for e in reversed(window.events) if e.item_id is not None]
    for age, item in enumerate(item_events):
        for neighbour, similarity in lists.neighbours_of(item):
            knn[ids.index(neighbour)] += 0.9**age * similarity
    prior = comp.config.popularity_weight * np.log1p(catalogue.popularity)
    scores = catalogue.vectors @ user + prior + weight * knn
    if session_weight:
        sessions = build_sessions(CO_BOUGHT, ids).for_catalogue(ids, weight=session_weight)
        history = [ids.index(item) for item in item_events]
        rows, values = sessions.scores(history)
        scores[rows] += values
    bought = {e.item_id for e in window.events if e.type is EventType.PURCHASE}
    order = sorted(
        (row for row in range(len(ids)) if ids[row] not in bought and catalogue.in_stock[row]),
        key=lambda row: (-scores[row], row),
    )
    return [(ids[row], float(scores[row])) for row in order[:k]]


@pytest.mark.parametrize("weight", [0.3, 2.0])
def test_the_fused_ranking_equals_a_brute_force_fused_ranking(weight: float) -> None:
    events = _random_events(seed=5, n=40)
    config = ProfileConfig(WindowConfig(), top_k=3, user_vector="sequence", popularity_weight=0.05)
    # With the prior and an out-of-stock neighbour (staples), which the term must not bring back.
    catalogue = FakeCatalogue(TITLES, out_of_stock={"staples"}, counts={"paper": 9.0, "pens": 3.0})
    comp = ProfileComputer(BagOfWordsEncoder(), catalogue, config, RecencyTower(knn_weight=weight))
    plain = ProfileComputer(BagOfWordsEncoder(), catalogue, config, RecencyTower())
    windows: dict[str, Window] = {}
    for user, user_events in group_by_user(events).items():
        windows[user] = apply_events(Window(), user_events, config.window).window
    changed = 0
    for profile, without in zip(
        comp.compute(sorted(windows.items())), plain.compute(sorted(windows.items())), strict=True
    ):
        expected = _brute_force_fused(windows[profile.user_id], comp, weight, 3)
        assert [i.item_id for i in profile.items] == [item for item, _ in expected]
        assert [i.score for i in profile.items] == pytest.approx([s for _, s in expected], abs=1e-5)
        changed += [i.item_id for i in profile.items] != [i.item_id for i in without.items]
    assert changed, "the co-occurrence term changed no list: the test would not see it missing"


@pytest.mark.parametrize(("knn_weight", "session_weight"), [(0.0, 0.5), (0.3, 0.5), (0.3, 3.0)])
def test_the_session_term_is_added_to_the_fused_ranking(knn_weight: float, session_weight: float) -> None:
    events = _random_events(seed=7, n=60)
    config = ProfileConfig(WindowConfig(), top_k=3, user_vector="sequence", popularity_weight=0.05)
    catalogue = FakeCatalogue(TITLES, out_of_stock={"staples"}, counts={"paper": 9.0, "pens": 3.0})
    tower = RecencyTower(knn_weight=knn_weight, session_weight=session_weight)
    comp = ProfileComputer(BagOfWordsEncoder(), catalogue, config, tower)
    plain = ProfileComputer(BagOfWordsEncoder(), catalogue, config, RecencyTower(knn_weight=knn_weight))
    assert comp.sessions is not None and comp.has_boost
    windows = {
        user: apply_events(Window(), user_events, config.window).window
        for user, user_events in group_by_user(events).items()
    }
    changed = 0
    for profile, without in zip(
        comp.compute(sorted(windows.items())), plain.compute(sorted(windows.items())), strict=True
    ):
        expected = _brute_force_fused(windows[profile.user_id], comp, knn_weight, 3, session_weight)
        assert [i.item_id for i in profile.items] == [item for item, _ in expected]
        assert [i.score for i in profile.items] == pytest.approx([s for _, s in expected], abs=1e-5)
        changed += [i.item_id for i in profile.items] != [i.item_id for i in without.items]
        # `cooccurrence`, what `profilestream evaluate` adds, is the same term.
        term = comp.cooccurrence(windows[profile.user_id])
        assert term is not None
    assert changed, "the session term changed no list: the test would not see it missing"


def test_a_co_bought_item_the_text_does_not_suggest_is_recommended() -> None:
    # Pens were bought with lamp2 (CO_BOUGHT): a pen viewer sees lamp2 only through the kNN term.
    config = ProfileConfig(WindowConfig(), top_k=3, user_vector="sequence")
    view = [ev(1, "u", EventType.VIEW, "pens")]
    fused = ProfileComputer(BagOfWordsEncoder(), FakeCatalogue(TITLES), config, RecencyTower(knn_weight=2.0))
    plain = ProfileComputer(BagOfWordsEncoder(), FakeCatalogue(TITLES), config, RecencyTower())
    assert "lamp2" in [i["item_id"] for i in offline_payloads(view, fused)["u"]["items"]]
    assert "lamp2" not in [i["item_id"] for i in offline_payloads(view, plain)["u"]["items"]]
    assert fused.cooccurrence(Window()) is not None and plain.cooccurrence(Window()) is None
