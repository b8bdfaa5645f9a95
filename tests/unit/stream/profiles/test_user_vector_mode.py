"""The served user vector by measurement (issue 17): `auto` is the sequence tower when one is
installed, else `last_item`, the best zero-shot mode; `last_item` is the window's newest item."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.encoder.sequence_tower import SEQUENCE_MANIFEST
from stream.core.events import EventType
from stream.core.settings import load_settings
from stream.core.window import Window, WindowConfig, apply_events
from stream.profiles.computer import ProfileComputer, ProfileConfig, user_vector_mode
from tests.support.fakes import BagOfWordsEncoder, FakeCatalogue
from tests.unit.stream.profiles.test_computer import TITLES, ev


def test_auto_serves_the_tower_when_one_is_installed_else_the_last_item(tmp_path: Path) -> None:
    settings = load_settings({}, sequence_model_dir=tmp_path / "tower")
    assert settings.user_vector == "auto"
    assert user_vector_mode(settings) == "last_item"
    assert ProfileConfig.from_settings(settings).user_vector == "last_item"
    (tmp_path / "tower").mkdir()
    (tmp_path / "tower" / SEQUENCE_MANIFEST).write_text("{}")
    assert user_vector_mode(settings) == "sequence"
    # An explicit choice is kept, tower or not.
    for mode in ("items", "text", "hybrid", "last_item"):
        assert user_vector_mode(settings.model_copy(update={"user_vector": mode})) == mode


def test_last_item_is_the_newest_item_or_query_of_the_window() -> None:
    catalogue = FakeCatalogue(TITLES)
    config = ProfileConfig(WindowConfig(), top_k=2, user_vector="last_item")
    comp = ProfileComputer(BagOfWordsEncoder(), catalogue, config)
    stapler_then_pens = [ev(1, "u", EventType.VIEW, "stapler"), ev(2, "u", EventType.VIEW, "pens")]
    ending_in_search = [*stapler_then_pens, ev(3, "u", EventType.SEARCH, query="desk lamp")]
    for events, expected in (
        (stapler_then_pens, catalogue.vectors[catalogue.row("pens") or 0]),
        (ending_in_search, BagOfWordsEncoder().encode(["desk lamp"])[0]),
    ):
        window = apply_events(Window(), events, config.window).window
        (profile,) = comp.compute([("u", window)])
        np.testing.assert_allclose(profile.vector, expected, atol=1e-6)
    (profile,) = comp.compute([("u", apply_events(Window(), stapler_then_pens, config.window).window)])
    assert [r.item_id for r in profile.items] == ["pens", "pens2"]
