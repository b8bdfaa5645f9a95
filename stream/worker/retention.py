"""User retention: windows of users inactive longer than `user_retention_s` leave the table.

Deleting a key from the Faust table writes a tombstone to its compacted changelog, so an expired
user costs nothing in the table, its store or the changelog once compaction has run.

Inactive is measured against a watermark, never against the user's own newest event: per events
partition, the newest receive time (`received_ms`, else event time) among the events this worker
processed, capped at the wall clock so that a client clock running ahead cannot expire anyone
early. A window whose newest receive time (its events' or its forget's) lies more than the retention
before its partition's watermark is expired. The event clock, not the wall clock, keeps a backfill
of old events from expiring users as soon as it writes them. A partition this worker has seen no
event of since it started expires nothing.

A forgotten user's window also holds the forget's cut, which keeps a replay of their old events
out of the table; it is kept at least as long as the events topic keeps events
(`events_retention_ms`; forever when that is -1).

The sweep is incremental: with each batch it checks the next `retention_sweep_users_per_batch`
keys of a snapshot of the table's keys, taken anew once the previous one is used up, so its cost
per batch is small and fixed and a full pass takes (stored users / that many) batches.

Expiry is operational state management, not part of the window's definition: the offline
recomputation (`stream.profiles.offline`) equals the stream for every user active within the
retention; a user who comes back after expiry starts from an empty window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, MutableMapping, Sequence
from typing import Any

from stream.core.decode import normalised_key
from stream.core.events import Event
from stream.core.settings import Settings
from stream.core.window import CorruptWindow, Window, decode_window, received_ms_of
from stream.kafka.bulk_sender import default_partition
from stream.worker.metrics import WorkerMetrics
from stream.worker.window_cache import WindowCache

log = logging.getLogger(__name__)

# User ids hold no control characters (the decoder refuses them): keys starting with NUL are the
# worker's own records in the table (partition positions), never a user's window.
_NOT_A_USER_PREFIX = b"\x00"


def last_active_ms(window: Window) -> int | None:
    """The newest receive time the window holds (an event's or its forget's); None when empty."""
    times = [e.received_ms for e in window.events]
    if window.forgotten_received_ms is not None:
        times.append(window.forgotten_received_ms)
    return max(times, default=None)


def is_expired(window: Window, watermark_ms: int, retention_ms: int, events_retention_ms: int) -> bool:
    """Whether a stored window is past retention at `watermark_ms` (pure; see the module docstring)."""
    active_ms = last_active_ms(window)
    if active_ms is None:
        return True  # nothing left to keep (an empty window, e.g. one that was corrupt)
    horizon_ms = retention_ms
    if window.forgotten_received_ms is not None:
        if events_retention_ms < 0:
            return False  # events kept forever: the cut must stay to refuse their replay
        horizon_ms = max(retention_ms, events_retention_ms)
    return active_ms < watermark_ms - horizon_ms


class RetentionSweep:
    """Per-partition watermarks and the incremental sweep over a windows table.

    `table` is the windows' `ChangelogWriter` (or any mutable mapping of user id bytes to stored
    window bytes); `on_removed(key)` runs for each removed key (the worker drops it from its
    window cache); `cached(key, raw)` is the decoded window of those bytes when one is at hand.
    """

    def __init__(
        self,
        table: MutableMapping[bytes, bytes],
        settings: Settings,
        *,
        on_removed: Callable[[bytes], None] = lambda key: None,
        cached: Callable[[bytes, bytes], Window | None] = lambda key, raw: None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._table = table
        self._retention_ms = settings.user_retention_s * 1000
        self._events_retention_ms = settings.events_retention_ms
        self._per_batch = settings.retention_sweep_users_per_batch
        self._partitions = list(range(settings.events_partitions))
        self._on_removed = on_removed
        self._cached = cached
        self._clock_ms = clock_ms
        self._watermarks: dict[int, int] = {}
        self._pending: list[bytes] = []
        self.removed = 0

    @property
    def enabled(self) -> bool:
        return self._retention_ms > 0

    def watermark(self, partition: int) -> int | None:
        return self._watermarks.get(partition)

    def observe(self, events: Iterable[Event], partition_of: Callable[[Event], int | None]) -> None:
        """Move each partition's watermark to the newest receive time among `events`."""
        now_ms = self._clock_ms()
        for event in events:
            partition = partition_of(event)
            if partition is None:
                continue
            received = min(received_ms_of(event), now_ms)
            if received > self._watermarks.get(partition, -1):
                self._watermarks[partition] = received

    def sweep(self, in_batch: Collection[bytes] = frozenset()) -> int:
        """Check the next few stored windows and remove the expired ones; returns how many.

        Users of the batch being processed (`in_batch`) are skipped: their stored window is from
        before the batch, which is about to replace it.
        """
        if not self.enabled or not self._watermarks:
            return 0
        if not self._pending:
            # A snapshot, not a live iterator: the table changes between batches (a dict store
            # refuses to go on iterating then), and keys added since wait for the next pass.
            self._pending = list(self._table.keys())
            self._pending.reverse()  # popped from the end: oldest-inserted first
        removed = 0
        for _ in range(min(self._per_batch, len(self._pending))):
            key = self._pending.pop()
            if key.startswith(_NOT_A_USER_PREFIX) or key in in_batch:
                continue
            watermark_ms = self._watermarks.get(default_partition(key, self._partitions))
            if watermark_ms is None:
                continue
            raw = self._table.get(key)
            if raw is None:
                continue
            # Most windows are in the worker's cache already; decoding them again was the sweep's
            # largest cost (py-spy).
            window = self._cached(key, raw)
            if window is None:
                try:
                    window = decode_window(raw)
                except CorruptWindow:
                    window = Window()  # counted and logged where the worker reads it; nothing to keep
            if is_expired(window, watermark_ms, self._retention_ms, self._events_retention_ms):
                del self._table[key]
                self._on_removed(key)
                removed += 1
        self.removed += removed
        if removed:
            log.info("retention: removed %d windows of users inactive over the retention", removed)
        return removed


def catalogue_only(popularity: dict[str, float], items: frozenset[str]) -> dict[str, float]:
    """The popularity increments of items the index holds: a client cannot grow `popular` with
    made-up ids."""
    return {item: weight for item, weight in popularity.items() if item in items}


class BoundedState:
    """What the worker does per batch to keep its state bounded: retention and popularity."""

    def __init__(self, table: Any, settings: Settings, metrics: WorkerMetrics, cache: WindowCache) -> None:
        self.sweep = RetentionSweep(table, settings, on_removed=cache.discard, cached=cache.peek)
        self._metrics = metrics
        self._items: tuple[int, frozenset[str]] | None = None

    def admit(
        self,
        batch: Sequence[Any],
        events: Sequence[Event],
        popularity: dict[str, float],
        catalogue_ids: Sequence[str],
    ) -> dict[str, float]:
        """Move the watermarks by the batch, sweep a few stored windows, and return the batch's
        popularity increments of catalogue items only (both removals are counted)."""
        # By the user id a key names: a key in another spelling of it is the same user's.
        partition_of = {
            key: e.message.partition for e in batch if (key := normalised_key(e.message.key)) is not None
        }
        self.sweep.observe(events, lambda event: partition_of.get(event.user_id.encode()))
        self._metrics.users_expired.inc(self.sweep.sweep(in_batch=partition_of.keys()))
        if self._items is None or self._items[0] != id(catalogue_ids):
            self._items = (id(catalogue_ids), frozenset(catalogue_ids))
        kept = catalogue_only(popularity, self._items[1])
        self._metrics.popularity_unknown_items.inc(len(popularity) - len(kept))
        return kept
