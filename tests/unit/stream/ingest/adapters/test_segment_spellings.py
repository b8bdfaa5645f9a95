"""Segment messages as hand-written senders spell them: a userId of only whitespace falls back to
the anonymousId as an empty one does, and a message type in another case is that type."""

from __future__ import annotations

from typing import Any

import pytest

from stream.ingest.adapters import adapt_segment
from tests.unit.stream.ingest.adapters.helpers import NOW_MS, identify_rows, rows, valid


def viewed(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "messageId": "m-1",
        "userId": "u-1",
        "anonymousId": "anon-1",
        "event": "Product Viewed",
        "properties": {"product_id": "p-1"},
        "timestamp": "2025-11-20T10:00:00Z",
    }
    message.update(changes)
    return message


@pytest.mark.parametrize("user_id", ["", " ", "\t \u200b", "\u3000"])
def test_a_blank_user_id_falls_back_to_the_anonymous_id(user_id: str) -> None:
    adapted = adapt_segment(viewed(userId=user_id), receive_ms=NOW_MS, message_type="track")
    [(event_id, user, kind, item, _, _)] = rows(adapted)
    assert (event_id, user, kind, item) == ("m-1", "anon-1", "view", "p-1")


def test_a_blank_message_id_is_filled_in_and_blank_ids_alone_are_still_refused() -> None:
    adapted = adapt_segment(viewed(messageId="  "), receive_ms=NOW_MS, message_type="track")
    assert len(rows(adapted)) == 1
    adapted = adapt_segment(viewed(userId=" ", anonymousId=" "), receive_ms=NOW_MS, message_type="track")
    [error] = adapted.errors
    assert (error.field, error.reason) == ("userId", "a message needs a userId or an anonymousId")


@pytest.mark.parametrize("kind", ["Track", "TRACK", " track "])
def test_a_message_type_in_another_case_is_that_type(kind: str) -> None:
    adapted = adapt_segment({"batch": [viewed(type=kind)]}, receive_ms=NOW_MS)
    assert [row[2] for row in rows(adapted)] == ["view"]
    assert not adapted.ignored


def test_an_identify_in_capitals_links_and_a_page_in_capitals_is_counted_as_page() -> None:
    batch = [
        {"type": "Identify", "messageId": "m-2", "userId": "u-1", "anonymousId": "anon-1"},
        {"type": "Page", "messageId": "m-3", "userId": "u-1"},
        {"type": "Trak", "messageId": "m-4", "userId": "u-1"},
    ]
    adapted = adapt_segment({"batch": batch}, receive_ms=NOW_MS)
    assert [row[1:3] for row in identify_rows(adapted)] == [("anon-1", "u-1")]
    assert dict(adapted.ignored) == {"page": 1, "Trak": 1}
    assert valid(adapted).errors == []
