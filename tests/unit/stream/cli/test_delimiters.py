"""`--delimiter` and separator detection through the commands: `load generic`, `replay` (dry run: no
Kafka), the tracking-record loaders; f11's float-written integers as Excel writes them in a locale
with decimal commas and ';' separators."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from stream.cli.main import main
from stream.core.settings import load_settings
from stream.ingest.replay import SourceSpec, iter_source

FIELD = Path(__file__).parents[1] / "ingest" / "data"
F11 = FIELD / "f11-float-formatted-integers.csv"
F10B = FIELD / "f10b-cp1252-v1-events.csv"
V1_COLUMNS = [
    "--user-col", "user_id", "--ts-col", "ts_ms", "--item-col", "item_id", "--type-col", "type",
    "--query-col", "query", "--event-id-col", "event_id",
]  # fmt: skip
EXPECTED_F11 = [
    ("pf-1", "90001", "sku-00070", 1_796_006_133_034),
    ("pf-2", "90001", None, 1_796_006_134_034),
    ("pf-3", "90001", "sku-00071", 1_796_006_135_034),
]


def invoke(args: list[str]) -> Result:
    # No Kafka is started: replay runs with --dry-run, and load never connects.
    return CliRunner().invoke(main, args, env={"PROFILESTREAM_LOG_LEVEL": "WARNING"})


def report_of(result: Result, key: str) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    # replay's progress bar shares the output: the report is the JSON object in it.
    text = result.output[result.output.index('{"' + key) :]
    return dict(json.loads(text.splitlines()[0]))


def rewrite(source: Path, delimiter: str, *, decimal_comma: bool, encoding: str = "utf-8") -> str:
    """`source`'s rows written with `delimiter` (and decimal commas, as Excel de/fr writes them)."""
    rows = list(csv.reader(io.StringIO(source.read_text(encoding=encoding))))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    for number, cells in enumerate(rows):
        numeric = decimal_comma and number > 0
        writer.writerow(
            [c.replace(".", ",") if numeric and c.replace(".", "").isdigit() else c for c in cells]
        )
    return out.getvalue()


def load_generic(source: Path, out: Path, *options: str, columns: list[str] = V1_COLUMNS) -> Result:
    return invoke(["load", "generic", str(source), str(out), *columns, *options, "--json"])


def replay_dry(source: Path, tmp_path: Path, *options: str) -> Result:
    rejects = str(tmp_path / "rejects.jsonl")
    return invoke(["replay", str(source), "--dry-run", "--json", "--rejects", rejects, *options])


def events(path: Path) -> list[tuple[Any, ...]]:
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    return [(d["event_id"], d["user_id"], d.get("item_id"), d["ts_ms"]) for d in docs]


CASES = [
    pytest.param(",", ".csv", False, id="comma"),
    pytest.param(";", ".csv", True, id="semicolon-decimal-comma"),
    pytest.param(";", ".csv", False, id="semicolon-decimal-point"),
    pytest.param("\t", ".csv", False, id="tab-in-csv"),
    pytest.param("\t", ".tsv", False, id="tsv"),
    pytest.param("\t", ".tab", False, id="tab-suffix"),
    pytest.param("|", ".csv", False, id="pipe"),
]


@pytest.mark.parametrize(("delimiter", "suffix", "decimal_comma"), CASES)
def test_f11_in_any_separator_loads_and_replays_as_the_comma_file_does(
    tmp_path: Path, delimiter: str, suffix: str, decimal_comma: bool
) -> None:
    source = tmp_path / f"f11{suffix}"
    source.write_text(rewrite(F11, delimiter, decimal_comma=decimal_comma), newline="")
    if decimal_comma:
        assert "1796006133034,0" in source.read_text()  # the case under test is in the file
    out = tmp_path / "out.jsonl"
    report = report_of(load_generic(source, out), "out")
    assert (report["written"], report["skipped"]) == (3, 0), report
    assert events(out) == EXPECTED_F11

    replayed = report_of(replay_dry(source, tmp_path), "source")
    assert (replayed["read"], replayed["rejected"], replayed["malformed"]) == (3, 0, 0), replayed
    # What replay would produce: the same normalised documents.
    settings = load_settings({})
    docs = [doc for _, _, doc in iter_source(SourceSpec(str(source)), settings) if isinstance(doc, dict)]
    assert [(d["event_id"], d["user_id"], d.get("item_id"), d["ts_ms"]) for d in docs] == EXPECTED_F11


@pytest.mark.parametrize(
    ("encoding", "write_as", "options"),
    [
        pytest.param("utf-8", "utf-8-sig", [], id="bom-semicolon"),
        pytest.param("cp1252", "cp1252", ["--encoding", "cp1252"], id="cp1252-semicolon"),
    ],
)
def test_semicolon_files_with_a_bom_or_in_cp1252(
    tmp_path: Path, encoding: str, write_as: str, options: list[str]
) -> None:
    # f10b as Excel de/fr writes it, with a query holding both other separators (so quoted).
    text = rewrite(F10B, ";", decimal_comma=True, encoding="cp1252").replace("mug", '"mug, large; blue"')
    text = text.replace('café crème "mug', '"café crème mug').replace('blue""', 'blue"')
    assert text.splitlines()[1] == 'cp-1;fake-user-cp;search;"café crème mug, large; blue";1796006129004'
    source = tmp_path / "f10b.csv"
    source.write_bytes(text.encode(write_as))
    out = tmp_path / "out.jsonl"
    no_item = [option for option in V1_COLUMNS if option not in ("--item-col", "item_id")]
    report = report_of(load_generic(source, out, *options, columns=no_item), "out")
    assert report["written"] == 1, report
    event = json.loads(out.read_text())
    assert (event["event_id"], event["query"]) == ("cp-1", "café crème mug, large; blue")
    replayed = report_of(replay_dry(source, tmp_path, *options), "source")
    assert (replayed["read"], replayed["rejected"]) == (1, 0), replayed


@pytest.mark.parametrize("name", ["tab", "TAB", "\\t", "\t"])
def test_the_option_takes_tab_by_name(tmp_path: Path, name: str) -> None:
    source = tmp_path / "f11.csv"
    source.write_text(rewrite(F11, "\t", decimal_comma=False))
    out = tmp_path / "out.jsonl"
    assert report_of(load_generic(source, out, "--delimiter", name), "out")["written"] == 3


@pytest.mark.parametrize("command", ["load", "replay"])
@pytest.mark.parametrize(
    ("suffix", "given", "fix"),
    [
        (".csv", [], None),  # detected: no error
        (".csv", ["--delimiter", ","], "--delimiter ';'"),
        (".csv", ["--delimiter", "|"], "--delimiter ';'"),
        (".tsv", [], "--delimiter ';'"),  # a .tsv that is not tab-separated
        (".tsv", ["--delimiter", ";"], None),  # the option overrides the suffix
    ],
)
def test_a_header_read_as_one_column_is_one_error_naming_the_option(
    tmp_path: Path, command: str, suffix: str, given: list[str], fix: str | None
) -> None:
    source = tmp_path / f"f11{suffix}"
    source.write_text(rewrite(F11, ";", decimal_comma=True))
    out = tmp_path / "out.jsonl"
    result = load_generic(source, out, *given) if command == "load" else replay_dry(source, tmp_path, *given)
    if fix is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1, result.output
    assert "the header reads as one column" in result.output
    assert fix in result.output
    assert "Traceback" not in result.output and "unknown field" not in result.output
    assert not out.exists()
    assert not (tmp_path / "rejects.jsonl").exists()  # no row was read, none rejected


@pytest.mark.parametrize("bad", [";;", "comma", '"', ""])
@pytest.mark.parametrize("command", ["load generic", "replay", "load segment"])
def test_a_bad_option_value_is_a_usage_error(tmp_path: Path, command: str, bad: str) -> None:
    source = tmp_path / "e.jsonl"
    source.write_text("{}\n")
    rejects = ["--dry-run", "--rejects", str(tmp_path / "rejects.jsonl")]  # never in the cwd
    out = [str(tmp_path / "out.jsonl")] if command.startswith("load") else rejects
    columns = V1_COLUMNS if command == "load generic" else []
    result = invoke([*command.split(), str(source), *out, *columns, "--delimiter", bad])
    assert result.exit_code == 2, result.output
    assert "--delimiter" in result.output and "one character" in result.output


def test_the_tracking_record_loaders_pass_the_option_to_the_reader(tmp_path: Path) -> None:
    # A flat Segment record in a ';' file: the option reaches the shared reader.
    source = tmp_path / "segment.csv"
    source.write_text(
        "type;event;userId;messageId;timestamp\ntrack;Products Searched;u1;m1;2026-11-30T10:00:00Z\n"
    )
    out = tmp_path / "out.jsonl"
    wrong = invoke(["load", "segment", str(source), str(out), "--delimiter", ","])
    assert wrong.exit_code == 1 and "--delimiter ';'" in wrong.output, wrong.output
    right = invoke(["load", "segment", str(source), str(out), "--json"])
    # Read into its columns, the record reaches the adapter, which wants a query for a search
    # (a flat CSV has no properties.query): nothing is written, so the command exits 1.
    assert right.exit_code == 1 and "no event written" in right.output, right.output
    report = json.loads(right.output[right.output.index('{"out') :].splitlines()[0])
    assert (report["skipped"], report["malformed"]) == (1, 0), report
    assert [reason.split(":")[0] for reason in report["invalid"]] == ["query"], report


def test_a_semicolon_file_reads_decimal_commas_only_in_number_fields(tmp_path: Path) -> None:
    source = tmp_path / "e.csv"
    source.write_text(
        "event_id;user_id;type;item_id;query;ts_ms\n"
        "e1;90001,0;search;;3,5;1796006133034,0\n"
        "e2;90001,0;view;12,5;;1796006133035,5\n"  # a time in ms with a fraction: floored
        "e3;90001,0;view;12,5;;1796006133,5\n"  # seconds read as ms: that row alone
    )
    out = tmp_path / "out.jsonl"
    report = report_of(load_generic(source, out), "out")
    assert (report["written"], report["skipped"]) == (2, 1)
    (reason,) = report["invalid"]
    assert reason.startswith("ts_ms: '1796006133.5' is not a whole number"), reason
    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert (first["user_id"], first["query"], first["ts_ms"]) == ("90001", "3,5", 1_796_006_133_034)
    assert (second["item_id"], second["ts_ms"]) == ("12,5", 1_796_006_133_035)
