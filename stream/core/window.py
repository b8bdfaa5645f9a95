"""A user's rolling behaviour window: pure functions, no I/O.

The window is a function of the SET of events a user sent, not of their arrival order: it holds
the newest `max_events` distinct events (by event time, then event id) that are no older than
`max_age_ms` before the newest event. Adding events one by one, in any order, with duplicates,
gives the same window as adding them all at once, which is what makes replays and retries
idempotent and lets an offline recomputation equal the stream.

Weights: each event counts by its type (purchase > add_to_cart > click > view > search) times an
exponential decay in event time, measured from the window's newest event, never from the wall
clock, so that the same events always give the same weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from stream.core.events import Event, EventType
from stream.core.settings import Settings

DEFAULT_TYPE_WEIGHTS: Mapping[EventType, float] = MappingProxyType(
    {
        EventType.PURCHASE: 5.0,
        EventType.ADD_TO_CART: 3.0,
        EventType.CLICK: 2.0,
        EventType.VIEW: 1.0,
        EventType.SEARCH: 0.5,
    }
)


@dataclass(frozen=True, slots=True)
class WindowEvent:
    """The part of an event the window keeps (no session or context: less personal data held)."""

    event_id: str
    type: EventType
    ts_ms: int
    item_id: str | None = None
    query: str | None = None

    @property
    def order_key(self) -> tuple[int, str]:
        return (self.ts_ms, self.event_id)

    @classmethod
    def from_event(cls, event: Event) -> WindowEvent:
        return cls(event.event_id, event.type, event.ts_ms, event.item_id, event.query)


@dataclass(frozen=True, slots=True)
class WindowConfig:
    max_events: int = 50
    max_age_ms: int = 30 * 24 * 3600 * 1000
    half_life_ms: int = 7 * 24 * 3600 * 1000
    type_weights: Mapping[EventType, float] = field(default_factory=lambda: DEFAULT_TYPE_WEIGHTS)

    @classmethod
    def from_settings(cls, settings: Settings) -> WindowConfig:
        return cls(
            max_events=settings.window_max_events,
            max_age_ms=settings.window_max_age_s * 1000,
            half_life_ms=settings.window_half_life_s * 1000,
            type_weights=MappingProxyType({EventType(t): w for t, w in settings.type_weights.items()}),
        )


@dataclass(frozen=True, slots=True)
class Window:
    """Events oldest first; `forgotten_ts_ms` is set once the user asked to be forgotten."""

    events: tuple[WindowEvent, ...] = ()
    forgotten_ts_ms: int | None = None

    @property
    def newest(self) -> WindowEvent | None:
        return self.events[-1] if self.events else None

    @property
    def version(self) -> tuple[int, str] | None:
        """(newest event time, its event id): what makes one computed profile newer than another."""
        return self.newest.order_key if self.newest else None


@dataclass(frozen=True, slots=True)
class WindowChange:
    window: Window
    added: int = 0
    duplicates: int = 0
    late: int = 0
    evicted: int = 0
    forgotten: bool = False


def apply_events(window: Window, events: Iterable[Event], config: WindowConfig) -> WindowChange:
    """Add a user's events to the window and return the new window with what happened.

    A `forget` event removes every event at or before the forget's time and makes the window refuse
    such events from then on, so an old replay cannot bring a forgotten user back.
    """
    forgotten_ts_ms = window.forgotten_ts_ms
    incoming: list[WindowEvent] = []
    forgot = False
    for event in events:
        if event.type is EventType.FORGET:
            forgot = True
            forgotten_ts_ms = max(forgotten_ts_ms or event.ts_ms, event.ts_ms)
        else:
            incoming.append(WindowEvent.from_event(event))
    kept = window.events
    if forgotten_ts_ms is not None:
        # Cut by event time, not by arrival: that keeps the window a function of the event set.
        incoming = [e for e in incoming if e.ts_ms > forgotten_ts_ms]
        kept = tuple(e for e in kept if e.ts_ms > forgotten_ts_ms)

    by_id = {e.event_id: e for e in kept}
    duplicates = 0
    fresh: dict[str, WindowEvent] = {}
    for candidate in incoming:
        # An id names one event: a second event under a known id is a duplicate, even if it differs
        # (a producer's bug). The first one seen stays; a user's events keep their order in Kafka,
        # so replays and the offline recomputation see the same first one.
        if candidate.event_id in by_id or candidate.event_id in fresh:
            duplicates += 1
            continue
        fresh[candidate.event_id] = candidate
    newest_ts_ms = max([e.ts_ms for e in kept] + [e.ts_ms for e in fresh.values()], default=0)
    oldest_allowed_ms = newest_ts_ms - config.max_age_ms
    late = sum(1 for e in fresh.values() if e.ts_ms < oldest_allowed_ms)
    merged = sorted(
        [e for e in (*kept, *fresh.values()) if e.ts_ms >= oldest_allowed_ms], key=lambda e: e.order_key
    )
    survivors = tuple(merged[-config.max_events :])
    survivor_ids = {e.event_id for e in survivors}
    added = sum(1 for event_id in fresh if event_id in survivor_ids)
    evicted = sum(1 for e in kept if e.event_id not in survivor_ids)
    return WindowChange(
        window=replace(window, events=survivors, forgotten_ts_ms=forgotten_ts_ms),
        added=added,
        duplicates=duplicates,
        late=late,
        evicted=evicted,
        forgotten=forgot,
    )


def event_weights(window: Window, config: WindowConfig) -> list[float]:
    """Each window event's weight: its type's weight, halved every `half_life_ms` of event time."""
    newest = window.newest
    if newest is None:
        return []
    return [
        config.type_weights.get(e.type, 0.0) * 0.5 ** ((newest.ts_ms - e.ts_ms) / config.half_life_ms)
        for e in window.events
    ]


def purchased_items(window: Window) -> frozenset[str]:
    return frozenset(e.item_id for e in window.events if e.type is EventType.PURCHASE and e.item_id)


def window_version(window: Window) -> str:
    """A string that orders windows by freshness: if S is a subset of S', the window of S' has a
    version at least as large (byte-wise) as the window of S.

    It is the window's (event time, event id) keys, newest first, compared lexicographically: a
    superset of events has a newer (or equal) newest event, or else the same cut-off and
    element-wise newer-or-equal events. Comparing versions in Redis therefore lets a retried or
    replayed older state never overwrite a newer one, while any genuinely newer window (even one
    that only gained an out-of-order older event) does. Event ids hold no control characters
    (schema v1), so the NUL terminator sorts a shorter id before a longer one it prefixes.
    """
    return "".join(f"{e.ts_ms:016d}{e.event_id}\x00" for e in reversed(window.events))


def window_to_json(window: Window) -> dict[str, object]:
    """Compact JSON form for the Faust table and its changelog."""
    return {
        "e": [[e.event_id, e.type.value, e.ts_ms, e.item_id, e.query] for e in window.events],
        "f": window.forgotten_ts_ms,
    }


_EVENT_TYPES = {t.value: t for t in EventType}  # a dict lookup; Enum's __call__ is slow per event


def window_from_json(document: Mapping[str, object]) -> Window:
    rows = document.get("e") or []
    forgotten = document.get("f")
    assert isinstance(rows, list)
    types = _EVENT_TYPES
    return Window(
        events=tuple(
            WindowEvent(str(eid), types[kind], int(ts), item, query) for eid, kind, ts, item, query in rows
        ),
        forgotten_ts_ms=int(forgotten) if isinstance(forgotten, int) else None,
    )
