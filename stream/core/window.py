"""A user's rolling behaviour window: pure functions, no I/O.

The window is a function of the SET of events a user sent, not of their arrival order: it holds
the newest `max_events` distinct events (by event time, then event id) that are no older than
`max_age_ms` before the newest event, and of those only the newest that fit `max_bytes` once
stored (the oldest leave first, counted in `WindowChange.dropped_for_bytes`). Adding events one by
one, in any order, with duplicates, gives the same window as adding them all at once, which is
what makes replays and retries idempotent and lets an offline recomputation equal the stream.

Weights: each event counts by its type (purchase > add_to_cart > click > view > search) times an
exponential decay in event time, measured from the window's newest event, never from the wall
clock, so that the same events always give the same weights.

Forgetting goes by receive order: a `forget` removes every event RECEIVED at or before it, and the
window refuses such events from then on, whatever their own event times say (a client clock ten
minutes fast cannot bring an event back past a forget). Each event refused so, listed after the
forget but received before it, is counted (`WindowChange.received_before_forget`), never dropped
silently. An event's receive time is its
`received_ms` (set by the collector) or, for events that came another way, its `ts_ms`: a value
carried by the event itself, so the window stays a function of the event set and the offline
recomputation equals the stream.

Stored form (`encode_window`): compact UTF-8 JSON without backslash-u escapes:
``{"e":[[event_id,type,ts_ms,item_id,query,received_ms],...],"f":forget_ts,"r":forget_received}``.
`window_from_json` refuses anything else with `CorruptWindow`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import orjson

from stream.core.errors import ProfilestreamError
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
    received_ms: int = 0

    @property
    def order_key(self) -> tuple[int, str]:
        return (self.ts_ms, self.event_id)

    @classmethod
    def from_event(cls, event: Event) -> WindowEvent:
        return cls(event.event_id, event.type, event.ts_ms, event.item_id, event.query, received_ms_of(event))


def received_ms_of(event: Event) -> int:
    """When `event` was received: the collector's stamp, else (sent another way) its event time."""
    return event.received_ms if event.received_ms is not None else event.ts_ms


@dataclass(frozen=True, slots=True)
class WindowConfig:
    max_events: int = 50
    max_bytes: int = 262_144
    max_age_ms: int = 30 * 24 * 3600 * 1000
    half_life_ms: int = 7 * 24 * 3600 * 1000
    type_weights: Mapping[EventType, float] = field(default_factory=lambda: DEFAULT_TYPE_WEIGHTS)

    @classmethod
    def from_settings(cls, settings: Settings) -> WindowConfig:
        return cls(
            max_events=settings.window_max_events,
            max_bytes=settings.window_max_bytes,
            max_age_ms=settings.window_max_age_s * 1000,
            half_life_ms=settings.window_half_life_s * 1000,
            type_weights=MappingProxyType({EventType(t): w for t, w in settings.type_weights.items()}),
        )


@dataclass(frozen=True, slots=True)
class Window:
    """Events oldest first. Once the user asked to be forgotten, `forgotten_received_ms` is the
    receive time of the last forget (the cut) and `forgotten_ts_ms` the largest forget event time
    (the tombstone Redis keeps)."""

    events: tuple[WindowEvent, ...] = ()
    forgotten_ts_ms: int | None = None
    forgotten_received_ms: int | None = None

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
    dropped_for_bytes: int = 0
    forgotten: bool = False
    # Events refused because they were received at or before a forget listed before them (an
    # earlier batch's, or earlier in this one): a sender whose receive time lags the forget's.
    # Events a forget listed after them removes are what it asked for, and not counted.
    received_before_forget: int = 0


def apply_events(window: Window, events: Iterable[Event], config: WindowConfig) -> WindowChange:
    """Add a user's events to the window and return the new window with what happened.

    A `forget` event removes every event received at or before it and makes the window refuse such
    events from then on, so an old replay cannot bring a forgotten user back.
    """
    forgotten_ts_ms = window.forgotten_ts_ms
    cut_ms = window.forgotten_received_ms
    incoming: list[WindowEvent] = []
    forgot = False
    received_before_forget = 0
    for event in events:
        if event.type is EventType.FORGET:
            forgot = True
            forgotten_ts_ms = max(forgotten_ts_ms or event.ts_ms, event.ts_ms)
            received = received_ms_of(event)
            cut_ms = max(cut_ms or received, received)
        elif event.type is not EventType.IDENTIFY:
            # An identity record is an instruction to the worker (stream/core/identity.py), not
            # behaviour: it never enters a window.
            candidate = WindowEvent.from_event(event)
            if cut_ms is not None and candidate.received_ms <= cut_ms:
                received_before_forget += 1
            incoming.append(candidate)
    kept = window.events
    if cut_ms is not None:
        # Cut by receive time carried in the events, not by the order this batch happens to list
        # them in: that keeps the window a function of the event set.
        incoming = [e for e in incoming if e.received_ms > cut_ms]
        kept = tuple(e for e in kept if e.received_ms > cut_ms)

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
    by_count = merged[-config.max_events :]
    survivors = fit_bytes(by_count, config.max_bytes, forgotten_ts_ms, cut_ms)
    survivor_ids = {e.event_id for e in survivors}
    added = sum(1 for event_id in fresh if event_id in survivor_ids)
    evicted = sum(1 for e in kept if e.event_id not in survivor_ids)
    return WindowChange(
        window=replace(
            window, events=survivors, forgotten_ts_ms=forgotten_ts_ms, forgotten_received_ms=cut_ms
        ),
        added=added,
        duplicates=duplicates,
        late=late,
        evicted=evicted,
        dropped_for_bytes=len(by_count) - len(survivors),
        forgotten=forgot,
        received_before_forget=received_before_forget,
    )


# JSON escapes a character in at most 6 bytes (\u001f); UTF-8 needs at most 4.
_MAX_BYTES_PER_CHAR = 6
_ROW_OVERHEAD_BYTES = 96  # brackets, quotes, commas, the type, two 16-digit times, nulls
_DOC_OVERHEAD_BYTES = 64  # {"e":[],"f":...,"r":...}


def fit_bytes(
    events: Sequence[WindowEvent], max_bytes: int, forgotten_ts_ms: int | None, cut_ms: int | None
) -> tuple[WindowEvent, ...]:
    """The newest of `events` (oldest first) whose stored window is at most `max_bytes`."""
    bound = _DOC_OVERHEAD_BYTES + sum(_row_bound(e) for e in events)
    if bound <= max_bytes:
        # Nearly every window: a cheap upper bound, no JSON encoding.
        return tuple(events)
    fixed = len(_encode({"e": [], "f": forgotten_ts_ms, "r": cut_ms}))
    total = fixed
    kept = 0
    for event in reversed(events):
        size = len(_encode(_row(event))) + (1 if kept else 0)
        if total + size > max_bytes:
            break
        total += size
        kept += 1
    return tuple(events[len(events) - kept :])


def _row_bound(e: WindowEvent) -> int:
    chars = len(e.event_id) + len(e.item_id or "") + len(e.query or "")
    return _ROW_OVERHEAD_BYTES + _MAX_BYTES_PER_CHAR * chars


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
    # A list, not a generator: join builds one anyway, and this runs per changed user and batch.
    return "".join([f"{e.ts_ms:016d}{e.event_id}\x00" for e in reversed(window.events)])


class CorruptWindow(ProfilestreamError):
    """A stored window is not in the form `encode_window` writes."""


def _row(e: WindowEvent) -> list[object]:
    return [e.event_id, e.type.value, e.ts_ms, e.item_id, e.query, e.received_ms]


def _encode(document: object) -> bytes:
    # No \u escapes: an emoji is 4 bytes stored, not 12, so the byte bound means what it says.
    # orjson writes the bytes json.dumps(separators=(",", ":"), ensure_ascii=False) writes for a
    # window (a hypothesis property checks it) in about a tenth of the time: the windows of a
    # batch were its largest JSON, written on the event loop.
    return orjson.dumps(document)


def window_to_json(window: Window) -> dict[str, object]:
    """Compact JSON form for the Faust table and its changelog."""
    return {
        "e": [_row(e) for e in window.events],
        "f": window.forgotten_ts_ms,
        "r": window.forgotten_received_ms,
    }


def encode_window(window: Window) -> bytes:
    """The window as stored in the table and its changelog (UTF-8 JSON, at most `max_bytes`)."""
    return _encode(window_to_json(window))


_EVENT_TYPES = {t.value: t for t in EventType}  # a dict lookup; Enum's __call__ is slow per event


def decode_window(raw: bytes) -> Window:
    """A stored window; raise `CorruptWindow` for anything `encode_window` does not write."""
    try:
        document = orjson.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptWindow(f"not UTF-8 JSON: {exc}") from exc
    return window_from_json(document)


def decode_own_window(raw: bytes) -> Window:
    """A window `encode_window` wrote in this worker a moment ago (sent to its compute process):
    read without `decode_window`'s checks, which cost a third of the decoding. Raises KeyError or
    IndexError for anything else; stored windows go through `decode_window`."""
    document = orjson.loads(raw)
    event_type, event = _EVENT_TYPES, WindowEvent
    return Window(
        events=tuple([event(r[0], event_type[r[1]], r[2], r[3], r[4], r[5]) for r in document["e"]]),
        forgotten_ts_ms=document.get("f"),
        forgotten_received_ms=document.get("r"),
    )


def window_from_json(document: object) -> Window:
    """A window from its JSON form; raise `CorruptWindow` naming what is wrong."""
    if not isinstance(document, dict):
        raise CorruptWindow(f"expected a JSON object, got {type(document).__name__}")
    rows = document.get("e", [])
    if not isinstance(rows, list):
        raise CorruptWindow(f"'e' is {type(rows).__name__}, expected a list of events")
    forgotten = _optional_int(document, "f")
    # Windows written before receive times were stored cut at the forget's event time.
    cut = _optional_int(document, "r") if "r" in document else forgotten
    return Window(
        events=tuple(_event_from_row(i, row) for i, row in enumerate(rows)),
        forgotten_ts_ms=forgotten,
        forgotten_received_ms=cut,
    )


def _event_from_row(index: int, row: object) -> WindowEvent:
    # Rows of 5 were written before receive times were stored: their event time stands in.
    if not isinstance(row, list) or len(row) not in (5, 6):
        raise CorruptWindow(f"event {index} is not a list of 5 or 6 values")
    eid, kind, ts, item, query = row[:5]
    received = row[5] if len(row) == 6 else ts
    event_type = _EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if (
        not isinstance(eid, str)
        or event_type is None
        or not _is_int(ts)
        or not _is_int(received)
        or not (item is None or isinstance(item, str))
        or not (query is None or isinstance(query, str))
    ):
        raise CorruptWindow(f"event {index} has a value of the wrong type: {str(row)[:200]}")
    return WindowEvent(eid, event_type, ts, item, query, received)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_int(document: Mapping[str, object], name: str) -> int | None:
    value = document.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise CorruptWindow(f"{name!r} is {type(value).__name__}, expected an integer or null")
    assert isinstance(value, int)
    return value
