"""Anonymous to known, in the worker: moving a joined visitor's window through Kafka, and forgets
of linked ids.

The batch's identify records (`stream.core.identity.split_identities`) are keyed by the anonymous
id, so this worker owns that id's window and has seen every event Kafka holds before the record.
For each join, `IdentityJoiner.join`:

1. records the link in Redis (`stream.redis.identity`), so a forget of either id finds the other;
2. sends the anonymous window's events, as events of the known id, to the events topic keyed by
   the known id, and waits for the broker's acks;
3. only then hands back the batch's windows with the anonymous window cleared and the anonymous
   user left out of the profiles to write; after the batch's Redis write the worker calls
   `remove` to delete the anonymous user's keys, then stores the windows and its position.

A crash anywhere before the position is stored replays the batch: the anonymous window is either
still there (its events are sent again, and the known user's window treats a repeated event id as
a duplicate) or already cleared (nothing more to send). So nothing is lost and nothing counts
twice in a window. The known user's worker needs nothing special: the moved events are ordinary
events of that user.

`propagate_forgets` sends, for each forget in the batch, forgets of the ids linked to its user
(acknowledged before the batch goes on), then deletes the forgotten users' links.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from stream.core.batch import BatchOutcome
from stream.core.events import Event, EventType
from stream.core.identity import FORGET_OF, Join, cleared, joined_events, linked_forgets, split_identities
from stream.core.settings import Settings
from stream.core.window import Window
from stream.redis.identity import IdentityLinks

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Joined:
    """The batch's windows and outcome after its joins, and the anonymous ids that moved."""

    windows: dict[str, Window]
    outcome: BatchOutcome
    anonymous: tuple[str, ...] = ()


class IdentityJoiner:
    def __init__(self, events_topic: Any, settings: Settings) -> None:
        self._topic = events_topic
        self._settings = settings
        # Opened on first use, inside the worker's event loop; most batches never need it.
        self._links: IdentityLinks | None = None

    @property
    def links(self) -> IdentityLinks:
        if self._links is None:
            self._links = IdentityLinks.from_settings(self._settings)
        return self._links

    async def apply(
        self,
        events: Sequence[Event],
        current: dict[str, Window],
        windows: dict[str, Window],
        outcome: BatchOutcome,
    ) -> Joined:
        """The batch's joins and linked forgets (see the module docstring); the windows and outcome
        to go on with, and the anonymous ids whose window moved (for `after_activity`). Returns at
        once for a batch without identify or forget records."""
        behaviour, joins = split_identities(events)
        joined = await self.join(joins, current, windows, outcome)
        await self.propagate_forgets(behaviour)
        return joined

    async def after_activity(self, activity_write: Awaitable[None], anonymous_ids: Sequence[str]) -> None:
        """Await the batch's recent-activity write, then delete the keys of the anonymous users
        whose window moved (`Joined.anonymous`; that write may have recorded their last events)."""
        await activity_write
        await self.remove(anonymous_ids)

    async def join(
        self,
        joins: Sequence[Join],
        current: dict[str, Window],
        windows: dict[str, Window],
        outcome: BatchOutcome,
    ) -> Joined:
        if not joins:
            return Joined(windows, outcome)
        links = self.links
        await links.apply(links.link_ops((j.anonymous_id, j.known_id) for j in joins), "identity links")
        windows = dict(windows)
        moved: list[Event] = []
        for join in joins:
            anonymous = join.anonymous_id
            window = windows.get(anonymous, current.get(anonymous, Window()))
            moved += joined_events(window, anonymous, join.known_id)
            windows[anonymous] = cleared(window)
        await self._send_acked(moved)
        anonymous_ids = tuple(dict.fromkeys(j.anonymous_id for j in joins))
        gone = set(anonymous_ids)
        outcome = replace(outcome, changed=[(u, w) for u, w in outcome.changed if u not in gone])
        log.info("identity: %d joins, %d events moved to the known users", len(joins), len(moved))
        return Joined(windows, outcome, anonymous_ids)

    async def remove(self, anonymous_ids: Sequence[str]) -> None:
        """Delete the keys of anonymous users whose window moved (after the batch's Redis write,
        which may have recorded their last events)."""
        if anonymous_ids:
            await self.links.apply(self.links.removal_ops(anonymous_ids), "joined visitors' keys")

    async def propagate_forgets(self, events: Sequence[Event]) -> None:
        forgets = [e for e in events if e.type is EventType.FORGET and FORGET_OF not in e.context]
        if not forgets:
            return
        links = self.links
        linked = await links.linked(sorted({e.user_id for e in forgets}))
        if not linked:
            return
        derived = [f for e in forgets for f in linked_forgets(e, linked.get(e.user_id, ()))]
        await self._send_acked(derived)
        everyone = sorted(set(linked) | {u for ids in linked.values() for u in ids})
        await links.apply(links.unlink_ops(everyone), "forgotten users' identity links")
        log.info("identity: %d forgets sent to linked ids", len(derived))

    async def _send_acked(self, events: Sequence[Event]) -> None:
        """Send `events` to the events topic keyed by their user and wait for every ack."""
        pending = [await self._topic.send(key=e.user_id.encode(), value=e.to_json()) for e in events]
        await asyncio.gather(*pending)

    async def close(self) -> None:
        if self._links is not None:
            await self._links.close()
