"""What a client may not say in an event, though the schema lets the worker's own records say it.

The worker writes events back to the events topic (`stream.core.identity`): the forgets it makes
for the ids linked to a forgotten one carry ``context.forget_of`` (and are not propagated again),
the events a login moves carry ``context.merged_from`` (and add nothing to popularity). The
worker's decoder must read those keys, so the schema (`stream.core.events.event_from_dict`)
allows them; a client setting them would switch those rules off for its own events: a forget
carrying ``forget_of`` would leave the linked ids unforgotten (a privacy hole), a view carrying
``merged_from`` would never count towards popularity.

`check_client_event` is the rule of every entry point a client reaches (the collector's
``POST /v1/events``, its standard tracking routes, the SDK; files replayed or loaded from
outside): each such event is refused alone, naming the field. A copy of the events topic itself
(``replay kafka://...``) carries the worker's records and is exempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.core.errors import InvalidEvent
from stream.core.events import Event, EventType
from stream.core.identity import FORGET_OF, MERGED_FROM

# Context keys only the worker writes, and why.
RESERVED_CONTEXT_KEYS: Mapping[str, str] = {
    FORGET_OF: "marks a forget the worker made for an id linked to a forgotten one",
    MERGED_FROM: "marks an event the worker moved from an anonymous window at a login",
}


def check_client_context(context: Mapping[Any, Any]) -> None:
    """Raise InvalidEvent naming ``context.KEY`` when `context` holds a key only the worker writes.

    Keys are compared exactly, as the worker compares them: ``Forget_Of`` is an ordinary key.
    """
    for key, meaning in RESERVED_CONTEXT_KEYS.items():
        if key in context:
            raise InvalidEvent(
                f"context.{key}",
                f"reserved for the worker (it {meaning}); a client may not set it: remove the key or "
                "rename it",
            )


def check_client_event(event: Event) -> None:
    """Raise InvalidEvent naming the field when `event`, sent by a client, says what only the
    worker may say (`check_client_context`) or what means nothing: an ``identify`` whose
    ``known_user_id`` is its own ``user_id`` (a login joins an anonymous id into another one; the
    worker would drop it)."""
    check_client_context(event.context)
    if event.type is EventType.IDENTIFY and event.known_user_id == event.user_id:
        raise InvalidEvent(
            "known_user_id",
            "equals user_id: an identify joins the anonymous id in user_id into another, known id; "
            "send the visitor's anonymous id as user_id, or send nothing when there is none",
        )
