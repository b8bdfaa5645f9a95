"""User retention: which windows expire, and the incremental sweep over a table."""

from __future__ import annotations

import pytest

from stream.core.events import Event, EventType
from stream.core.settings import load_settings
from stream.core.window import Window, WindowEvent, decode_window, encode_window
from stream.kafka.bulk_sender import default_partition
from stream.worker import retention
from stream.worker.retention import RetentionSweep, is_expired, last_active_ms
from stream.worker.window_cache import WindowCache

DAY_MS = 86_400_000
T0 = 1_764_000_000_000


def window(received_ms: int, ts_ms: int | None = None, cut_ms: int | None = None) -> Window:
    ts = received_ms if ts_ms is None else ts_ms
    return Window(
        events=(WindowEvent("e", EventType.VIEW, ts, "sku-1", None, received_ms),),
        forgotten_ts_ms=cut_ms,
        forgotten_received_ms=cut_ms,
    )


def test_inactivity_is_measured_by_receive_time_against_the_watermark() -> None:
    # A slow client clock stamped the event long ago, but it was received recently: still active.
    assert not is_expired(window(T0, ts_ms=T0 - 100 * DAY_MS), T0 + DAY_MS, 90 * DAY_MS, 7 * DAY_MS)
    assert not is_expired(window(T0), T0 + 90 * DAY_MS, 90 * DAY_MS, 7 * DAY_MS)
    assert is_expired(window(T0), T0 + 90 * DAY_MS + 1, 90 * DAY_MS, 7 * DAY_MS)
    assert is_expired(Window(), T0, 90 * DAY_MS, 7 * DAY_MS)


def test_a_forgotten_window_outlives_the_events_topic_retention() -> None:
    forgotten = Window(forgotten_ts_ms=T0, forgotten_received_ms=T0)
    assert last_active_ms(forgotten) == T0
    # Retention 1 day, events kept 7: the cut must stay while a replay could still bring them back.
    assert not is_expired(forgotten, T0 + 5 * DAY_MS, DAY_MS, 7 * DAY_MS)
    assert is_expired(forgotten, T0 + 8 * DAY_MS, DAY_MS, 7 * DAY_MS)
    assert not is_expired(forgotten, T0 + 1000 * DAY_MS, DAY_MS, -1)


def event(user: str, received_ms: int) -> Event:
    return Event(
        f"e-{user}-{received_ms}", user, EventType.VIEW, received_ms, item_id="sku-1", received_ms=received_ms
    )


def test_the_sweep_removes_inactive_users_a_few_per_batch_and_keeps_active_ones() -> None:
    settings = load_settings(
        {}, user_retention_s=3600, retention_sweep_users_per_batch=3, events_partitions=1
    )
    table: dict[bytes, bytes] = {b"\x00next-offset\x000\x000": b'{"next_offset":7}'}
    for n in range(5):
        table[f"quiet-{n}".encode()] = encode_window(window(T0))
    table[b"active"] = encode_window(window(T0 + 2 * 3600_000))
    cache = WindowCache(100)
    cache.encode(b"quiet-0", window(T0))
    sweep = RetentionSweep(table, settings, on_removed=cache.discard, clock_ms=lambda: T0 + 10 * 3600_000)

    assert sweep.sweep() == 0  # no watermark yet: nothing is judged
    sweep.observe([event("active", T0 + 2 * 3600_000)], lambda e: 0)
    removed = [sweep.sweep() for _ in range(3)]
    assert removed == [2, 3, 0]  # the position record and the active user stay
    assert set(table) == {b"\x00next-offset\x000\x000", b"active"}
    assert len(cache) == 0
    assert sweep.removed == 5


def test_the_watermark_is_per_partition_and_capped_at_the_wall_clock() -> None:
    settings = load_settings({}, user_retention_s=3600, events_partitions=4)
    partitions = list(range(4))
    keys = [f"user-{n}".encode() for n in range(40)]
    table = {key: encode_window(window(T0)) for key in keys}
    sweep = RetentionSweep(table, settings, clock_ms=lambda: T0 + 30 * 60_000)
    # An event stamped a day ahead moves partition 0's watermark only up to the wall clock.
    sweep.observe([event("x", T0 + DAY_MS)], lambda e: 0)
    assert sweep.watermark(0) == T0 + 30 * 60_000
    assert sweep.sweep() == 0  # within the hour
    sweep = RetentionSweep(table, settings, clock_ms=lambda: T0 + DAY_MS)
    sweep.observe([event("x", T0 + 2 * 3600_000)], lambda e: 0)
    sweep.sweep()
    # Only users of partition 0 are judged; the other partitions have no watermark yet.
    assert {k for k in keys if k not in table} == {k for k in keys if default_partition(k, partitions) == 0}


def test_retention_zero_keeps_every_user() -> None:
    settings = load_settings({}, user_retention_s=0)
    table = {b"u": encode_window(window(T0))}
    sweep = RetentionSweep(table, settings)
    sweep.observe([event("u", T0 + 1000 * DAY_MS)], lambda e: 0)
    assert sweep.sweep() == 0 and b"u" in table


def test_users_of_the_batch_being_processed_are_not_expired_by_their_old_stored_window() -> None:
    # Their stored window predates the batch, which is about to replace it with a newer one.
    settings = load_settings({}, user_retention_s=3600, events_partitions=1)
    table = {b"back": encode_window(window(T0)), b"gone": encode_window(window(T0))}
    sweep = RetentionSweep(table, settings, clock_ms=lambda: T0 + DAY_MS)
    sweep.observe([event("back", T0 + 2 * 3600_000)], lambda e: 0)
    assert sweep.sweep(in_batch={b"back"}) == 1
    assert set(table) == {b"back"}


def test_the_sweep_judges_cached_windows_without_decoding_them(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(
        {}, user_retention_s=3600, retention_sweep_users_per_batch=10, events_partitions=1
    )
    cache = WindowCache(100)
    table = {f"u{n}".encode(): cache.encode(f"u{n}".encode(), window(T0)) for n in range(4)}
    table[b"uncached"] = encode_window(window(T0))
    decoded: list[bytes] = []

    def counting_decode(raw: bytes) -> Window:
        decoded.append(raw)
        return decode_window(raw)

    monkeypatch.setattr(retention, "decode_window", counting_decode)
    sweep = RetentionSweep(table, settings, cached=cache.peek, clock_ms=lambda: T0 + 10 * 3600_000)
    sweep.observe([event("u0", T0 + 2 * 3600_000)], lambda e: 0)

    assert sweep.sweep() == 5
    assert decoded == [encode_window(window(T0))]  # only the window the cache did not hold
