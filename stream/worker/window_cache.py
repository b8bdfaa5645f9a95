"""The worker's recently used windows, decoded, next to the bytes they were decoded from.

Every batch reads the windows of its users from the Faust table as JSON. Decoding them again and
again was the largest share of the batch code on the event loop (py-spy at 1,000 events/s); the
table's bytes are the truth, so a cached window is used only while its bytes equal the table's
(after a restart or a rebalance the table restores new bytes, and they are decoded afresh).

A stored window that cannot be decoded (a corrupt changelog record: bad JSON, missing keys, wrong
types) is logged and counted by `on_corrupt`, and the user's window starts empty: the next write
replaces the bad record, where raising would fail every batch of that user again and again.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable

from stream.core.window import CorruptWindow, Window, decode_window, encode_window

log = logging.getLogger(__name__)


class WindowCache:
    def __init__(self, max_users: int, on_corrupt: Callable[[], None] = lambda: None) -> None:
        self._max_users = max_users
        self._on_corrupt = on_corrupt
        # key -> (the table's bytes, the window, whether `encode` wrote those bytes)
        self._entries: OrderedDict[bytes, tuple[bytes, Window, bool]] = OrderedDict()

    def decode(self, key: bytes, raw: bytes) -> Window:
        """`raw` (the table's value for `key`) as a window, decoded only when not cached."""
        cached = self._entries.get(key)
        if cached is not None and (cached[0] is raw or cached[0] == raw):
            self._entries.move_to_end(key)
            return cached[1]
        try:
            window = decode_window(raw)
        except CorruptWindow as exc:
            # The user id is personal data: the log names it by a hash.
            log.error(
                "stored window of user sha256:%s is corrupt (%s); starting that user's window empty",
                hashlib.sha256(key).hexdigest()[:16],
                exc,
            )
            self._on_corrupt()
            return Window()
        self._remember(key, raw, window, encoded=False)
        return window

    def peek(self, key: bytes, raw: bytes) -> Window | None:
        """`raw`'s cached window for `key`, or None; leaves the recency order and the cache alone
        (a sweep over every stored window must not push out the active users)."""
        cached = self._entries.get(key)
        if cached is not None and (cached[0] is raw or cached[0] == raw):
            return cached[1]
        return None

    def encode(self, key: bytes, window: Window) -> bytes:
        """`window` as the table's value for `key`, remembered decoded."""
        cached = self._entries.get(key)
        if cached is not None and cached[1] is window and cached[2]:
            # Encoded already in this batch (for the compute process; `stream.worker.app`). Not
            # bytes `decode` read: a window stored in an older form encodes to other bytes.
            return cached[0]
        raw = encode_window(window)
        self._remember(key, raw, window, encoded=True)
        return raw

    def discard(self, key: bytes) -> None:
        """Forget `key`'s cached window (its table entry was removed)."""
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _remember(self, key: bytes, raw: bytes, window: Window, *, encoded: bool) -> None:
        if self._max_users <= 0:
            return
        self._entries[key] = (raw, window, encoded)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_users:
            self._entries.popitem(last=False)
