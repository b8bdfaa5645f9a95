"""JSON numbers no field can hold, parsed into a value the validators reject naming the field.

Python's `json` turns every integer literal into an `int`, and `int()` refuses a literal of more
than `sys.get_int_max_str_digits()` digits (4300 by default) with a ValueError that names no
field and suggests raising an interpreter limit; a float literal beyond the double range (1e400)
silently becomes infinity, which `json.dumps` then writes as the non-JSON ``Infinity``. Either way
one hostile or broken number failed a whole request body, a file line or a worker batch instead
of its own event. The decoders here parse such a literal into an `OversizedNumber`, which stands
where the number was, so that the validator rejects the event alone and names the field.

``NaN``, ``Infinity`` and ``-Infinity`` are no JSON at all, yet Python's `json.dumps` writes them
by default (a missing price as ``float("nan")``): with `parse_json_constant` as a decoder's
`parse_constant` they parse into a `NonFiniteNumber` (an OversizedNumber to every validator), so
that only the event holding one is rejected, naming its field.

Integers a decoder does parse may still be long (up to Python's limit): each field bounds its own
(`number_too_large`: 64 bits for times, MAX_INTEGER_DIGITS for context values).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# The smallest limit `sys.set_int_max_str_digits` accepts: an integer this long converts to and
# from text whatever limit the process set, and is far longer than any count, price or time.
MAX_INTEGER_DIGITS = 640
# The bound of time fields (ms since epoch): a signed 64-bit integer, what Kafka timestamps, Redis
# integers and orjson (which stores windows and activity) hold.
MAX_INT64 = 2**63 - 1
_INTEGER_BOUND = 10**MAX_INTEGER_DIGITS
_SHOWN_CHARS = 24
_SHOWN_PATH_CHARS = 80


@dataclass(frozen=True, slots=True)
class OversizedNumber:
    """A JSON number literal too large to parse (see BoundedDecoder): an integer literal (`digits`
    > 0), or a float literal beyond the 64-bit float range (`digits` == 0)."""

    literal: str  # its first characters, to show
    digits: int
    negative: bool

    def __str__(self) -> str:
        size = f"{self.digits} digits" if self.digits else f"{self.literal} overflows a 64-bit float"
        return f"number too {'small' if self.negative else 'large'} ({size})"


@dataclass(frozen=True, slots=True)
class NonFiniteNumber(OversizedNumber):
    """``NaN``, ``Infinity`` or ``-Infinity`` where a JSON number belongs (see `parse_json_constant`).

    An OversizedNumber, so that every rule refusing those (times, ids, context values, the
    version) refuses this too, naming its field; only the wording differs.
    """

    def __str__(self) -> str:
        return f"{self.literal} is not a JSON number (null is JSON's missing value)"


def parse_json_constant(name: str) -> NonFiniteNumber:
    """`json`'s parse_constant: a NonFiniteNumber standing for ``NaN``, ``Infinity`` or ``-Infinity``
    (the only names json calls it with), for the validator to reject with its event alone."""
    return NonFiniteNumber(name, 0, name.startswith("-"))


def parse_json_int(text: str) -> int | OversizedNumber:
    """`json`'s parse_int: an int, or an OversizedNumber for a literal over MAX_INTEGER_DIGITS."""
    negative = text.startswith("-")
    digits = len(text) - negative
    if digits > MAX_INTEGER_DIGITS:
        return OversizedNumber(_cut(text), digits, negative)
    return int(text)


def parse_json_float(text: str) -> float | OversizedNumber:
    """`json`'s parse_float: a float, or an OversizedNumber where the literal overflows to infinity."""
    value = float(text)
    if math.isinf(value):
        return OversizedNumber(_cut(text), 0, text.startswith("-"))
    return value


class BoundedDecoder:
    """`json.JSONDecoder().decode` with over-large numbers parsed into OversizedNumber values.

    A float literal past the double range is one. Integers take json's C fast path; only when a
    literal passes Python's int-from-text limit is the text parsed again, with every integer of
    more than MAX_INTEGER_DIGITS digits an OversizedNumber (the same reasons come out either way).
    `parse_constant` is called for NaN, Infinity and -Infinity (None: json's default, floats);
    `object_pairs_hook` for each object (None: a dict, the last of a repeated key winning;
    `mark_duplicate_keys` keeps that but marks the object).
    Build one per call site and reuse it: each `json.JSONDecoder` is a reference cycle.
    """

    def __init__(
        self,
        parse_constant: Callable[[str], object] | None = None,
        object_pairs_hook: Callable[[list[tuple[str, object]]], object] | None = None,
    ) -> None:
        # Integers through json's C fast path (a Python parse_int costs every event several
        # calls); floats are rare in events, and an overflow is invisible after parsing.
        self._fast = json.JSONDecoder(
            parse_float=parse_json_float, parse_constant=parse_constant, object_pairs_hook=object_pairs_hook
        )
        self._bounded = json.JSONDecoder(
            parse_int=parse_json_int,
            parse_float=parse_json_float,
            parse_constant=parse_constant,
            object_pairs_hook=object_pairs_hook,
        )

    def decode(self, text: str) -> object:
        """The JSON value of `text`; json.JSONDecodeError (a ValueError) when it is not JSON."""
        try:
            return self._fast.decode(text)
        except json.JSONDecodeError:
            raise
        except ValueError:
            # An integer literal past Python's int-from-text limit (or parse_constant refusing
            # NaN, which the second pass raises again).
            return self._bounded.decode(text)


_DEFAULT_DECODER = BoundedDecoder()


# Repeated keys in one JSON object: RFC 8259 (section 4) says names SHOULD be unique and that
# parsers then disagree (the first, the last, an error); Python keeps the last. A proxy or audit log
# that reads the first would see another user_id than the worker: such an object is refused.
class DuplicateKeys(dict[str, object]):
    """A JSON object that named keys more than once (the last value kept, as `json.loads` keeps it);
    `duplicates` are those keys, in order (from `mark_duplicate_keys`)."""

    duplicates: tuple[str, ...] = ()


def repeated_keys(pairs: list[tuple[str, object]]) -> tuple[str, ...]:
    """The keys of `pairs` that appear more than once, each once, in order of first repetition."""
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for key, _ in pairs:
        if key in seen:
            repeated[key] = None
        seen.add(key)
    return tuple(repeated)


def mark_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """An `object_pairs_hook`: the object as `json.loads` builds it, a `DuplicateKeys` when a key
    repeats (so a caller can refuse the part that holds it, not the whole document)."""
    doc = dict(pairs)
    if len(doc) == len(pairs):
        return doc
    marked = DuplicateKeys(doc)
    marked.duplicates = repeated_keys(pairs)
    return marked


def refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """An `object_pairs_hook` raising ValueError (`duplicate_key_reason`) when a key repeats."""
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError(duplicate_key_reason(repeated_keys(pairs)[0]))
    return doc


def first_duplicate_key(doc: object, path: str = "") -> tuple[str, str] | None:
    """The first object inside `doc` (parsed with `mark_duplicate_keys`) that repeated a key: its
    path (``context.page``, ``$`` for `doc` itself) and the key; None when there is none."""
    if isinstance(doc, DuplicateKeys):
        return (path or "$", doc.duplicates[0])
    if isinstance(doc, dict):
        for key, value in doc.items():
            if isinstance(value, dict | list):
                found = first_duplicate_key(value, f"{path}.{key}" if path else str(key))
                if found is not None:
                    return found
    elif isinstance(doc, list):
        for number, value in enumerate(doc):
            if isinstance(value, dict | list):
                found = first_duplicate_key(value, f"{path}[{number}]")
                if found is not None:
                    return found
    return None


def duplicate_key_reason(key: str) -> str:
    """The reason given for an object that repeats `key`."""
    return (
        f"the key {key!r} appears more than once in one JSON object; send each key once "
        "(JSON parsers disagree on which copy counts: RFC 8259 section 4)"
    )


def loads(data: str | bytes, decoder: BoundedDecoder = _DEFAULT_DECODER) -> object:
    """`json.loads(data)` through `decoder`: the same errors, but bounded numbers (see the module)."""
    if isinstance(data, bytes):
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    if data.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
    return decoder.decode(data)


# A number as text: JSON's grammar, plus a leading "+" and a bare "12." or ".5" (what spreadsheets
# and float formatters write). ASCII only: `int` and `Decimal` also read other scripts' digits
# ("\uff11\uff12") and "1_000", which no sender means as a number.
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
# Longer number text is parsed only as far as counting its digits.
_MAX_NUMBER_TEXT = MAX_INTEGER_DIGITS + 32


def number_text(text: str) -> Decimal | OversizedNumber | None:
    """The exact value of number text (``"1763000000034"``, ``"-12.50"``, ``"1.7e12"``), or None
    when `text` (already stripped) is not a number; an OversizedNumber for text of more than
    MAX_INTEGER_DIGITS digits before its point, so that no caller converts it (int() of a long
    digit string raises past Python's limit, or takes quadratic time below it)."""
    if not _NUMBER_TEXT.fullmatch(text):
        return None
    if len(text) > _MAX_NUMBER_TEXT:
        mantissa = text.lstrip("+-").split("e")[0].split("E")[0]
        digits = len(mantissa.partition(".")[0].lstrip("0"))
        if digits > MAX_INTEGER_DIGITS or "e" in text.lower():
            return OversizedNumber(_cut(text), max(digits, 1), text.startswith("-"))
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only what Decimal reads
        return None


def number_too_large(value: object, bound: int = MAX_INT64) -> str | None:
    """Why an OversizedNumber or an integer outside ``-bound..bound`` is refused, as "number too
    large (5001 digits)" ("too small" below zero); None for anything else, for the validator.

    Computed without converting the number to text, which raises for the very numbers this is about.
    """
    if isinstance(value, OversizedNumber):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int) or -bound <= value <= bound:
        return None
    return f"number too {'small' if value < 0 else 'large'} ({integer_digits(value)} digits)"


def integer_digits(value: int) -> int:
    """How many decimal digits `value` has (its sign aside), without converting it to text."""
    magnitude = abs(value)
    if magnitude < 10:
        return 1
    # 10**estimate <= 2**(bits - 1) <= magnitude, so the count is estimate + 1 or estimate + 2.
    estimate = int((magnitude.bit_length() - 1) * math.log10(2))
    return estimate + 2 if magnitude >= 10 ** (estimate + 1) else estimate + 1


def unsafe_number_path(value: object, root: str) -> tuple[str, str] | None:
    """The first number inside the JSON value `value` that JSON text cannot carry, as (path, what).

    That is an OversizedNumber, an integer of more than MAX_INTEGER_DIGITS digits (converting a
    long one to text raises, and a literal past Python's limit would parse as an OversizedNumber
    in the worker) or a NaN or infinite float (json.dumps writes them as NaN and Infinity, which
    no JSON parser reads back). Iterative, so any nesting depth is safe.
    """
    pending: list[tuple[str, object]] = [(root, value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, dict):
            pending.extend((f"{path}.{key}", child) for key, child in reversed(list(item.items())))
        elif isinstance(item, list | tuple):
            pending.extend((f"{path}[{index}]", child) for index, child in reversed(list(enumerate(item))))
        elif isinstance(item, float) and not math.isfinite(item):
            return _cut(path, _SHOWN_PATH_CHARS), f"{item!r}, which JSON cannot carry"
        else:
            too_large = number_too_large(item, _INTEGER_BOUND - 1)
            if too_large is not None:
                return _cut(path, _SHOWN_PATH_CHARS), too_large
    return None


def _cut(text: str, chars: int = _SHOWN_CHARS) -> str:
    return text if len(text) <= chars else f"{text[:chars]}..."
