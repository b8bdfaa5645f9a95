"""Shared by the adapter tests: the payload files and a validator with a fixed clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stream.core.events import EventLimits, EventType
from stream.ingest.adapters import Adapted, Validated, validate

PAYLOADS = Path(__file__).resolve().parent / "payloads"
# The collector's receive time in the tests: a little after the GA4 and Snowplow examples.
NOW_MS = 1_764_000_010_000


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def valid(adapted: Adapted, now_ms: int = NOW_MS) -> Validated:
    return validate(adapted, limits=EventLimits(), now_ms=now_ms)


def rows(adapted: Adapted) -> list[tuple[str, str, str, str | None, str | None, int]]:
    """(event_id, user_id, type, item_id, query, ts_ms) of each valid event."""
    outcome = valid(adapted)
    assert outcome.errors == [], outcome.errors
    return [
        (e.event_id, e.user_id, e.type.value, e.item_id, e.query, e.ts_ms)
        for e in outcome.events
        if e.type is not EventType.IDENTIFY
    ]


def identify_rows(adapted: Adapted) -> list[tuple[str, str, str | None, int]]:
    """(event_id, anonymous user_id, known_user_id, ts_ms) of each valid identify record."""
    outcome = valid(adapted)
    assert outcome.errors == [], outcome.errors
    return [
        (e.event_id, e.user_id, e.known_user_id, e.ts_ms)
        for e in outcome.events
        if e.type is EventType.IDENTIFY
    ]
