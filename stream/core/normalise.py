"""The one set of value rules for event fields, shared by every entry point.

The collector (``POST /v1/events``, its ``sent_at_ms`` and ``X-Sent-At-Ms``), the Segment, GA4
and Snowplow routes, ``replay`` and ``load`` (JSON Lines, CSV, Parquet), the Python SDK and the
worker's decoder all read a field's value through these functions, so a representation is
accepted everywhere or refused everywhere, with the same reason naming the field and the fix.

- **Times** (``ts_ms``, ``received_ms``, ``sent_at_ms``, the senders' time fields): an integer in
  the field's unit (ms unless the field says otherwise: GA4's ``timestamp_micros`` is in us,
  ``replay --ts-unit`` chooses ms, s, us or ns for a file); a number written as a float or as text
  is the same number when it is whole (``1763000000034.0``, ``"1763000000034"``,
  ``"1.763000000034e12"``); any integer type (``numbers.Integral``: numpy's ``int64`` too) and any
  real number type (numpy's ``float32``) count as numbers; a fraction of a ms is floored (as ISO
  text's microseconds are), seconds may carry one (rounded to the ms), a fraction of a us or ns is
  refused, and so is a fractional number in ms that looks like seconds from ``time.time()`` or an
  Excel serial date, with a hint naming it; a number past a signed 64-bit count of ms is refused as
  too large, never clamped. ISO-8601 / RFC 3339 text (``2025-11-13T02:13:20.034Z``, ``...+02:00``,
  ``2025-11-13``, lower-case ``t``/``z``, a space before the zone: ``2025-11-13 02:13:20.034
  +0000``) and ``YYYY-MM-DD HH:MM:SS[.fff] UTC`` are read as times; **a time without a zone is
  UTC**. Blank text is an absent value.
- **Ids** (``event_id``, ``user_id``, ``item_id``, ``session_id``, ``known_user_id`` and the
  senders' ids): text is kept as it is, except the text a float formatter writes for an integer
  (``"17850.0"``, what pandas writes for an integer column with gaps), which is that integer's
  text; an integer (or a whole float, exact below 2**53) becomes its decimal text; a number with
  a fraction, a boolean, an array or an object is refused. Text in scientific notation
  (``"7.23456789012E+12"``, ``"1E+3"``, ``"7.2E12"``: a mantissa with a decimal point or an
  exponent with a sign) is refused: it is what Excel writes for a long numeric id, with digits
  lost, so no integer can be recovered from it. (``"12E4"``, with neither, stays text: it may be
  a SKU.) A JSON *number* written so (``1E+3``) is a number, and a whole one is accepted.
  Excel's text formula ``="00123"`` (written by exports so that a spreadsheet keeps leading
  zeros) is the quoted text, ``00123``.
  Text that is not ASCII is put in Unicode normalisation form **NFC**: ``"Jose\u0301"`` (NFD,
  what macOS file names and some keyboards give) is ``"Jos\u00e9"``, the same user, item or
  session however it was typed, at every entry point (events, files, the catalogue, lookups and
  search). ASCII text is already NFC and is returned as it is, without a table lookup.
  The validator (`stream.core.events.check_id_characters`) then refuses id text that begins or
  ends with whitespace or an invisible character, or holds a bidi control anywhere.
- **Event types**: the v1 names, compared ignoring case, surrounding space and ``-``/space versus
  ``_`` (``View``, ``add-to-cart``); other vocabularies (``Product Viewed``, ``addtocart``) are a
  mapping, which file readers apply with their type map and the standard routes with their tables.

Pure: no I/O, no clock. Every function raises `InvalidEvent` naming the field it was given.
"""

from __future__ import annotations

import email.utils
import math
import numbers
import operator
import re
import unicodedata
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from typing import Literal

from stream.core.errors import InvalidEvent
from stream.core.json_numbers import (
    MAX_INT64,
    OversizedNumber,
    integer_digits,
    number_text,
)

TimeUnit = Literal["ms", "s", "us", "ns"]
TIME_UNITS: tuple[TimeUnit, ...] = ("ms", "s", "us", "ns")
MAX_ID_CHARS = 128
# "17850.0", "-3.", "12.000": an integer that a float formatter wrote.
_FLOAT_INTEGER_TEXT = re.compile(r"-?[0-9]+\.0*")
# "7.23456789012E+12", "1E+3", "7,2E+12" (a decimal-comma locale), "1.0E10" (Java): what Excel,
# pandas and float formatters write for a long number. "12E4", neither signed nor with a point,
# may be a SKU and stays text.
_SCIENTIFIC_TEXT = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]*[eE][+-]?|[eE][+-])[0-9]+")
# Beyond this a float no longer holds every integer: 2**53 + 1 reads back as 2**53.
_EXACT_FLOAT_INTEGER = 2**53
# Longer text is no date-time anyone wrote; refused before any parser sees it.
_MAX_TIME_TEXT = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ZONE_SUFFIXES = (" UTC", " GMT")
_UNIT_WORDS = {"ms": "ms", "s": "seconds", "us": "microseconds", "ns": "nanoseconds"}
# How many of a sub-ms unit make one ms (the number is floored to the ms).
_PER_MS = {"us": 1000, "ns": 1_000_000}
# Plausible magnitudes of what a fractional number in a ms field really is: seconds since the
# epoch with a fraction (time.time(): 1973-2286), or an Excel serial date, days since 1899-12-30
# with the time of day as a fraction (1954-2173).
_SECONDS_RANGE = (Decimal(10**8), Decimal(10**10))
_EXCEL_DAYS_RANGE = (Decimal(20_000), Decimal(100_000))
# "2025-11-13 02:13:20.034 +0000", "... Z": a zone after a space, which fromisoformat reads only
# after some forms of the time; joined to the time first.
_SPACED_ZONE = re.compile(r"(?<=[0-9])\s+(Z|[+-][0-9]{2}(?::?[0-9]{2})?)$")
# 2019/10/01: the date with slashes, year first (never ambiguous between day and month).
_SLASHED_DATE = re.compile(r"^([0-9]{4})/([0-9]{2})/([0-9]{2})")
# Java's ZonedDateTime.toString() adds the zone's name after the offset: ...Z[UTC],
# ...+02:00[Europe/Paris], ...+02:00[UTC+02:00] (a ZoneId made from an offset).
# Read away only after an offset or Z, which say the time: "...T03:13:20[Europe/Paris]" alone
# (RFC 9557 allows it) names a zone whose offset the text does not give, and is refused.
_ZONE_NAME = re.compile(r"([Tt ][0-9]{2}[0-9:.,]*(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?))\[[A-Za-z0-9_/+:-]+\]$")
# "... UTC+2", "... GMT-05:00", "... UTC+0530": an offset written after the zone's name, as
# Windows, .NET and log formats show it; it means the offset from UTC (+2 is two hours ahead), not
# the reversed sign of POSIX TZ strings, which name a zone, not a time.
_NAMED_OFFSET = re.compile(r"\s*(?:UTC|GMT)([+-])([0-9]{1,2})(?::?([0-9]{2}))?$", re.IGNORECASE)
# A 12-hour clock after a year-first date: "2025-11-13 2:13:20 PM" (Excel, SQL Server, .NET
# exports). Only after a year-first date: "11/13/2025" or "13/11/2025" cannot say which is the day.
_TWELVE_HOUR = re.compile(
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[ T]([0-9]{1,2})"
    r"(:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?)\s*([AP])\.?M\.?(?=\s|$)"
)
# 11/12/2025, 12.11.2025, 12-11-25: a date that does not start with its year, refused with its own
# reason (day first and month first are both common, and nothing in the text says which).
_DAY_MONTH_DATE = re.compile(r"^[0-9]{1,2}([/.-])[0-9]{1,2}\1[0-9]{2,4}(?![0-9])")
# A date followed by anything but the end, or T or a space and then the time's first digit.
_DATE_THEN_OTHER = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?![T ][0-9]|$)")
# An hour of one digit ("2025-11-13 2:13:20"): ISO-8601 wants two.
_ONE_DIGIT_HOUR = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2})([ T])([0-9]):")
# RFC 2822 / HTTP dates (Tue, 01 Oct 2019 00:00:00 GMT), as email headers and logs write them.
_RFC2822 = re.compile(r"^[A-Za-z]{3}, [0-9]{1,2} [A-Za-z]{3} [0-9]{4} ")
# The whole of an RFC 2822 date as read: a year from 1000 (email.utils adds 1900 or 2000 to one
# below 100), a four-digit offset, a zone name RFC 822 defines, or no zone (UTC here), then perhaps
# a comment ("+0200 (CET)", as mail headers write).
_RFC2822_WHOLE = re.compile(
    r"^[A-Za-z]{3}, [0-9]{1,2} [A-Za-z]{3} [1-9][0-9]{3} [0-9]{2}:[0-9]{2}(?::[0-9]{2})?"
    r"(?: (?:[+-][0-9]{4}|UT|UTC|GMT|Z|[ECMP][SD]T))?(?: \([ -~]{0,40}\))?\s*$",
    re.IGNORECASE,
)
# "+02:00" at the end of an RFC 2822 date: "+0200" (email.utils would drop it).
_COLON_OFFSET = re.compile(r"( [+-][0-9]{2}):([0-9]{2})\s*$")
_ENDS_WITH_CLOCK = re.compile(r"[0-9]{2}:[0-9]{2}(?::[0-9]{2})?\s*$")
_SHOWN = 40


def json_type(value: object) -> str:
    """How JSON names `value`'s type (\"a string\", \"an object\"...), for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal | OversizedNumber):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def time_fix(unit: TimeUnit = "ms") -> str:
    """The fix every time rejection ends with."""
    return (
        f"send {_UNIT_WORDS[unit]} since the epoch as an integer, or an ISO-8601 time such as "
        "2025-11-13T02:13:20.034Z (a time without a zone is UTC)"
    )


def time_ms(value: object, field: str, unit: TimeUnit = "ms") -> int | None:
    """Milliseconds since the epoch (may be negative) from a time value in any accepted form.

    `unit` is the unit of a number (ms, s, us or ns); ISO-8601 text and datetime values carry
    their own; a fraction of a ms is floored. None for None or blank text (an absent time). Raises
    InvalidEvent naming `field` for a fraction of a us or ns, a fractional number of ms that looks
    like seconds or an Excel serial date, a number over a signed 64-bit count of ms, text that is
    neither a number nor a date-time, and any other type.
    """
    number: Decimal | OversizedNumber | None
    if type(value) is int and unit == "ms":  # the common case, first
        if not -MAX_INT64 <= value <= MAX_INT64:
            raise InvalidEvent(field, _too_big(value < 0, integer_digits(value), unit))
        return value
    if value is None:
        return None
    value = plain_number(value)
    if isinstance(value, bool):
        raise InvalidEvent(field, f"expected a time, got a boolean; {time_fix(unit)}")
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (moment - _EPOCH) // _ONE_MS
    if isinstance(value, date):
        return (datetime(value.year, value.month, value.day, tzinfo=UTC) - _EPOCH) // _ONE_MS
    if isinstance(value, int):
        if integer_digits(value) > 30:
            raise InvalidEvent(field, _too_big(value < 0, integer_digits(value), unit))
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(field, f"{value!r} is not a finite number; {time_fix(unit)}")
        number = Decimal(value)
    elif isinstance(value, OversizedNumber):
        raise InvalidEvent(field, f"{value}; {time_fix(unit)}")
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        number = number_text(text)
        if number is None:
            return _time_text(value, text, field, unit)
        if isinstance(number, OversizedNumber):
            raise InvalidEvent(field, f"{number}; {time_fix(unit)}")
    else:
        raise InvalidEvent(field, f"expected a time, got {json_type(value)}; {time_fix(unit)}")
    return _number_ms(number, value, field, unit)


def _too_big(negative: bool, digits: int, unit: TimeUnit) -> str:
    return f"number too {'small' if negative else 'large'} ({digits} digits); {time_fix(unit)}"


def _number_ms(number: Decimal, original: object, field: str, unit: TimeUnit) -> int:
    if not number.is_finite():
        raise InvalidEvent(field, f"{_shown(original)} is not a finite number; {time_fix(unit)}")
    if number != 0 and number.adjusted() >= 22:
        raise InvalidEvent(field, _too_big(number < 0, number.adjusted() + 1, unit))
    if unit == "s":
        # Exact: the context's default 28 digits cannot hold every number of seconds times 1000.
        with localcontext() as context:
            context.prec = max(len(number.as_tuple().digits), number.adjusted() + 4) + 2
            ms = int(number.scaleb(3).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    else:
        if number != number.to_integral_value():
            # A fraction of a ms is floored, as ISO text's microseconds and us/ns counts are: a
            # browser's performance.timeOrigin + performance.now() and Python's time.time() * 1000
            # send one. A number that looks like another unit is refused with its hint; a fraction
            # of a us or ns is no time anyone sends.
            hint = _fraction_fix(number) if unit == "ms" else time_fix(unit)
            if hint is not None:
                raise InvalidEvent(
                    field, f"{_shown(original)} is not a whole number of {_UNIT_WORDS[unit]}; {hint}"
                )
            number = number.to_integral_value(rounding=ROUND_FLOOR)
        # us, ns: floor to the ms, exact for any size (Decimal division rounds at 28 digits).
        ms = int(number) // _PER_MS[unit] if unit in _PER_MS else int(number)
    if not -MAX_INT64 <= ms <= MAX_INT64:
        raise InvalidEvent(field, _too_big(ms < 0, integer_digits(ms), unit))
    return ms


def _fraction_fix(number: Decimal) -> str | None:
    """The fix for a number with a fraction in a ms field that looks like another unit, or None."""
    if _SECONDS_RANGE[0] <= abs(number) < _SECONDS_RANGE[1]:
        return SECONDS_FRACTION_HINT
    if _EXCEL_DAYS_RANGE[0] <= number < _EXCEL_DAYS_RANGE[1]:
        return EXCEL_SERIAL_HINT
    return None


DAY_MONTH_HINT = (
    "starts with the day or the month, which the text cannot tell apart (11/12: 11 Dec or "
    "12 Nov); send ISO-8601, year first (yyyy-mm-ddThh:mm:ss)"
)
SECONDS_FRACTION_HINT = "it looks like seconds, as time.time() gives: send round(seconds * 1000)"
EXCEL_SERIAL_HINT = (
    "it looks like an Excel serial date (days since 1899-12-30): export the column as ISO-8601 "
    "text (yyyy-mm-ddThh:mm:ss)"
)


def plain_number(value: object) -> object:
    """`value` as a Python int or float when it is another integer or real type (numpy's int64,
    float32...: ``numbers.Integral``/``numbers.Real``); anything else (bool, Decimal, text...)
    unchanged. No numpy import: the types register themselves with `numbers`."""
    if isinstance(value, int | float | Decimal | str) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return operator.index(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _time_text(value: str, text: str, field: str, unit: TimeUnit) -> int:
    parsed = parse_datetime(text) if len(text) <= _MAX_TIME_TEXT else None
    if parsed is None:
        if _DAY_MONTH_DATE.match(text):
            raise InvalidEvent(field, f"{_shown(value)} {DAY_MONTH_HINT}")
        raise InvalidEvent(field, f"{_shown(value)} is neither a number nor a date-time; {time_fix(unit)}")
    return (parsed - _EPOCH) // _ONE_MS


def parse_datetime(text: str) -> datetime | None:
    """ISO-8601 (`datetime.fromisoformat`) or ``... UTC``/``... GMT``, zone-aware; no zone = UTC.

    Case does not matter (RFC 3339 allows ``t`` and ``z``) and a zone may follow a space
    (``2025-11-13 02:13:20.034 +0000``); runs of spaces count as one, the date may be written
    with slashes (``2019/10/01 00:00:00``), Java's zone name after the offset is read away
    (``...Z[UTC]``, ``...+02:00[UTC+02:00]``), an offset may follow the zone's name (``... UTC+2``,
    ``... GMT-05:00``: the offset from UTC), a year-first date may have a 12-hour clock
    (``2019-10-01 2:05:00 PM``) or an hour of one digit, and RFC 2822 dates
    (``Tue, 01 Oct 2019 00:00:00 GMT``) are read by `email.utils.parsedate_to_datetime`. Only
    ASCII text: `fromisoformat` reads other scripts' digits too, which no sender means.
    """
    if not text.isascii():
        return None
    if _RFC2822.match(text):
        text = _NAMED_OFFSET.sub(lambda m: f" {m[1]}{int(m[2]):02d}{m[3] or '00'}", text)
        text = _COLON_OFFSET.sub(r"\1\2", text)
        if not _RFC2822_WHOLE.match(text):
            # email.utils reads "+02" as minutes and ignores what follows the first zone
            # ("GMT +0200", "GMT CET"): only the forms RFC 2822 defines go to it.
            return None
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            # email.utils leaves a zone it does not know (CET, BST...) naive, as it does -0000
            # ("UTC, local zone unknown") and no zone at all (UTC here, as for ISO text): only
            # those two say the time.
            known = text.rstrip().endswith("-0000") or _ENDS_WITH_CLOCK.search(text)
            return moment.replace(tzinfo=UTC) if known else None
        return moment
    text = " ".join(_ZONE_NAME.sub(r"\1", text).split()).upper()
    text = _SLASHED_DATE.sub(r"\1-\2-\3", text)
    twelve_hour = _TWELVE_HOUR.match(text)
    if twelve_hour:
        date, hour_text, rest, half = twelve_hour.groups()
        hour = int(hour_text)
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if half == "P" else 0)
        text = f"{date} {hour:02d}{rest}{text[twelve_hour.end() :]}"
    text = _ONE_DIGIT_HOUR.sub(r"\g<1>\g<2>0\g<3>:", text)
    text = _NAMED_OFFSET.sub(lambda m: f"{m[1]}{int(m[2]):02d}:{m[3] or '00'}", text)
    for suffix in _ZONE_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)].rstrip()
            break
    text = _SPACED_ZONE.sub(r"\1", text)
    if _DATE_THEN_OTHER.match(text):
        # fromisoformat (3.11) takes any character after a date as the date-time separator:
        # "2025-11-13+02:00" would read its offset as the hour.
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def id_text(value: object, field: str) -> str | None:
    """An id as text (see the module docstring), non-ASCII text in Unicode form NFC; None for None.

    Raises InvalidEvent naming `field` for a number with a fraction, a float too large to hold
    its integer exactly, an integer of more than MAX_ID_CHARS digits, text in scientific notation
    (digits lost, see the module docstring), and a non-text, non-number.
    """
    if isinstance(value, str):
        if value.startswith('="') and value.endswith('"') and len(value) > 3:
            # Excel's text formula, ="00123", which exports write so that a spreadsheet keeps an
            # id's leading zeros: the id is the quoted text.
            value = value[2:-1].replace('""', '"')
        if not value.isascii():
            # One spelling per id: NFC and NFD of "José" are one user. ASCII (most ids) is NFC.
            value = unicodedata.normalize("NFC", value)
        if "." in value and _FLOAT_INTEGER_TEXT.fullmatch(value):
            return value.partition(".")[0]
        if ("e" in value or "E" in value) and _SCIENTIFIC_TEXT.fullmatch(value.strip()):
            raise InvalidEvent(
                field,
                f"{_shown(value)} looks like a number Excel wrote in scientific notation, which loses "
                "digits; export the column as text (format the cells as Text before saving) and send "
                "the full id",
            )
        return value
    if value is None:
        return None
    value = plain_number(value)
    fix = "send the id as a string"
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | OversizedNumber):
        raise InvalidEvent(field, f"expected a string, got {json_type(value)}")
    if isinstance(value, OversizedNumber):
        raise InvalidEvent(field, f"{value}; {fix}")
    if isinstance(value, int):
        digits = integer_digits(value)
        if digits > MAX_ID_CHARS:
            limit = f"of at most {MAX_ID_CHARS} characters"
            raise InvalidEvent(field, f"number too large ({digits} digits); {fix} {limit}")
        return str(value)
    number = Decimal(value)
    if number.is_finite() and number != 0 and number.adjusted() >= MAX_ID_CHARS:
        raise InvalidEvent(field, f"number too large ({number.adjusted() + 1} digits); {fix}")
    if not number.is_finite() or number != number.to_integral_value():
        raise InvalidEvent(field, f"{_shown(value)} is not a whole number; an id is text: {fix}")
    if isinstance(value, float) and abs(value) >= _EXACT_FLOAT_INTEGER:
        raise InvalidEvent(field, f"{_shown(value)} is a float too large to hold an exact integer; {fix}")
    return str(int(number))


def integer_value(value: object, field: str) -> object:
    """An integer field (``v``): an int, a whole float or numeric text as an int; None for None
    or blank text; any other value unchanged, for the validator to name. Raises InvalidEvent
    naming `field` for a number with a fraction or of more than 30 digits."""
    if value is None or type(value) is int:
        return value
    if isinstance(value, bool):
        return value
    value = plain_number(value)
    if type(value) is int:
        return value
    number: Decimal | OversizedNumber | None
    if isinstance(value, str):
        if not value.strip():
            return None
        number = number_text(value.strip())
    elif isinstance(value, float | Decimal):
        number = Decimal(value) if not isinstance(value, float) or math.isfinite(value) else None
    else:
        return value
    if number is None or isinstance(number, OversizedNumber):
        return value
    if not number.is_finite():
        raise InvalidEvent(field, f"{_shown(value)} is not a finite number; send an integer")
    if number != 0 and number.adjusted() >= 30:
        raise InvalidEvent(field, f"{_shown(value)} is out of range; send a small integer")
    if number != number.to_integral_value():
        raise InvalidEvent(field, f"{_shown(value)} is not a whole number; send an integer")
    return int(number)


# Where a camelCase or PascalCase name ("addToCart", "ProductViewed") starts its next word.
_CAMEL_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def type_key(name: str) -> str:
    """How type names compare: lower case, words joined by ``_``, camelCase words apart
    (``Add-To Cart``, ``addToCart`` and ``ADD_TO_CART`` -> ``add_to_cart``)."""
    return "_".join(_CAMEL_WORD.sub(" ", name).strip().lower().replace("-", " ").replace("_", " ").split())


def _shown(value: object) -> str:
    return repr(str(value)[:_SHOWN])
