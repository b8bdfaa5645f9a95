from __future__ import annotations

from stream.core.events import Event, EventType
from stream.core.profile_text import build_profile_text, profile_parts
from stream.core.window import Window, WindowConfig, apply_events

CONFIG = WindowConfig(half_life_ms=1_000_000)
TITLES = {"i1": "red stapler", "i2": "blue pen", "i3": "desk lamp"}
T0 = 1_700_000_000_000


def ev(n: int, ts: int, kind: EventType, item: str | None = None, query: str | None = None) -> Event:
    return Event(f"e{n}", "u", kind, T0 + ts, item_id=item, query=query)


def window(*events: Event) -> Window:
    return apply_events(Window(), events, CONFIG).window


def test_heaviest_first_then_most_recent() -> None:
    w = window(
        ev(1, 0, EventType.VIEW, "i1"),
        ev(2, 10, EventType.PURCHASE, "i2"),
        ev(3, 20, EventType.VIEW, "i3"),
        ev(4, 30, EventType.SEARCH, query="ink"),
    )
    assert build_profile_text(w, CONFIG, TITLES.get) == "blue pen | desk lamp | red stapler | ink"


def test_repeated_items_add_up_and_unknown_items_are_skipped() -> None:
    w = window(
        ev(1, 0, EventType.VIEW, "i1"),
        ev(2, 1, EventType.VIEW, "i1"),
        ev(3, 2, EventType.CLICK, "i2"),
        ev(4, 3, EventType.PURCHASE, "unknown"),
    )
    parts = profile_parts(w, CONFIG, TITLES.get)
    assert [p.text for p in parts] == ["blue pen", "red stapler"]
    assert parts[1].weight > 1.99


def test_empty_window_and_truncation() -> None:
    assert build_profile_text(Window(), CONFIG, TITLES.get) == ""
    w = window(ev(1, 0, EventType.VIEW, "i1"), ev(2, 1, EventType.VIEW, "i2"))
    assert build_profile_text(w, CONFIG, TITLES.get, max_chars=8) == "blue pen"
