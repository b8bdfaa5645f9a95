"""Value rules that the entry-point table (test_one_normalisation.py) cannot send as JSON: numpy
numbers through the SDK, times in us and ns read as ms, the ``ns`` file unit, a table of ISO-8601
spellings, invisible-only catalogue titles and a search query that is not UTF-8 (field case kinds
f02, f07, f11 and f15 in /work/shared/field-cases/README.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from models.index.catalog import item_from_row
from stream.cli.main import main
from stream.core import events
from stream.core.errors import CatalogError, InvalidEvent
from stream.core.normalise import id_text, integer_value, parse_datetime, time_ms
from stream.core.settings import Settings, load_settings
from stream.core.tabular import RowRules, normalise_v1
from stream.ingest.sdk import ProfilestreamProducer
from stream.serving.api import create_lookup_app
from stream.serving.search import SearchConfig, UserSignals
from stream.serving.search_service import SearchService
from tests.support.fakes import FakeCatalogue, FakeProducer
from tests.unit.stream import entry_points as ep
from tests.unit.stream.entry_points import NOW_MS, TS_MS

NUMPY_INTEGERS = [np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64, np.intp]


def sdk() -> ProfilestreamProducer:
    settings = load_settings({}, events_topic="t.events")
    return ProfilestreamProducer(settings, producer_factory=lambda _: FakeProducer(), clock_ms=lambda: NOW_MS)


@pytest.mark.parametrize("kind", NUMPY_INTEGERS, ids=lambda k: k.__name__)
def test_the_sdk_takes_numpy_integers_for_ids_and_times(kind: Any) -> None:
    ts = np.int64(TS_MS) if np.iinfo(kind).max >= TS_MS else TS_MS
    event = sdk().track(kind(42), "view", item_id=kind(7), ts_ms=ts, event_id="e-1")
    assert (event.user_id, event.item_id, event.ts_ms) == ("42", "7", TS_MS)
    assert type(event.ts_ms) is int  # a plain int: the record is JSON
    assert b'"ts_ms":1763000000034' in event.to_json()


@pytest.mark.parametrize("kind", [np.float64, np.float32, np.float16])
def test_the_sdk_takes_whole_numpy_floats_for_ids_and_refuses_fractions(kind: Any) -> None:
    event = sdk().track(kind(42.0), "view", item_id=kind(7.0), event_id="e-1")
    assert (event.user_id, event.item_id) == ("42", "7")
    with pytest.raises(InvalidEvent) as info:
        sdk().track(kind(42.5), "view", item_id="sku-1")
    assert info.value.field == "user_id" and "is not a whole number" in info.value.reason


@pytest.mark.parametrize("value", [np.int64(TS_MS), np.uint64(TS_MS), np.float64(TS_MS)])
def test_time_rule_reads_numpy_numbers_in_every_unit(value: Any) -> None:
    assert time_ms(value, "ts_ms") == TS_MS
    assert (
        time_ms(value * 1000 if not isinstance(value, np.float64) else float(TS_MS) * 1000, "t", "us")
        == TS_MS
    )
    assert time_ms(np.int64(1_763_000_000), "t", "s") == 1_763_000_000_000
    assert integer_value(np.int16(1), "v") == 1 and type(integer_value(np.int16(1), "v")) is int
    assert id_text(np.uint8(3), "item_id") == "3"


@pytest.mark.parametrize(
    ("context", "written"),
    [
        ({"qty": np.int64(3)}, {"qty": 3}),
        ({"price": np.float32(2.5)}, {"price": 2.5}),
        ({"cart": {"n": np.uint16(2), "ids": [np.int32(7), "x"]}}, {"cart": {"n": 2, "ids": [7, "x"]}}),
    ],
)
def test_the_sdk_takes_numpy_numbers_inside_context(context: dict[str, Any], written: dict[str, Any]) -> None:
    """A context built from a DataFrame row holds numpy numbers: sent as JSON numbers, as the
    top-level fields' numbers are."""
    event = sdk().track("u1", "view", item_id="i1", ts_ms=TS_MS, context=context)
    assert event.context == written
    assert json.loads(event.to_json())["context"] == written


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ({"qty": np.float64("nan")}, "context"),
        ({"when": object()}, "JSON cannot carry"),
        ({"flag": np.bool_(True)}, "JSON cannot carry"),
        ({"big": np.float32("inf")}, "context"),
    ],
)
def test_context_values_json_cannot_carry_stay_refused(context: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidEvent, match=named) as raised:
        sdk().track("u1", "view", item_id="i1", ts_ms=TS_MS, context=context)
    assert raised.value.field == "context"


def test_numpy_booleans_are_no_ids() -> None:
    with pytest.raises(InvalidEvent):
        id_text(np.bool_(True), "user_id")


# Read as ms, a time in us or ns lies far in the future: the rejection says which unit it looks like.
@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (TS_MS * 1000, "(it looks like microseconds: divide by 1,000)"),
        (TS_MS * 1000 + 999, "(it looks like microseconds: divide by 1,000)"),
        (str(TS_MS * 1000), "(it looks like microseconds: divide by 1,000)"),
        (TS_MS * 1_000_000, "(it looks like nanoseconds: divide by 1,000,000)"),
        (float(TS_MS * 1_000_000), "(it looks like nanoseconds: divide by 1,000,000)"),
        (TS_MS * 10, ""),  # no unit makes it plausible: no hint
    ],
)
# (The collector does not reject a time ahead of its clock: it clamps it to the receive time and
# says so in the answer's clamped_events, stream/ingest/body.py.)
@pytest.mark.parametrize("entry", ["sdk", "worker", "replay-jsonl", "replay-csv", "load"])
def test_a_time_in_us_or_ns_read_as_ms_gets_the_unit_hint(
    entry: str, value: object, hint: str, tmp_path: Path
) -> None:
    got = ep.run_v1(entry, "ts_ms", value, tmp_path)
    assert (got.accepted, got.field) == (False, "ts_ms")
    assert got.reason is not None and "lies in the future (latest accepted now: " in got.reason
    assert got.reason.endswith(f") {hint}" if hint else ")"), got.reason


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (1_763_000_000, "(it looks like seconds: multiply by 1000)"),
        (46356, "(it looks like an Excel serial date"),
    ],
)
def test_a_time_in_seconds_or_excel_days_read_as_ms_gets_a_hint(value: int, hint: str) -> None:
    got = ep.via_worker("ts_ms", value)
    assert got.field == "ts_ms" and got.reason is not None and hint in got.reason


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (TS_MS * 1_000_000 + 999_999, "ns", TS_MS),  # Arrow/pandas int64 timestamps: floored to the ms
        (str(TS_MS * 1_000_000), "ns", TS_MS),
        (f"{TS_MS * 1_000_000}.0", "ns", TS_MS),
        (TS_MS * 1000, "us", TS_MS),
    ],
)
def test_files_may_give_times_in_ns(value: object, unit: Any, expected: int) -> None:
    doc = normalise_v1(
        {"user_id": "u1", "type": "view", "item_id": "i", "ts_ms": value},
        RowRules(ts_unit=unit),
        empty_is_absent=True,
    )
    assert doc["ts_ms"] == expected


def test_a_fraction_of_a_ns_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="is not a whole number of nanoseconds; send nanoseconds"):
        time_ms("1.5", "ts_ms", "ns")


def test_the_ts_unit_option_offers_ns() -> None:
    for command in (["replay", "--help"], ["load", "generic", "--help"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, result.output
        assert "ms|s|us|ns" in result.output.replace("\n", "").replace(" ", ""), command


# --- ISO-8601 spellings: one table, read by the one parser ----------------------------------------

ISO_ACCEPTED = {
    "2025-11-13T02:13:20.034Z": TS_MS,
    "2025-11-13t02:13:20.034z": TS_MS,
    "2025-11-13T02:13:20.034+00:00": TS_MS,
    "2025-11-13T02:13:20.034+0000": TS_MS,
    "2025-11-13 02:13:20.034+0000": TS_MS,
    "2025-11-13 02:13:20.034 +0000": TS_MS,
    "2025-11-13 02:13:20.034  +00:00": TS_MS,
    "2025-11-13 02:13:20.034 Z": TS_MS,
    "2025-11-13 02:13:20.034 z": TS_MS,
    "2025-11-13 04:13:20.034 +0200": TS_MS,
    "2025-11-13 04:13:20.034 +02": TS_MS,
    "2025-11-13 00:13:20.034 -0200": TS_MS,
    "2025-11-13 02:13:20.034 UTC": TS_MS,
    "2025-11-13 02:13:20.034 gmt": TS_MS,
    "2025-11-13 02:13:20.034": TS_MS,
    "2025-11-13T02:13:20.034123456Z": TS_MS,  # beyond us: truncated
    "2025-11-13T02:13:20,034Z": TS_MS,
    "20251113T021320.034Z": TS_MS,
    "2025-11-13 02:13:20 +0000": TS_MS - 34,
    "2025-11-13 02:13 +0000": TS_MS - 20_034,
    "2025-11-13": TS_MS - 8_000_034,
}
ISO_REFUSED = [
    "2025-11-13 02:13:20.034 +",
    "2025-11-13 02:13:20.034 +2",
    "2025-13-13 02:13:20",
    "2025-11-13 02:13:20.034 EST",
    "13/11/2025 02:13",
    "2025-11-13T02:13:20.034Z\u200b",
]


@pytest.mark.parametrize(("text", "expected"), ISO_ACCEPTED.items())
def test_iso_spellings_are_read(text: str, expected: int) -> None:
    assert time_ms(text, "ts_ms") == expected
    assert time_ms(f" {text} ", "ts_ms") == expected


@pytest.mark.parametrize("text", ISO_REFUSED)
def test_other_date_text_is_refused(text: str) -> None:
    assert parse_datetime(text) is None
    # A day-first or month-first date gets its own reason (tests/unit/stream/test_one_normalisation.py).
    with pytest.raises(
        InvalidEvent, match=r"is neither a number nor a date-time|starts with the day or the month"
    ):
        time_ms(text, "ts_ms")


# --- ids and queries --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["7.23456789012E+12", "1E+3", "1e-05", "+1.5E+3", "7,23456789012E+12", "1.0E10", " 1E+3 "]
)
def test_scientific_notation_text_is_no_id(text: str) -> None:
    with pytest.raises(InvalidEvent, match="looks like a number Excel wrote in scientific notation") as info:
        id_text(text, "user_id")
    assert info.value.field == "user_id"


@pytest.mark.parametrize("text", ["12E4", "E12", "1E", "abc1.5E+3", "sku-1E+3", "1.5"])
def test_other_text_with_an_e_stays_an_id(text: str) -> None:
    assert id_text(text, "item_id") == text


def test_a_scientific_item_id_in_the_catalogue_names_the_column() -> None:
    with pytest.raises(CatalogError, match=r"item_id .* scientific notation"):
        item_from_row({"item_id": "7.23456789012E+12", "title": "stapler"}, "items.csv row 2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\u200bshoes\ufeff", "shoes"),
        ("\u2060 \u3000shoes\u00a0", "shoes"),
        ("shoes \u2764\ufe0f", "shoes \u2764\ufe0f"),
        ("sh\u200boes", "sh\u200boes"),
        ("\u200b", ""),
    ],
)
def test_queries_are_trimmed_of_invisible_edges(text: str, expected: str) -> None:
    assert events.trim_invisible(text) == expected
    assert events.normalise_query(text) == expected


@pytest.mark.parametrize("brk", ["\t", "\r\n", "\x85", "\u2028", "\u2029"])
def test_every_line_break_inside_a_query_reads_as_a_space(brk: str) -> None:
    # NEL (U+0085) and the Unicode separators too: "chair\x85x" was "chairx", two words joined.
    assert events.normalise_query(f"office{brk}chair") == "office chair"


def test_only_invisible_edges_over_the_limit_is_no_cut() -> None:
    assert not events.query_truncated("\u200b" * 10 + "x" * 512 + "\ufeff")
    assert events.query_truncated("\u200b" + "x" * 513)
    assert events.normalise_query("\u200b" + "x" * 600) == "x" * 512


# --- the catalogue ----------------------------------------------------------------------------


@pytest.mark.parametrize("title", ["\u200b", "\u200b\ufeff", " \u3164 ", "\u2800", "\u00a0", ""])
def test_an_invisible_only_title_is_refused_with_its_row(title: str) -> None:
    with pytest.raises(CatalogError, match=r"items.csv row 3: item_id and title are required and non-empty"):
        item_from_row({"item_id": "sku-1", "title": title}, "items.csv row 3")


def test_a_title_with_visible_text_is_kept() -> None:
    assert (
        item_from_row({"item_id": "sku-1", "title": "\u2764\ufe0f mug"}, "row 2").title == "\u2764\ufe0f mug"
    )


# --- search: a query string that is not UTF-8 ---------------------------------------------------


class NoSignals:
    async def read(self, user_id: str) -> UserSignals | None:
        return None


@pytest.fixture
def search_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    catalogue = FakeCatalogue({"a": "acme stapler", "b": "papyrus stapler"})

    def open_fake(settings: Settings, redis: Any) -> SearchService:
        return SearchService(catalogue.encoder, catalogue, NoSignals(), SearchConfig())

    monkeypatch.setattr(SearchService, "open", staticmethod(open_fake))
    settings = load_settings({}, model_dir=tmp_path / "m", index_dir=tmp_path / "i")
    with TestClient(create_lookup_app(settings)) as client:
        yield client


@pytest.mark.parametrize(
    "query_string",
    ["q=%FF%FE", "q=stapler%FF", "q=%C3", "q=%ED%A0%80", "q=stapler&user_id=%FF", "q=%E2%82"],
)
def test_a_search_query_that_is_not_utf8_is_a_422(search_app: TestClient, query_string: str) -> None:
    response = search_app.get(f"/v1/search?{query_string}")
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "URL's query is not UTF-8 once percent-decoded" in detail
    assert "percent-encode the UTF-8 bytes of the query" in detail


def test_a_utf8_query_is_searched(search_app: TestClient) -> None:
    response = search_app.get("/v1/search?q=stapler%C3%A9")
    assert response.status_code == 200 and response.json()["query"] == "stapler\u00e9"
