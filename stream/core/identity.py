"""Anonymous to known: the pure part of joining an anonymous visitor's window into a known user's.

An `identify` event (a login: Segment's identify or alias, GA4's ``client_id`` with a ``user_id``,
Snowplow's ``duid``/``tnuid`` with a ``uid``, or profilestream's own `identify`) says that the
anonymous id in its ``user_id`` is the person ``known_user_id`` names. It is keyed by the
anonymous id, so Kafka delivers it after every event that id sent before it. The worker owning
that partition turns the anonymous window into events of the known user (`joined_events`), sends
them keyed by the known id, and only once the broker has them clears the anonymous window. The
known user's worker applies them like any events: the window is a function of the event set, so
the merge is by event time and a repeated event id (a resend after a crash) is a duplicate.

`resolve_identities` does the same over a whole event list: the offline recomputation of what the
stream ends with.

A `forget` of either id must forget both: `linked_forgets` builds the forgets of the ids linked to
a forgotten one. They carry ``context.forget_of`` and are not propagated again (no ping-pong).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from stream.core.events import MAX_ID_CHARS, Event, EventType
from stream.core.window import Window, WindowConfig, apply_events

# Context key of a forget made for a linked id; its value is the id whose forget caused it.
FORGET_OF = "forget_of"
# Context key of an event moved from an anonymous window: the anonymous id it came from.
MERGED_FROM = "merged_from"


@dataclass(frozen=True, slots=True)
class Join:
    """One identify record of a batch: `anonymous_id`'s window joins `known_id`'s."""

    anonymous_id: str
    known_id: str
    event: Event


def split_identities(events: Sequence[Event]) -> tuple[list[Event], list[Join]]:
    """The behaviour events (forgets included) and the joins of a batch, in batch order.

    A self-join (``user_id == known_user_id``) is dropped: there is nothing to move.
    """
    regular: list[Event] = []
    joins: list[Join] = []
    for event in events:
        if event.type is not EventType.IDENTIFY:
            regular.append(event)
        elif event.known_user_id is not None and event.known_user_id != event.user_id:
            joins.append(Join(event.user_id, event.known_user_id, event))
    return regular, joins


def joined_events(window: Window, anonymous_id: str, known_id: str) -> list[Event]:
    """The anonymous window's events as events of `known_id`, oldest first.

    Event ids, event times and receive times are kept: the known user's window deduplicates a
    resent event by its id, and a forget of the known user cuts them by the time they were
    received, as it cuts the user's own events.
    """
    return [
        Event(
            event_id=e.event_id,
            user_id=known_id,
            type=e.type,
            ts_ms=e.ts_ms,
            item_id=e.item_id,
            query=e.query,
            context={MERGED_FROM: anonymous_id},
            received_ms=e.received_ms,
        )
        for e in window.events
    ]


def cleared(window: Window) -> Window:
    """The anonymous window after its events moved: empty, but keeping a forget's cut (an old
    replay of a forgotten visitor must still be refused)."""
    return replace(window, events=())


def linked_forgets(forget: Event, linked_ids: Iterable[str]) -> list[Event]:
    """Forgets of `linked_ids` made from `forget` (same times), or none when `forget` was itself
    made so (propagating those again would bounce between the two ids)."""
    if forget.type is not EventType.FORGET or FORGET_OF in forget.context:
        return []
    return [
        Event(
            event_id=_derived_id(forget.event_id, linked),
            user_id=linked,
            type=EventType.FORGET,
            ts_ms=forget.ts_ms,
            context={FORGET_OF: forget.user_id},
            received_ms=forget.received_ms,
        )
        for linked in sorted(set(linked_ids) - {forget.user_id})
    ]


def _derived_id(parent: str, linked: str) -> str:
    digest = hashlib.sha256(f"{parent}\x00{linked}".encode()).hexdigest()[:24]
    return f"{parent[: MAX_ID_CHARS - 30]}:link-{digest}"


def resolve_identities(events: Sequence[Event], config: WindowConfig) -> list[Event]:
    """What the stream's joins do to `events` (in Kafka order per user), as one event list.

    Each join moves the anonymous id's window as it stands at the join (bounded by the window's
    limits, like the worker's) to the known id; events of the anonymous id after a join start a
    new anonymous window. Identify records themselves are dropped. The result, given to the
    offline recomputation, is what the stream ends with once it has drained.
    """
    out: list[Event] = []
    pending: dict[str, list[Event]] = {}
    # Each anonymous id's forget cut survives its joins, as in the worker (`cleared`).
    windows: dict[str, Window] = {}
    links: dict[str, set[str]] = {}
    for event in events:
        if event.type is EventType.IDENTIFY:
            known = event.known_user_id
            if known is None or known == event.user_id:
                continue
            anonymous = event.user_id
            moved = pending.pop(anonymous, [])
            window = apply_events(windows.get(anonymous, Window()), moved, config).window
            windows[anonymous] = cleared(window)
            # The anonymous id's forgets stay its own: they still cut what it sends later.
            out.extend(e for e in moved if e.type is EventType.FORGET)
            out.extend(joined_events(window, anonymous, known))
            links.setdefault(anonymous, set()).add(known)
            links.setdefault(known, set()).add(anonymous)
            continue
        pending.setdefault(event.user_id, []).append(event)
        for linked in linked_forgets(event, links.get(event.user_id, ())):
            pending.setdefault(linked.user_id, []).append(linked)
    for user_events in pending.values():
        out.extend(user_events)
    return out
