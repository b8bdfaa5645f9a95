"""The user tower's input: a profile text built from the window, heaviest and most recent first.

The stream and training (models/) use this one builder, so the text a model was fine-tuned on is
the text it sees in production. The encoder truncates to its token limit, so putting the most
important parts first means truncation drops the least important ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stream.core.window import Window, WindowConfig, event_weights

SEPARATOR = " | "


@dataclass(frozen=True, slots=True)
class ProfilePart:
    text: str
    weight: float
    newest_ts_ms: int


def profile_parts(
    window: Window, config: WindowConfig, item_text: Callable[[str], str | None]
) -> list[ProfilePart]:
    """One part per distinct item or query, its weight summed over the window, heaviest first.

    Items unknown to the catalogue are skipped: a bare id carries no meaning for a text encoder.
    """
    totals: dict[str, list[float]] = {}
    for event, weight in zip(window.events, event_weights(window, config), strict=True):
        text = item_text(event.item_id) if event.item_id is not None else event.query
        if not text:
            continue
        total = totals.setdefault(text, [0.0, 0.0])
        total[0] += weight
        total[1] = max(total[1], event.ts_ms)
    parts = [ProfilePart(text, w, int(ts)) for text, (w, ts) in totals.items()]
    # Rounding keeps the order stable against float noise; recency then text break ties.
    parts.sort(key=lambda p: (-round(p.weight, 9), -p.newest_ts_ms, p.text))
    return parts


def build_profile_text(
    window: Window, config: WindowConfig, item_text: Callable[[str], str | None], max_chars: int = 2048
) -> str:
    """The profile text of a window; empty when the window has no usable event."""
    text = SEPARATOR.join(p.text for p in profile_parts(window, config, item_text))
    return text[:max_chars]
