"""Records decoded as the batch buffer takes them, used by their batch (stream/worker/decode_ahead.py)."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from stream.core import decode as core_decode
from stream.core.decode import decode_batch
from stream.core.events import EventLimits
from stream.worker import decode_ahead
from stream.worker.decode_ahead import DecodeAhead, raw_message

NOW_S = time.time()


def record(offset: int, value: bytes, key: bytes = b"u1") -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(
            key=key,
            value=value,
            topic="events",
            partition=0,
            offset=offset,
            timestamp=NOW_S,
            headers=[],
        )
    )


def event_json(n: int, user: str = "u1") -> bytes:
    return json.dumps(
        {"event_id": f"e{n}", "user_id": user, "type": "view", "ts_ms": int(NOW_S * 1000), "item_id": "i1"}
    ).encode()


BATCH = [
    record(0, event_json(0)),
    record(1, b"not json"),
    record(2, event_json(2)),
    record(3, event_json(3, "u2")),  # keyed u1: a mis-keyed record, a dead letter
    record(4, event_json(4)),
]


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The offsets `DecodeAhead` decodes, as it decodes them."""
    calls: list[int] = []

    def counting(message: Any, **kwargs: Any) -> Any:
        calls.append(message.source.offset)
        return core_decode.decode_message(message, **kwargs)

    monkeypatch.setattr(decode_ahead, "decode_message", counting)
    return calls


def test_a_batch_gets_what_decoding_it_whole_gives(decode_calls: list[int]) -> None:
    ahead = DecodeAhead(EventLimits(), max_held=100)
    for event in BATCH[:3]:
        ahead.prepare(event)
    got = ahead.batch(BATCH)
    want = decode_batch([raw_message(e) for e in BATCH], limits=EventLimits(), now_ms=int(NOW_S * 1000))
    assert got.events == want.events
    assert [(d.source, d.field, d.reason) for d in got.dead_letters] == [
        (d.source, d.field, d.reason) for d in want.dead_letters
    ]
    # The three taken ahead were not decoded again; the two others were decoded with the batch.
    assert decode_calls == [0, 1, 2, 3, 4]


def test_a_batch_retried_in_parts_is_not_decoded_again(decode_calls: list[int]) -> None:
    ahead = DecodeAhead(EventLimits(), max_held=100)
    for event in BATCH:
        ahead.prepare(event)
    ahead.batch(BATCH)
    ahead.batch(BATCH[:2])
    ahead.batch(BATCH[2:])
    assert decode_calls == [0, 1, 2, 3, 4]
    ahead.release(BATCH)
    assert len(ahead) == 0


def test_an_unexpected_decoding_error_waits_for_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error other than a refusal does not escape the buffer: the record is decoded again with
    its batch, where the error reaches the worker's poison handling."""

    def broken(message: Any, **kwargs: Any) -> Any:
        raise RecursionError("a bug an input found")

    monkeypatch.setattr(decode_ahead, "decode_message", broken)
    ahead = DecodeAhead(EventLimits(), max_held=100)
    ahead.prepare(BATCH[0])  # does not raise
    assert len(ahead) == 0
    with pytest.raises(RecursionError, match="a bug an input found"):
        ahead.batch(BATCH[:1])


def test_at_most_max_held_results_are_kept_oldest_dropped_first(decode_calls: list[int]) -> None:
    ahead = DecodeAhead(EventLimits(), max_held=2)
    for event in BATCH[:3]:
        ahead.prepare(event)
    assert len(ahead) == 2
    decode_calls.clear()
    ahead.batch(BATCH[:3])
    assert decode_calls == [0]  # dropped, so decoded with the batch


def test_a_bad_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_held must be >= 1"):
        DecodeAhead(EventLimits(), max_held=0)
