"""Per-client token buckets for the collector's request rate limit (pure; the clock is passed in)."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float


class RateLimiter:
    """`rate_per_s` requests per second per client, bursts of up to `burst` requests.

    Clients are tracked in an LRU of at most `max_clients` buckets, so a flood of distinct
    addresses costs bounded memory (a forgotten client starts again with a full bucket).
    """

    def __init__(self, rate_per_s: float, burst: int, max_clients: int = 100_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"rate_per_s must be > 0 and burst >= 1, got {rate_per_s} and {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, client: str, now_s: float) -> float:
        """0.0 if `client` may send a request now (and counts it), else seconds until it may."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now_s)
            self._buckets[client] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            elapsed_s = max(0.0, now_s - bucket.updated_s)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed_s * self.rate_per_s)
            bucket.updated_s = now_s
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s


def retry_after_header(wait_s: float) -> str:
    """Retry-After is whole seconds; never 0, or a client would retry at once."""
    return str(max(1, math.ceil(wait_s)))
