"""The decoded-window cache returns exactly what decoding the table's bytes would."""

from __future__ import annotations

import json

import pytest

from stream.core.events import EventType
from stream.core.window import (
    Window,
    WindowEvent,
    decode_own_window,
    encode_window,
    window_from_json,
    window_to_json,
)
from stream.worker import window_cache
from stream.worker.window_cache import WindowCache


def window(*ids: str) -> Window:
    return Window(
        events=tuple(
            WindowEvent(i, EventType.VIEW, 1_700_000_000_000 + n, f"sku-{n}", None) for n, i in enumerate(ids)
        )
    )


def raw_of(w: Window) -> bytes:
    return json.dumps(window_to_json(w), separators=(",", ":")).encode()


def test_a_window_it_encoded_comes_back_without_decoding() -> None:
    cache = WindowCache(max_users=10)
    w = window("a", "b")
    raw = cache.encode(b"u1", w)
    assert raw == raw_of(w)
    assert cache.decode(b"u1", raw) is w
    # Equal bytes from elsewhere (a RocksDB read) are as good as the same object.
    assert cache.decode(b"u1", bytes(bytearray(raw))) is w


def test_bytes_that_changed_under_the_cache_are_decoded_afresh() -> None:
    cache = WindowCache(max_users=10)
    cache.encode(b"u1", window("a"))
    restored = raw_of(window("a", "b", "c"))  # e.g. restored from the changelog after a rebalance
    assert cache.decode(b"u1", restored) == window_from_json(json.loads(restored))
    assert cache.decode(b"u1", restored) == window("a", "b", "c")


def test_least_recently_used_users_leave_first_and_zero_keeps_nothing() -> None:
    cache = WindowCache(max_users=2)
    raws = {key: cache.encode(key, window(key.decode())) for key in (b"u1", b"u2")}
    cache.decode(b"u1", raws[b"u1"])  # u1 is now the most recent
    cache.encode(b"u3", window("c"))
    assert len(cache) == 2
    assert cache.decode(b"u1", raws[b"u1"]) == window("u1")
    none = WindowCache(max_users=0)
    none.encode(b"u1", window("a"))
    assert len(none) == 0
    assert none.decode(b"u1", raw_of(window("a"))) == window("a")


def test_a_corrupt_stored_window_starts_empty_and_is_counted() -> None:
    corrupt: list[int] = []
    cache = WindowCache(max_users=10, on_corrupt=lambda: corrupt.append(1))
    for raw in (b"{oops", b'{"e":[["a","view"]]}', b'{"e":[["a","view","1",null,null]]}', b"[]"):
        assert cache.decode(b"u1", raw) == Window()
    assert len(corrupt) == 4


def test_peek_answers_only_for_the_cached_bytes_and_changes_no_order() -> None:
    cache = WindowCache(max_users=2)
    raws = {key: cache.encode(key, window(key.decode())) for key in (b"u1", b"u2")}
    assert cache.peek(b"u1", raws[b"u1"]) == window("u1")
    assert cache.peek(b"u1", raw_of(window("other"))) is None
    assert cache.peek(b"u9", raws[b"u1"]) is None
    # Peeking at u1 did not make it recent: a new user pushes u1 out, not u2.
    cache.encode(b"u3", window("c"))
    assert cache.peek(b"u1", raws[b"u1"]) is None and cache.peek(b"u2", raws[b"u2"]) == window("u2")


def test_a_window_encoded_twice_in_a_batch_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker encodes a batch's windows for its compute process, then for the changelog."""
    calls: list[Window] = []

    def counted(w: Window) -> bytes:
        calls.append(w)
        return encode_window(w)

    monkeypatch.setattr(window_cache, "encode_window", counted)
    cache = WindowCache(max_users=10)
    w = window("a", "b")
    first = cache.encode(b"u1", w)
    assert cache.encode(b"u1", w) is first
    assert calls == [w]
    # Another window object (the next batch's), even an equal one, is encoded afresh.
    assert cache.encode(b"u1", window("a", "b")) == first
    assert len(calls) == 2


def test_a_window_read_from_an_older_stored_form_is_encoded_in_the_current_one() -> None:
    """Rows of 5 values were written before receive times were stored: the bytes the cache read
    are not what encoding the window gives, and the compute process reads only the latter."""
    cache = WindowCache(max_users=10)
    legacy = b'{"e":[["a","view",1700000000000,"sku-0",null]],"f":null}'
    w = cache.decode(b"u1", legacy)
    assert cache.encode(b"u1", w) == encode_window(w) != legacy
    assert decode_own_window(cache.encode(b"u1", w)) == w
