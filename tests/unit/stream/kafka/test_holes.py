"""Holes in a partition's offsets that hold no record (transaction markers, aborted or compacted
records) are stepped over once a probe shows them empty; any other hole is still rewound to."""

from __future__ import annotations

import pytest

from stream.kafka.offsets import ProbedRange, admit


def _admit(offsets: list[int], expected: int, probe: ProbedRange | None):  # type: ignore[no-untyped-def]
    records = [(0, o) for o in offsets]
    return admit(
        records,
        {0: expected},
        partition_of=lambda r: r[0],
        offset_of=lambda r: r[1],
        probed={0: probe} if probe else None,
    )


@pytest.mark.parametrize(
    ("offsets", "expected", "probe", "next_offset", "skipped"),
    [
        # A committed transaction (38, 39), its marker (40), an aborted record and its marker, a plain record.
        ([38, 39, 43], 38, ProbedRange(38, 44, frozenset({38, 39, 43})), 44, 3),
        # The position itself sits on a marker left at a partition's end.
        ([41, 42], 40, ProbedRange(40, 43, frozenset({41, 42})), 43, 1),
        # Several transactions in one batch: every marker stepped over.
        ([0, 2, 4, 6], 0, ProbedRange(0, 7, frozenset({0, 2, 4, 6})), 7, 3),
        # A compacted stretch.
        ([100, 250], 10, ProbedRange(10, 251, frozenset({100, 250})), 251, 239),
    ],
)
def test_a_hole_a_probe_shows_empty_is_stepped_over(
    offsets: list[int], expected: int, probe: ProbedRange, next_offset: int, skipped: int
) -> None:
    admission = _admit(offsets, expected, probe)
    assert [o for _, o in admission.admitted] == sorted(offsets)
    assert admission.next_offsets == {0: next_offset}
    assert admission.skipped == skipped
    assert admission.rewinds == {} and admission.held_back == 0


@pytest.mark.parametrize(
    ("offsets", "probe", "rewind_to", "admitted"),
    [
        # No probe: a hole is a possible loss.
        ([38, 39, 43], None, 40, [38, 39]),
        # The probe found a record in the hole (the consumer dropped it): read it again.
        ([38, 39, 43], ProbedRange(38, 44, frozenset({38, 39, 41, 43})), 40, [38, 39]),
        # The probe did not reach the hole's end (an unanswered broker): nothing is claimed empty.
        ([38, 39, 43], ProbedRange(38, 41), 40, [38, 39]),
        # A probe of an older range says nothing about this hole.
        ([38, 39, 43], ProbedRange(20, 30), 40, [38, 39]),
        # A failed probe is an empty range at the hole.
        ([45], ProbedRange(38, 38), 38, []),
    ],
)
def test_a_hole_not_shown_empty_is_rewound_to(
    offsets: list[int], probe: ProbedRange | None, rewind_to: int, admitted: list[int]
) -> None:
    admission = _admit(offsets, 38, probe)
    assert [o for _, o in admission.admitted] == admitted
    assert admission.rewinds == {0: rewind_to}
    assert admission.skipped == 0


def test_after_a_hole_with_a_record_later_empty_holes_are_not_stepped_over() -> None:
    # 41 holds a record that was not delivered: 42-43 is empty, but 44 must wait behind 41.
    admission = _admit([40, 44], 40, ProbedRange(40, 45, frozenset({40, 41, 44})))
    assert [o for _, o in admission.admitted] == [40]
    assert admission.rewinds == {0: 41}
    assert admission.held_back == 1


def test_a_probed_range_is_empty_only_inside_itself_and_without_records() -> None:
    probe = ProbedRange(10, 20, frozenset({15}))
    assert probe.empty(10, 15) and probe.empty(16, 20)
    assert not probe.empty(14, 16) and not probe.empty(9, 12) and not probe.empty(18, 21)
