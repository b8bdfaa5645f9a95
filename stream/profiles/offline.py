"""Offline recomputation: what Redis should hold after the stream has drained the same events.

It builds every user's window from the whole event set at once (the window is a function of the
set, see stream/window.py) and runs the same `ProfileComputer` as the worker. Tests and the
evaluation compare the stream's Redis entries with this.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stream.core.batch import group_by_user
from stream.core.events import Event
from stream.core.identity import resolve_identities
from stream.core.window import Window, apply_events
from stream.profiles.computer import ProfileComputer


def offline_windows(events: Iterable[Event], computer: ProfileComputer) -> dict[str, Window]:
    """Every user's window once the stream has drained `events` (in Kafka order per user), logins
    included: an anonymous window joined a known user's (`stream.core.identity`)."""
    config = computer.config.window
    resolved = resolve_identities(list(events), config)
    return {
        user_id: apply_events(Window(), user_events, config).window
        for user_id, user_events in group_by_user(resolved).items()
    }


def offline_payloads(events: Iterable[Event], computer: ProfileComputer) -> dict[str, dict[str, Any]]:
    """user_id -> the reco payload the stream should have written (without computed_at_ms)."""
    windows = offline_windows(events, computer)
    profiles = computer.compute([(u, w) for u, w in sorted(windows.items()) if w.events])
    payloads = {}
    for profile in profiles:
        payload = profile.payload(computed_at_ms=0)
        del payload["computed_at_ms"]
        payloads[profile.user_id] = payload
    return payloads
