"""`PROFILESTREAM_USER_VECTOR=sequence`: the tower reads the window as a sequence, in one call per
batch, and the stream's incremental computation equals the offline recomputation."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from models.encoder.sequence_tower import SequenceInputs
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


class RecencyTower:
    """A stand-in for the ONNX tower: each slot weighted 4x the one before (newest last)."""

    max_length = 6
    version = "sequence:fake"

    def __init__(self) -> None:
        self.batches: list[SequenceInputs] = []

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


def test_incremental_batches_equal_the_offline_recomputation() -> None:
    kinds = [EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE, EventType.SEARCH]
    items = list(TITLES)
    rng = np.random.default_rng(3)
    events: list[Event] = []
    for n in range(60):
        kind = kinds[int(rng.integers(len(kinds)))]
        user = f"u{int(rng.integers(5))}"
        if kind is EventType.SEARCH:
            events.append(ev(n, user, kind, query=str(rng.choice(["gel pens", "desk lamp", "paper"]))))
        else:
            events.append(ev(n, user, kind, item=items[int(rng.integers(len(items)))]))
    comp = sequence_computer(top_k=4)
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
    offline = offline_payloads(events, sequence_computer(top_k=4))
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
