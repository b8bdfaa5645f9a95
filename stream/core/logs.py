"""Logging set-up for the entrypoints (library modules only call logging.getLogger(__name__))."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    # kafka-python logs every connection at INFO; keep our own lines readable.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
