"""Standard tracking events (Segment/RudderStack, GA4 Measurement Protocol, Snowplow) to schema v1.

Pure mapping: no I/O, the receive time comes in. The collector's routes in
`stream.ingest.standard_routes` and file readers (``replay``/``load --format``) share these.
"""

from __future__ import annotations

from stream.core.errors import InvalidEvent
from stream.ingest.adapters.common import Adapted, IdentityLink, SourceEvent, Validated, validate
from stream.ingest.adapters.ga4 import adapt_ga4
from stream.ingest.adapters.segment import adapt_segment
from stream.ingest.adapters.snowplow import adapt_snowplow

SOURCES = ("segment", "ga4", "snowplow")

__all__ = [
    "SOURCES",
    "Adapted",
    "IdentityLink",
    "SourceEvent",
    "Validated",
    "adapt_file_record",
    "adapt_ga4",
    "adapt_segment",
    "adapt_snowplow",
    "validate",
]


def adapt_file_record(source: str, record: object, receive_ms: int) -> Adapted:
    """Map one record of a file in a sender's format: one line of JSON Lines, say.

    - ``segment``: one message (``{"type": "track", ...}``; without ``type`` a track call) or a
      ``{"batch": [...]}`` body. A Segment export's own ``receivedAt`` is the receive time, so a
      replay corrects times exactly as Segment did.
    - ``ga4``: one Measurement Protocol request body.
    - ``snowplow``: one tp2 body, or one element of its ``data`` array.

    `receive_ms` is the time to assume when the record has none (the replay's start, say).
    Raises `InvalidEvent` naming the field when the record as a whole is malformed.
    """
    if source == "segment":
        if isinstance(record, dict) and "batch" in record:
            return adapt_segment(record, receive_ms=receive_ms, trust_received_at=True)
        return adapt_segment(record, receive_ms=receive_ms, message_type="track", trust_received_at=True)
    if source == "ga4":
        return adapt_ga4(record, receive_ms=receive_ms)
    if source == "snowplow":
        return adapt_snowplow(record, receive_ms=receive_ms)
    raise InvalidEvent("format", f"unknown source format {source!r}; expected one of {', '.join(SOURCES)}")
