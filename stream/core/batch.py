"""Pure batch logic: a batch's events applied to their users' windows, and what changed.

Shared by the worker and the offline recomputation, so both compute the same windows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from stream.core.events import Event, EventType
from stream.core.identity import MERGED_FROM
from stream.core.prior import popularity_increment
from stream.core.window import Window, WindowChange, WindowConfig, apply_events, received_ms_of


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did to the windows: inputs for the encoder and the Redis write."""

    changed: list[tuple[str, Window]]
    # (user id, receive time of the user's last forget: the window's cut)
    forgets: list[tuple[str, int]]
    popularity: dict[str, float]
    late: int
    duplicates: int
    dropped_for_bytes: int = 0
    received_before_forget: int = 0  # events refused by their user's forget cut (`WindowChange`)


def group_by_user(events: Sequence[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        grouped[event.user_id].append(event)
    return grouped


def apply_batch(
    windows: dict[str, Window], events: Sequence[Event], config: WindowConfig, popularity_half_life_ms: int
) -> tuple[dict[str, Window], BatchOutcome]:
    """Pure: the new windows of the batch's users and what changed (used by the worker and tests)."""
    new_windows: dict[str, Window] = {}
    changed: list[tuple[str, Window]] = []
    forgets: list[tuple[str, int]] = []
    popularity: dict[str, float] = defaultdict(float)
    late = duplicates = dropped_for_bytes = received_before_forget = 0
    for user_id, user_events in group_by_user(events).items():
        before = windows.get(user_id, Window())
        change: WindowChange = apply_events(before, user_events, config)
        new_windows[user_id] = change.window
        late += change.late
        duplicates += change.duplicates
        dropped_for_bytes += change.dropped_for_bytes
        received_before_forget += change.received_before_forget
        if change.forgotten and change.window.forgotten_received_ms is not None:
            # The receive time of the cut, as the window applies it: Redis' tombstone compares it
            # with a profile's newest receive time, so both cut by the same order.
            forgets.append((user_id, change.window.forgotten_received_ms))
        if change.window.events != before.events:
            changed.append((user_id, change.window))
        # Only events that entered the window count towards popularity: replays add nothing, and
        # nor do events a login moved from an anonymous window (they counted when first seen).
        counted = {e.event_id for e in before.events}
        counted.update(e.event_id for e in user_events if MERGED_FROM in e.context)
        for event in change.window.events:
            if event.event_id not in counted and event.item_id is not None:
                weight = config.type_weights.get(event.type, 0.0)
                popularity[event.item_id] += popularity_increment(
                    weight, event.ts_ms, popularity_half_life_ms
                )
    outcome = BatchOutcome(
        changed, forgets, dict(popularity), late, duplicates, dropped_for_bytes, received_before_forget
    )
    return new_windows, outcome


def not_forgotten(events: Sequence[Event], windows: dict[str, Window]) -> list[Event]:
    """The events that may still be recorded: forgets, and events received after their user's last
    forget.

    A replay of a forgotten user's old events must not refill the user's recent-activity list.
    """
    kept = []
    for event in events:
        window = windows.get(event.user_id)
        cut_ms = window.forgotten_received_ms if window is not None else None
        if event.type is EventType.FORGET or cut_ms is None or received_ms_of(event) > cut_ms:
            kept.append(event)
    return kept
