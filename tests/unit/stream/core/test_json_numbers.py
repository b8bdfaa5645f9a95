"""Over-large JSON numbers parse into a value the validators reject by field, never a ValueError."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.json_numbers import (
    MAX_INT64,
    MAX_INTEGER_DIGITS,
    BoundedDecoder,
    OversizedNumber,
    integer_digits,
    loads,
    number_too_large,
    unsafe_number_path,
)

DIGITS_5001 = "1" + "0" * 5000


@pytest.mark.parametrize("literal", [DIGITS_5001, "-" + DIGITS_5001], ids=["5001", "-5001"])
def test_an_integer_literal_past_pythons_limit_parses_to_an_oversized_number(literal: str) -> None:
    parsed = loads(f'{{"ts_ms": {literal}}}')
    assert isinstance(parsed, dict)
    number = parsed["ts_ms"]
    assert isinstance(number, OversizedNumber)
    assert number.digits == len(literal.lstrip("-"))
    assert number.negative == literal.startswith("-")
    word = "small" if number.negative else "large"
    assert str(number) == f"number too {word} ({number.digits} digits)"


def test_long_integers_python_converts_stay_ints_for_the_fields_to_bound() -> None:
    # json's C fast path reads them; only past Python's limit does the bounded second pass run,
    # and then every integer over MAX_INTEGER_DIGITS digits is an OversizedNumber.
    long = "9" * (MAX_INTEGER_DIGITS + 1)
    assert loads(f"[{long}, 7]") == [int(long), 7]
    bounded = loads(f"[{long}, 7, {DIGITS_5001}]")
    assert isinstance(bounded, list)
    assert [type(item) for item in bounded] == [OversizedNumber, int, OversizedNumber]
    assert number_too_large(int(long)) == number_too_large(bounded[0]) == "number too large (641 digits)"


def test_json_loads_itself_fails_on_such_a_literal_naming_no_field() -> None:
    # What every entry point did before: Python's own limit, a ValueError with the wrong fix.
    with pytest.raises(ValueError, match="int_max_str_digits"):
        json.loads(f'{{"ts_ms": {DIGITS_5001}}}')


def test_integers_up_to_the_bound_parse_as_ints() -> None:
    literal = "9" * MAX_INTEGER_DIGITS
    assert loads(f"[{literal}, -{literal}, 0, 12]") == [int(literal), -int(literal), 0, 12]


@pytest.mark.parametrize(
    "literal", ["1e400", "-1e400", "1" * 400 + ".5"], ids=["1e400", "-1e400", "400-digits"]
)
def test_a_float_literal_past_the_double_range_parses_to_an_oversized_number(literal: str) -> None:
    assert math.isinf(json.loads(literal))  # the fault: written back later as non-JSON Infinity
    number = loads(literal)
    assert isinstance(number, OversizedNumber)
    assert number.digits == 0
    assert "overflows a 64-bit float" in str(number)
    assert len(number.literal) < 40


def test_loads_reads_bytes_and_refuses_a_bom_as_json_loads_does() -> None:
    assert loads('{"a": 1.5}'.encode("utf-16")) == {"a": 1.5}
    with pytest.raises(json.JSONDecodeError, match="BOM"):
        loads("\ufeff{}")
    nan = loads("NaN")  # json.loads's default: NaN is a float
    assert isinstance(nan, float) and math.isnan(nan)


def test_a_decoder_keeps_its_constant_hook() -> None:
    def refuse(name: str) -> object:
        raise ValueError(f"{name} refused")

    with pytest.raises(ValueError, match="NaN refused"):
        loads('{"x": NaN}', BoundedDecoder(refuse))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MAX_INT64, None),
        (-MAX_INT64, None),
        (MAX_INT64 + 1, "number too large (19 digits)"),
        (10**5000, "number too large (5001 digits)"),
        (-(10**5000), "number too small (5001 digits)"),
        (True, None),
        (1e300, None),  # floats are the validator's to judge
        ("9" * 5000, None),
    ],
    # pytest's own ids would convert the 5001-digit ints to text, which is the very fault.
    ids=["int64-max", "int64-min", "int64-max+1", "10**5000", "-10**5000", "bool", "float", "text"],
)
def test_number_too_large_names_the_size_without_converting_to_text(
    value: object, expected: str | None
) -> None:
    assert number_too_large(value) == expected


@given(st.integers(min_value=-(10**700), max_value=10**700))
def test_integer_digits_counts_like_str(value: int) -> None:
    assert integer_digits(value) == len(str(abs(value)))


@pytest.mark.parametrize("power", [0, 1, 2, 15, 16, 17, 18, 19, 20, 300, 4300, 5000])
def test_integer_digits_at_powers_of_ten(power: int) -> None:
    assert integer_digits(10**power) == power + 1
    if power:
        assert integer_digits(10**power - 1) == power


def test_unsafe_number_path_names_the_first_number_json_cannot_carry() -> None:
    parsed = loads(f'{{"a": 1, "items": [{{"sku": "x"}}, {{"price": {DIGITS_5001}}}], "b": 1e400}}')
    assert unsafe_number_path(parsed, "context") == (
        "context.items[1].price",
        "number too large (5001 digits)",
    )
    assert unsafe_number_path({"n": float("nan")}, "context") == ("context.n", "nan, which JSON cannot carry")
    assert unsafe_number_path({"n": 10**MAX_INTEGER_DIGITS}, "context") == (
        "context.n",
        f"number too large ({MAX_INTEGER_DIGITS + 1} digits)",
    )
    assert unsafe_number_path({"n": 10**MAX_INTEGER_DIGITS - 1, "x": [1.5, "s", None]}, "context") is None


def test_unsafe_number_path_survives_any_depth() -> None:
    deep: object = float("inf")
    for _ in range(5000):
        deep = [deep]
    found = unsafe_number_path(deep, "context")
    assert found is not None
    assert found[1] == "inf, which JSON cannot carry"
    assert len(found[0]) <= 83  # cut for the message
