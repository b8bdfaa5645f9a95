"""One normalisation of event fields at every entry point (field case f11, "one normalisation for
every input format"): each representation of a field's value is accepted everywhere with the same
normalised value, or refused everywhere with the same reason naming the field and the fix.

The entry points are driven for real (tests/unit/stream/entry_points.py): the collector's
``POST /v1/events`` and its Segment, Snowplow and GA4 routes with a fake producer, the SDK, the
worker's decoder, ``replay`` of JSON Lines and CSV files and ``load``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.core.normalise import DAY_MONTH_HINT, time_fix
from tests.unit.stream import entry_points as ep
from tests.unit.stream.entry_points import TS_MS, Outcome

ISO = "2025-11-13T02:13:20.034Z"
MIDNIGHT = 1_762_992_000_000  # 2025-11-13T00:00:00Z
FIX = time_fix()
ID_FIX = "an id is text: send the id as a string"
SECONDS_FRACTION_HINT = "it looks like seconds, as time.time() gives: send round(seconds * 1000)"
EXCEL_SERIAL_HINT = (
    "it looks like an Excel serial date (days since 1899-12-30): export the column as ISO-8601 "
    "text (yyyy-mm-ddThh:mm:ss)"
)
SECONDS = (
    "it looks like seconds with a fraction, as time.time() gives: multiply by 1000 and round to an integer"
)


def sci(text: str) -> str:
    return (
        f"{text!r} looks like a number Excel wrote in scientific notation, which loses digits; export "
        "the column as text (format the cells as Text before saving) and send the full id"
    )


def invisible(edge: str, name: str) -> str:
    return (
        f"{edge} with the invisible character {name}, which would make it another id that looks "
        "the same; remove it"
    )


def bidi(name: str) -> str:
    return f"contains the bidirectional control {name}, which can make an id display as another; remove it"


def ok(value: object) -> Outcome:
    return Outcome(True, value)


def refused(reason: str) -> Outcome:
    return Outcome(False, reason=reason)


# (field, value as sent, the outcome every entry point must give)
CASES: list[tuple[str, object, Outcome]] = [
    ("ts_ms", TS_MS, ok(TS_MS)),
    ("ts_ms", float(TS_MS), ok(TS_MS)),  # a float-formatted integer is that integer
    ("ts_ms", str(TS_MS), ok(TS_MS)),  # so is its digit string
    ("ts_ms", f" {TS_MS} ", ok(TS_MS)),
    ("ts_ms", f"{TS_MS}.0", ok(TS_MS)),
    ("ts_ms", "1.763000000034e12", ok(TS_MS)),
    ("ts_ms", ISO, ok(TS_MS)),
    ("ts_ms", "2025-11-13T04:13:20.034+02:00", ok(TS_MS)),
    ("ts_ms", "2025-11-13 02:13:20.034 UTC", ok(TS_MS)),
    ("ts_ms", "2025-11-13T02:13:20.034", ok(TS_MS)),  # no zone: UTC, documented
    ("ts_ms", "2025-11-13", ok(MIDNIGHT)),
    ("ts_ms", "2025/11/13 02:13:20.034", ok(TS_MS)),  # slashes, year first
    ("ts_ms", "2025-11-13  02:13:20.034", ok(TS_MS)),  # two spaces
    ("ts_ms", "2025-11-13T02:13:20.034Z[UTC]", ok(TS_MS)),  # Java's ZonedDateTime.toString()
    ("ts_ms", "Thu, 13 Nov 2025 02:13:20 GMT", ok(TS_MS - 34)),  # RFC 2822 / HTTP date
    ("ts_ms", "Thu, 13 Nov 2025 04:13:20 GMT+2", ok(TS_MS - 34)),
    ("ts_ms", "Thu, 13 Nov 2025 02:13:20 -0000", ok(TS_MS - 34)),  # UTC, local zone unknown
    ("ts_ms", "Thu, 13 Nov 2025 02:13:20", ok(TS_MS - 34)),  # no zone: UTC, as for ISO text
    ("ts_ms", "Thu, 13 Nov 2025 04:13:20 +02:00", ok(TS_MS - 34)),
    ("ts_ms", "Thu, 13 Nov 2025 04:13:20 +0200 (CET)", ok(TS_MS - 34)),
    # email.utils would read +02 as minutes and ignore a second zone: refused.
    (
        "ts_ms",
        "Thu, 13 Nov 2025 04:13:20 +02",
        refused(f"'Thu, 13 Nov 2025 04:13:20 +02' is neither a number nor a date-time; {FIX}"),
    ),
    (
        "ts_ms",
        "Thu, 1 Nov 2025 04:13 GMT +0200",
        refused(f"'Thu, 1 Nov 2025 04:13 GMT +0200' is neither a number nor a date-time; {FIX}"),
    ),
    # A date with an offset but no time (XML's xs:date), and an RFC 2822 year below 1000: Python
    # read the offset as the hour, and email.utils adds 1900 or 2000 to a small year.
    ("ts_ms", "2025-11-13+02:00", refused(f"'2025-11-13+02:00' is neither a number nor a date-time; {FIX}")),
    ("ts_ms", "2025-11-13 UTC+2", refused(f"'2025-11-13 UTC+2' is neither a number nor a date-time; {FIX}")),
    (
        "ts_ms",
        "Tue, 01 Oct 0019 00:00:00 GMT",
        refused(f"'Tue, 01 Oct 0019 00:00:00 GMT' is neither a number nor a date-time; {FIX}"),
    ),
    # A zone the text names without its offset is no time: never read as UTC.
    (
        "ts_ms",
        "Thu, 13 Nov 2025 03:13:20 CET",
        refused(f"'Thu, 13 Nov 2025 03:13:20 CET' is neither a number nor a date-time; {FIX}"),
    ),
    (
        "ts_ms",
        "2025-11-13T03:13[Europe/Paris]",
        refused(f"'2025-11-13T03:13[Europe/Paris]' is neither a number nor a date-time; {FIX}"),
    ),
    (
        "ts_ms",
        "2025-11-13[Europe/Paris]",
        refused(f"'2025-11-13[Europe/Paris]' is neither a number nor a date-time; {FIX}"),
    ),
    # A zone id made from an offset, and an offset after the zone's name: the offset from UTC.
    ("ts_ms", "2025-11-13T04:13:20.034+02:00[UTC+02:00]", ok(TS_MS)),
    ("ts_ms", "2025-11-13 04:13:20.034 UTC+2", ok(TS_MS)),
    ("ts_ms", "2025-11-13 04:13:20.034 gmt+02:00", ok(TS_MS)),
    ("ts_ms", "2025-11-12 21:13:20.034 UTC-05", ok(TS_MS)),
    ("ts_ms", "2025-11-13 07:43:20.034 UTC+0530", ok(TS_MS)),
    # A 12-hour clock and a one-digit hour after a year-first date (Excel, SQL Server, .NET).
    ("ts_ms", "2025-11-13 2:13:20.034 AM", ok(TS_MS)),
    ("ts_ms", "2025/11/13 2:13:20.034 p.m.", ok(TS_MS + 12 * 3_600_000)),
    ("ts_ms", "2025-11-13 12:13:20.034 AM", ok(TS_MS - 2 * 3_600_000)),
    ("ts_ms", "2025-11-13 4:13:20.034 AM UTC+2", ok(TS_MS)),
    ("ts_ms", "2025-11-13 2:13:20.034", ok(TS_MS)),
    (
        "ts_ms",
        "2025-11-13 13:13:20 PM",
        refused(f"'2025-11-13 13:13:20 PM' is neither a number nor a date-time; {FIX}"),
    ),
    (
        "ts_ms",
        "2025-11-13 02:13:20 UTC+25",
        refused(f"'2025-11-13 02:13:20 UTC+25' is neither a number nor a date-time; {FIX}"),
    ),
    # Day first or month first: the text cannot say which, so neither is guessed.
    ("ts_ms", "11/13/2025 2:13:20 AM", refused(f"'11/13/2025 2:13:20 AM' {DAY_MONTH_HINT}")),
    ("ts_ms", "13.11.2025 02:13", refused(f"'13.11.2025 02:13' {DAY_MONTH_HINT}")),
    # A fraction of a ms is floored, as ISO text's microseconds are (time.time() * 1000 sends one).
    ("ts_ms", TS_MS + 0.5, ok(TS_MS)),
    ("ts_ms", f"{TS_MS}.999", ok(TS_MS)),
    ("ts_ms", "2025-11-13T02:13:20.034999Z", ok(TS_MS)),
    ("ts_ms", 1e300, refused(f"number too large (301 digits); {FIX}")),  # refused, not clamped
    ("ts_ms", "1e300", refused(f"number too large (301 digits); {FIX}")),
    ("ts_ms", 2**70, refused(f"number too large (22 digits); {FIX}")),
    ("ts_ms", "yesterday", refused(f"'yesterday' is neither a number nor a date-time; {FIX}")),
    (
        "ts_ms",
        "1_763_000_000_034",
        refused(f"'1_763_000_000_034' is neither a number nor a date-time; {FIX}"),
    ),
    (
        "ts_ms",
        "\uff11\uff17\uff16\uff13",
        refused(f"'\uff11\uff17\uff16\uff13' is neither a number nor a date-time; {FIX}"),
    ),
    ("ts_ms", True, refused(f"expected a time, got a boolean; {FIX}")),
    ("user_id", 42, ok("42")),
    ("user_id", 42.0, ok("42")),
    ("user_id", "42.0", ok("42")),  # what pandas writes for an integer column with gaps
    ("user_id", "007", ok("007")),  # other text stays as it is
    ("user_id", '="00123"', ok("00123")),  # Excel's text formula, which keeps leading zeros
    ("user_id", 10**25, ok(str(10**25))),
    ("user_id", 42.5, refused(f"'42.5' is not a whole number; {ID_FIX}")),
    ("user_id", 1e300, refused("number too large (301 digits); send the id as a string")),
    ("user_id", True, refused("expected a string, got a boolean")),
    ("item_id", 90001, ok("90001")),
    ("item_id", 90001.0, ok("90001")),
    ("item_id", "90001.0", ok("90001")),
    ("item_id", 0.5, refused(f"'0.5' is not a whole number; {ID_FIX}")),
    ("item_id", [1], refused("expected a string, got an array")),
    # Scientific-notation text is a long numeric id Excel damaged: refused in every format; a JSON
    # number so written is a number, accepted when whole (field case kind f02/f11).
    ("user_id", "7.23456789012E+12", refused(sci("7.23456789012E+12"))),
    ("user_id", "7.23456789012e+12", refused(sci("7.23456789012e+12"))),
    ("item_id", "1E+3", refused(sci("1E+3"))),
    ("item_id", "1.0E10", refused(sci("1.0E10"))),  # Java's Double.toString
    ("item_id", "-4.5E-3", refused(sci("-4.5E-3"))),
    ("item_id", 7.23456789012e12, ok("7234567890120")),
    ("item_id", 1e3, ok("1000")),
    ("item_id", "12E4", ok("12E4")),  # neither a point nor a signed exponent: may be a SKU
    ("item_id", "E+3", ok("E+3")),
    # Invisible characters at an id's edges, and bidi controls anywhere, would make another id
    # that looks the same (field case kind f15).
    ("user_id", "u1\u200b", refused(invisible("ends", "U+200B ZERO WIDTH SPACE"))),
    ("user_id", "\ufeffu1", refused(invisible("begins", "U+FEFF ZERO WIDTH NO-BREAK SPACE"))),
    ("user_id", "u1\u2060", refused(invisible("ends", "U+2060 WORD JOINER"))),
    ("user_id", "u1\u200d", refused(invisible("ends", "U+200D ZERO WIDTH JOINER"))),
    ("user_id", "\u3164u1", refused(invisible("begins", "U+3164 HANGUL FILLER"))),
    ("item_id", "sku\u2800", refused(invisible("ends", "U+2800 BRAILLE PATTERN BLANK"))),
    ("user_id", "u1\u00a0", refused("must not have surrounding whitespace or control characters")),
    ("user_id", "\u202eu1", refused(bidi("U+202E RIGHT-TO-LEFT OVERRIDE"))),
    ("user_id", "u\u202a1", refused(bidi("U+202A LEFT-TO-RIGHT EMBEDDING"))),
    ("item_id", "sku\u2066-1\u2069", refused(bidi("U+2066 LEFT-TO-RIGHT ISOLATE"))),
    ("user_id", "I\u2764\ufe0f", ok("I\u2764\ufe0f")),  # a variation selector belongs to its emoji
    ("user_id", "a\u200db", ok("a\u200db")),  # inside an id: a joiner, nothing to spoof with
    # A query is text: invisible edges trimmed, not refused; only invisible characters is empty.
    ("query", "\u200bgel pens\ufeff", ok("gel pens")),
    ("query", " gel pens\u2060 ", ok("gel pens")),
    ("query", "gel \u200b pens", ok("gel \u200b pens")),
    (
        "query",
        "\u200b\ufeff",
        refused("must not be empty (it holds only whitespace or invisible characters)"),
    ),
    # ISO-8601 / RFC 3339 spellings (field case kind f07): any case, a zone after a space.
    ("ts_ms", "2025-11-13 02:13:20.034 +0000", ok(TS_MS)),
    ("ts_ms", "2025-11-13 02:13:20 +0000", ok(TS_MS - 34)),
    ("ts_ms", "2025-11-13 04:13:20.034 +0200", ok(TS_MS)),
    ("ts_ms", "2025-11-13 04:13:20.034 +02:00", ok(TS_MS)),
    ("ts_ms", "2025-11-13 02:13:20.034 Z", ok(TS_MS)),
    ("ts_ms", "2025-11-13t02:13:20.034z", ok(TS_MS)),
    ("ts_ms", "2025-11-13T02:13:20.034z", ok(TS_MS)),
    ("ts_ms", "2025-11-13 02:13:20.034 utc", ok(TS_MS)),
    ("ts_ms", "2025-11-13T02:13:20,034Z", ok(TS_MS)),
    (
        "ts_ms",
        "2025-11-13 02:13:20.034 +",
        refused(f"'2025-11-13 02:13:20.034 +' is neither a number nor a date-time; {FIX}"),
    ),
    # What a fraction in a ms field looks like (field case kind f11).
    (
        "ts_ms",
        1763000000.034,
        refused(f"'1763000000.034' is not a whole number of ms; {SECONDS_FRACTION_HINT}"),
    ),
    (
        "ts_ms",
        "1763000000.034",
        refused(f"'1763000000.034' is not a whole number of ms; {SECONDS_FRACTION_HINT}"),
    ),
    (
        "ts_ms",
        "46356.4166",
        refused(f"'46356.4166' is not a whole number of ms; {EXCEL_SERIAL_HINT}"),
    ),
    ("type", "View", ok("view")),
    ("type", "ADD-TO-CART", ok("add_to_cart")),
    ("type", " purchase ", ok("purchase")),
]


def applies(entry: str, field: str, value: object) -> bool:
    """Where a representation can be sent at all."""
    if entry == "replay-csv":
        return isinstance(value, str)  # a CSV cell is text: 42.5 and "42.5" are the same cell
    return True


def same(outcome: Outcome, expected: Outcome, field_names: tuple[str, ...]) -> tuple[object, ...]:
    """What must agree: accepted and the value, or refused and the reason, naming the field."""
    if outcome.accepted:
        return (True, outcome.value)
    named = outcome.field is not None and outcome.field.endswith(field_names)
    return (False, outcome.reason, named)


@pytest.mark.parametrize(("field", "value", "expected"), CASES, ids=[f"{f}={v!r}"[:60] for f, v, _ in CASES])
def test_each_representation_has_one_outcome_at_every_entry_point(
    field: str, value: object, expected: Outcome, tmp_path: Path
) -> None:
    want = (True, expected.value) if expected.accepted else (False, expected.reason, True)
    outcomes: dict[str, tuple[object, ...]] = {}
    for entry in ep.V1_ENTRY_POINTS:
        if applies(entry, field, value):
            outcomes[entry] = same(ep.run_v1(entry, field, value, tmp_path), expected, (field,))
    for entry, (adapter, names) in ep.STANDARD_ENTRY_POINTS.items():
        sender_field = names.get(field)
        # A sender's ids and times take the same rules; GA4 counts time in us (see below), and a
        # sender's event names are its own vocabulary (mapped by the adapter's table).
        if sender_field is None or (entry == "ga4" and field == "ts_ms"):
            continue
        outcomes[entry] = same(adapter(field, value), expected, (sender_field.rsplit(".", 1)[-1],))
    wrong = {entry: got for entry, got in outcomes.items() if got != want}
    assert not wrong, f"expected {want}, got {wrong}"


@pytest.mark.parametrize(
    ("micros", "expected"),
    [
        (TS_MS * 1000, ok(TS_MS)),
        (float(TS_MS * 1000), ok(TS_MS)),
        (str(TS_MS * 1000), ok(TS_MS)),
        (ISO, ok(TS_MS)),
        (1.5, refused(f"'1.5' is not a whole number of microseconds; {time_fix('us')}")),
        ("soon", refused(f"'soon' is neither a number nor a date-time; {time_fix('us')}")),
    ],
)
def test_ga4_times_follow_the_same_rule_in_microseconds(micros: object, expected: Outcome) -> None:
    got = ep.via_ga4("ts_ms", micros)
    assert (got.accepted, got.value if got.accepted else got.reason) == (
        expected.accepted,
        expected.value if expected.accepted else expected.reason,
    )


@pytest.mark.parametrize(
    ("sent_at", "expected"),
    [
        (TS_MS + 1000, ok(ep.NOW_MS - 1000)),
        (float(TS_MS + 1000), ok(ep.NOW_MS - 1000)),
        (str(TS_MS + 1000), ok(ep.NOW_MS - 1000)),
        ("2025-11-13T02:13:21.034Z", ok(ep.NOW_MS - 1000)),
        (TS_MS + 1000.5, ok(ep.NOW_MS - 1000)),  # a fraction of a ms floored, as in ts_ms
        (1e300, refused(f"number too large (301 digits); {FIX}")),
        (-1, refused(f"-1 is before the epoch; {FIX}")),
        ("soon", refused(f"'soon' is neither a number nor a date-time; {FIX}")),
    ],
)
def test_the_send_time_reads_the_same_in_the_envelope_and_the_header(
    sent_at: object, expected: Outcome
) -> None:
    for header in (False, True):
        got = ep.sent_at(sent_at, header=header)
        assert got.accepted is expected.accepted
        if expected.accepted:
            assert got.value == expected.value  # the event time, corrected for the client's clock
        else:
            assert (got.field, got.reason) == ("X-Sent-At-Ms" if header else "sent_at_ms", expected.reason)


@pytest.mark.parametrize("name", ["Product Viewed", "page_view", "addtocart"])
def test_other_vocabularies_are_a_file_mapping_not_a_v1_spelling(name: str, tmp_path: Path) -> None:
    # Documented: files map foreign names with their type map; the v1 endpoints take v1 names only.
    for entry in ("replay-jsonl", "replay-csv", "load"):
        assert ep.run_v1(entry, "type", name, tmp_path).accepted, entry
    for entry in ("collector", "sdk", "worker"):
        got = ep.run_v1(entry, "type", name, tmp_path)
        assert (got.accepted, got.field) == (False, "type"), entry
        assert got.reason is not None and got.reason.startswith(f"unknown type {name!r}; expected one of")
