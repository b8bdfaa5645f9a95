"""Logging set-up for the entrypoints (library modules only call logging.getLogger(__name__)),
and `ThrottledWarning` for warnings that each request could repeat."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# How often a warning that every request could repeat is logged at most.
THROTTLE_INTERVAL_S = 10.0


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    # kafka-python logs every connection at INFO; keep our own lines readable.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


class ThrottledWarning:
    """A warning that each request may repeat (an unreadable stored entry read on every lookup of
    a hot user, Redis down under thousands of requests a second): logged the first time, then at
    most once per `interval_s`, saying how many were held back since. The metrics count each one;
    this bounds the log, which the requests' rate would otherwise set.

    One instance per kind of warning; not thread-safe beyond what `logging` is (the servers call
    it from their event loop)."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = THROTTLE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last_s: float | None = None
        self._held = 0

    def warning(self, message: str, *args: object) -> None:
        """`logger.warning(message, *args)` unless one was logged less than `interval_s` ago."""
        now_s = self._clock()
        if self._last_s is not None and now_s - self._last_s < self._interval_s:
            self._held += 1
            return
        if self._held:
            # Formatted here (this line is rare), so the count can follow the caller's own %-args.
            self._logger.warning(
                "%s (and %d more like it since the last one, %.0f s ago, not logged)",
                message % args if args else message,
                self._held,
                now_s - (self._last_s or now_s),
            )
        else:
            self._logger.warning(message, *args)
        self._last_s, self._held = now_s, 0
