"""A user's computed profile: the records the profile computer produces and the Redis store writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# Digits a payload score keeps: the scores are float32 (about 7 significant digits), so the rest
# of a float32 spelled as a double (0.8234000205993652) is noise that only makes payloads longer.
SCORE_DECIMALS = 6


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended item. `score` is the ranking score: the cosine of the user and item vectors
    plus the popularity prior and, where the mode has one, the co-occurrence term (models/README);
    it orders one user's list, is not a probability, and can exceed 1."""

    item_id: str
    score: float
    reason: str | None


@dataclass(frozen=True, slots=True)
class UserProfile:
    user_id: str
    items: tuple[Recommendation, ...]
    vector: npt.NDArray[np.float32]
    model_version: str
    window_version: str
    window_newest_ts_ms: int
    window_newest_event_id: str
    # The newest receive time (`received_ms`, else event time) among the window's events: what the
    # Redis write compares with a forget tombstone, which holds the forget's receive time, so that
    # the store cuts by receive order exactly as the window does. None: the event time stands in.
    window_newest_received_ms: int | None = None

    @property
    def newest_received_ms(self) -> int:
        if self.window_newest_received_ms is None:
            return self.window_newest_ts_ms
        return self.window_newest_received_ms

    def payload(self, computed_at_ms: int) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "items": [
                {"item_id": r.item_id, "score": round(r.score, SCORE_DECIMALS), "reason": r.reason}
                for r in self.items
            ],
            "model_version": self.model_version,
            "window_newest_ts_ms": self.window_newest_ts_ms,
            "window_newest_event_id": self.window_newest_event_id,
            "window_newest_received_ms": self.newest_received_ms,
            "computed_at_ms": computed_at_ms,
            "source": "profile",
        }
