"""The one exception hierarchy of profilestream.

Every message says what failed, where, and how to fix it, so that an operator reading a log line
or a CLI error needs no source code to act on it.
"""

from __future__ import annotations


class ProfilestreamError(Exception):
    """Base class of every error profilestream raises on purpose."""


class ConfigError(ProfilestreamError):
    """A setting is missing or invalid; the message names the setting and how to change it."""


class InvalidEvent(ProfilestreamError):
    """An event failed schema v1 validation.

    `field` names the offending field (or ``"$"`` for the document as a whole) and `reason` says
    what is wrong with it; both travel to the dead-letter topic and into HTTP 4xx answers.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid event: field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class UnmappedEventType(InvalidEvent):
    """A file row's event type maps to no profilestream type (e.g. ``remove_from_cart``).

    File readers (replay, load) skip such rows and count them per `name` rather than rejecting them.
    """

    def __init__(self, name: str) -> None:
        super().__init__(
            "type",
            f"{name[:40]!r} maps to no profilestream type; map it with --type-map {name[:40]}=TYPE",
        )
        self.name = name[:40]


class ServiceUnavailable(ProfilestreamError):
    """Kafka or Redis could not be reached; the message names the address and the setting."""


class Overloaded(ServiceUnavailable):
    """A bounded in-process queue is full (back-pressure); the message names the setting."""


class ModelError(ProfilestreamError):
    """A model or index file is missing, corrupt or does not match its manifest or encoder.

    The message names the file, the mismatch, and how to fix it (usually: re-run the export or
    the index build).
    """


class SourceError(ProfilestreamError):
    """A replay or loader input (file, column, topic) cannot be read as described.

    The message names the file or topic, what is wrong with it and how to fix it.
    """


class CatalogError(ProfilestreamError):
    """A catalogue file cannot be read or a row is invalid; the message names the file and row."""


class InvalidCatalogRow(CatalogError):
    """One catalogue row is invalid: `where` names the file and line, `field` the column (``$`` for
    the row as a whole) and `reason` what is wrong and how to fix it. The build skips such a row."""

    def __init__(self, where: str, field: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.field = field
        self.reason = reason
