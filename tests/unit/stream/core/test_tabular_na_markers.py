"""Missing-value markers: a search's query is read as written, and `RowRules.na_markers` False
(``--na-markers none``, pandas' keep_default_na=False) keeps every marker as text."""

from __future__ import annotations

import pytest

from stream.core.errors import InvalidEvent
from stream.core.tabular import ColumnMap, RowRules, normalise_v1, to_v1_doc

COLUMNS = ColumnMap(user_col="user", ts_col="ts", item_col="item", type_col="type", query_col="q")


def keep() -> RowRules:
    return RowRules(na_markers=False)


def row(**cells: object) -> dict[str, object]:
    base: dict[str, object] = {"user": "u1", "ts": "1700000000000", "item": "", "type": "search", "q": "lamp"}
    base.update(cells)
    return base


@pytest.mark.parametrize("query", ["nan", "NA", "None", "null", "N/A", "NULL"])
def test_a_marker_in_a_searchs_query_is_the_query(query: str) -> None:
    assert to_v1_doc(row(q=query), COLUMNS, RowRules())["query"] == query


def test_an_empty_or_nan_query_still_leaves_a_search_without_one() -> None:
    assert "query" not in to_v1_doc(row(q=""), COLUMNS, RowRules())
    with pytest.raises(InvalidEvent) as caught:
        to_v1_doc(row(q=float("nan")), COLUMNS, RowRules())
    assert caught.value.field == "query"


def test_ids_keep_the_marker_rule_by_default() -> None:
    with pytest.raises(InvalidEvent) as caught:
        to_v1_doc(row(user="None", q="null"), COLUMNS, RowRules())
    assert caught.value.field == "user_id"


def test_without_markers_a_user_named_none_and_an_item_na_are_text() -> None:
    doc = to_v1_doc(row(user="None", type="view", item="NA", q=""), COLUMNS, keep())
    assert (doc["user_id"], doc["item_id"]) == ("None", "NA")


def test_without_markers_the_v1_table_rows_of_a_replay_are_kept() -> None:
    cells = {"event_id": "c1", "user_id": "None", "type": "view", "item_id": "NA", "ts_ms": "1796032800000"}
    with pytest.raises(InvalidEvent):
        normalise_v1(cells, RowRules(), empty_is_absent=True)
    doc = normalise_v1(cells, keep(), empty_is_absent=True)
    assert (doc["user_id"], doc["item_id"]) == ("None", "NA")


def test_without_markers_empty_cells_and_float_nan_are_still_absent() -> None:
    doc = to_v1_doc({**row(type="view", item="i1", q=""), "s": float("nan")}, COLUMNS, keep())
    assert "query" not in doc
    with pytest.raises(InvalidEvent) as caught:
        to_v1_doc(row(user=float("nan")), COLUMNS, keep())
    assert caught.value.field == "user_id"
