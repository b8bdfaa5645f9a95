"""The worker's own per-partition position: which records of a batch run on from it."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.errors import ConfigError, InvalidEvent
from stream.core.events import EventLimits, decode_event
from stream.kafka.bulk_sender import default_partition
from stream.kafka.offsets import Admission, admit, decode_position, encode_position, marker_key


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    copy: int = 0


def run(records: list[Record], expected: dict[int, int]) -> Admission[Record]:
    return admit(records, expected, partition_of=lambda r: r.partition, offset_of=lambda r: r.offset)


def test_a_contiguous_run_is_admitted_in_offset_order_whatever_the_arrival_order() -> None:
    records = [Record(0, o) for o in (12, 10, 11, 13)] + [Record(1, o) for o in (5, 4)]
    admission = run(records, {0: 10, 1: 4})
    assert [(r.partition, r.offset) for r in admission.admitted] == [
        (0, 10),
        (0, 11),
        (0, 12),
        (0, 13),
        (1, 4),
        (1, 5),
    ]
    assert admission.next_offsets == {0: 14, 1: 6}
    assert (admission.repeats, admission.held_back, admission.rewinds) == (0, 0, {})


def test_records_below_the_position_and_second_copies_are_repeats() -> None:
    records = [Record(0, 8), Record(0, 9), Record(0, 10), Record(0, 10, copy=1), Record(0, 11)]
    admission = run(records, {0: 10})
    assert [(r.offset, r.copy) for r in admission.admitted] == [(10, 0), (11, 0)]
    assert admission.repeats == 3
    assert admission.next_offsets == {0: 12}


def test_records_after_a_hole_are_held_back_and_the_partition_rewinds_to_the_hole() -> None:
    records = [Record(0, o) for o in (10, 11, 14, 15)] + [Record(1, 30), Record(1, 31)]
    admission = run(records, {0: 10, 1: 20})
    assert [(r.partition, r.offset) for r in admission.admitted] == [(0, 10), (0, 11)]
    assert admission.held_back == 4
    assert admission.rewinds == {0: 12, 1: 20}
    # Partition 1 did not advance: nothing to store for it.
    assert admission.next_offsets == {0: 12}


offset_sets = st.dictionaries(
    st.integers(0, 3),
    st.tuples(st.integers(0, 50), st.sets(st.integers(0, 80), max_size=40)),
    min_size=1,
)


@given(offset_sets, st.integers(0, 2**32), st.integers(0, 3))
def test_every_record_is_admitted_repeated_or_held_back_exactly_once(
    spec: dict[int, tuple[int, set[int]]], seed: int, max_copies: int
) -> None:
    rng = random.Random(seed)
    records = [
        Record(p, o, copy)
        for p, (_, offsets) in spec.items()
        for o in offsets
        for copy in range(rng.randint(1, 1 + max_copies))
    ]
    rng.shuffle(records)
    expected = {p: start for p, (start, _) in spec.items()}
    admission = run(records, expected)

    assert len(admission.admitted) + admission.repeats + admission.held_back == len(records)
    for partition, (start, offsets) in spec.items():
        run_end = start
        while run_end in offsets:
            run_end += 1
        admitted = [r.offset for r in admission.admitted if r.partition == partition]
        assert admitted == list(range(start, run_end))
        assert admission.next_offsets.get(partition, start) == run_end
        beyond = any(o > run_end for o in offsets)
        assert admission.rewinds.get(partition) == (run_end if beyond else None)
    # Arrival order changes nothing.
    rng.shuffle(records)
    again = run(records, expected)
    assert [(r.partition, r.offset) for r in again.admitted] == [
        (r.partition, r.offset) for r in admission.admitted
    ]
    assert (again.repeats, again.held_back, again.rewinds) == (
        admission.repeats,
        admission.held_back,
        admission.rewinds,
    )


@pytest.mark.parametrize("partitions", [1, 2, 4, 12, 64])
def test_each_position_key_lands_in_its_own_changelog_partition(partitions: int) -> None:
    keys = [marker_key(p, partitions) for p in range(partitions)]
    assert len(set(keys)) == partitions
    for partition, key in enumerate(keys):
        assert default_partition(key, list(range(partitions))) == partition


def test_no_user_id_can_be_a_position_key() -> None:
    doc = {"event_id": "e1", "user_id": marker_key(0, 4).decode(), "type": "view", "item_id": "i1"}
    raw = json.dumps(doc | {"ts_ms": 1_700_000_000_000}).encode()
    with pytest.raises(InvalidEvent) as excinfo:
        decode_event(raw, limits=EventLimits(), now_ms=1_700_000_000_000)
    assert excinfo.value.field == "user_id"


def test_a_partition_outside_the_topic_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="PROFILESTREAM_EVENTS_PARTITIONS"):
        marker_key(4, 4)


def test_positions_round_trip_and_garbage_is_refused() -> None:
    assert decode_position(encode_position(1234)) == 1234
    for raw in (b'{"next_offset":-1}', b'{"next_offset":"7"}', b"[]", b'{"other":1}'):
        with pytest.raises(ValueError, match="not a stored position"):
            decode_position(raw)
