"""CSV headers as spreadsheets and exports write them: a space after each separator, names in
another case, a name given twice; and type names in other vocabularies (breaker pass, round 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.core.errors import SourceError
from stream.core.tabular import ReadTally, RowRules, map_event_type, normalise_v1, read_rows

TS = "1764000000000"


def rows(tmp_path: Path, text: str) -> list[dict[str, str]]:
    path = tmp_path / "e.csv"
    path.write_text(text, encoding="utf-8")
    return [row.values for row in read_rows(path)]


def test_a_space_after_each_separator_is_no_part_of_the_cells(tmp_path: Path) -> None:
    got = rows(tmp_path, f'event_id, user_id, type, item_id, ts_ms\ne1, u1, view, "i, 1", {TS}\n')
    assert got == [{"event_id": "e1", "user_id": "u1", "type": "view", "item_id": "i, 1", "ts_ms": TS}]


def test_a_header_naming_a_column_twice_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"'user_id' 2 times \(columns 2, 3\)"):
        rows(tmp_path, f"event_id,user_id,user_id,type,item_id,ts_ms\ne1,alice,mallory,view,i1,{TS}\n")
    # Empty names (a trailing separator) are no names.
    assert rows(tmp_path, "event_id,user_id,,\ne1,u1,,\n") == [{"event_id": "e1", "user_id": "u1", "": ""}]


def test_v1_columns_in_another_case_or_spelling_are_read_as_their_fields() -> None:
    row = {"Event_ID": "e1", "User ID": "u1", "TYPE": "view", "itemId": "i1", "ts-ms": TS}
    assert normalise_v1(row, RowRules(), empty_is_absent=True) == {
        "event_id": "e1",
        "user_id": "u1",
        "type": "view",
        "item_id": "i1",
        "ts_ms": int(TS),
    }
    # A field under its own name wins; the other spelling is left for the validator to name.
    both = normalise_v1({"user_id": "u1", "User_ID": "u2"}, RowRules(), empty_is_absent=True)
    assert (both["user_id"], both["User_ID"]) == ("u1", "u2")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pv", "view"),  # Taobao's UserBehavior.csv (pv, fav, cart, buy)
        ("fav", "click"),
        ("ViewItem", "view"),  # camelCase and PascalCase names
        ("ProductViewed", "view"),
        ("addToCart", "add_to_cart"),
        ("Viewed Product", "view"),  # Segment's v1 spec names
        ("Completed Order", "purchase"),
        ("Searched Products", "search"),
        ("add_to_wishlist", "click"),
    ],
)
def test_type_names_of_other_vocabularies_are_mapped(name: str, expected: str) -> None:
    assert map_event_type(name, RowRules().type_map) == expected


def test_a_row_with_backslash_escaped_quotes_is_rejected_with_the_export_fix(tmp_path: Path) -> None:
    # The file also doubles a quote (""), so it is read as CSV: the backslash row splits into too
    # many cells and is rejected alone with the fix (files that only escape with a backslash are
    # read so: tests/unit/stream/core/test_tabular_escapes.py).
    path = tmp_path / "e.csv"
    path.write_text(
        f'event_id,user_id,type,query,ts_ms\ne0,u1,search,"24"" monitor",{TS}\n'
        f'e1,u1,search,"27\\" monitor, curved",{TS}\n'
    )
    tally = ReadTally()
    assert [row.values["query"] for row in read_rows(path, tally=tally)] == ['24" monitor']
    assert "escaped with a backslash" in tally.first_malformed[0]
