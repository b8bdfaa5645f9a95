"""The stored window's bytes: orjson writes exactly what json.dumps wrote before (no format change
for changelogs already written, and the byte bound counts the same bytes)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.events import EventType
from stream.core.window import (
    CorruptWindow,
    Window,
    WindowEvent,
    decode_window,
    encode_window,
    window_to_json,
)

# Valid Unicode (no lone surrogates: events refuse them), control characters and emoji included.
text = st.text(st.characters(codec="utf-8"), max_size=40)
ints = st.integers(min_value=0, max_value=2**63 - 1)
window_events = st.builds(
    WindowEvent,
    event_id=text,
    type=st.sampled_from([t for t in EventType if t not in (EventType.FORGET,)]),
    ts_ms=ints,
    item_id=st.none() | text,
    query=st.none() | text,
    received_ms=ints,
)
windows = st.builds(
    Window,
    events=st.lists(window_events, max_size=8).map(tuple),
    forgotten_ts_ms=st.none() | ints,
    forgotten_received_ms=st.none() | ints,
)


def _as_json_wrote(window: Window) -> bytes:
    return json.dumps(window_to_json(window), separators=(",", ":"), ensure_ascii=False).encode()


@given(windows)
def test_encode_window_writes_the_bytes_json_wrote(window: Window) -> None:
    assert encode_window(window) == _as_json_wrote(window)


@given(windows)
def test_a_window_reads_back_from_either_writer(window: Window) -> None:
    assert decode_window(encode_window(window)) == window
    assert decode_window(_as_json_wrote(window)) == window


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"\xff\xfe", b"[1,2]", b'{"e":[[1]]}', b'{"e":[["a","view",NaN,null,null]]}']
)
def test_bad_stored_windows_are_corrupt(raw: bytes) -> None:
    with pytest.raises(CorruptWindow):
        decode_window(raw)
