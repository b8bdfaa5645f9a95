"""CSV files one bad row used to derail, through `replay --dry-run` (no Kafka) and `load generic`:
the other rows land, the bad one is rejected alone, and a file of which nothing lands exits 1
with its report still printed whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from stream.cli.main import main

HEADER = "event_id,user_id,type,query,ts_ms"
TS = 1_796_006_117_042
V1_COLUMNS = [
    "--user-col", "user_id", "--ts-col", "ts_ms", "--type-col", "type", "--query-col", "query",
    "--event-id-col", "event_id",
]  # fmt: skip


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, env={"PROFILESTREAM_LOG_LEVEL": "WARNING"})


def replay_dry(source: Path, tmp_path: Path, *options: str) -> Result:
    rejects = str(tmp_path / "rejects.jsonl")
    return invoke(["replay", str(source), "--dry-run", "--json", "--rejects", rejects, *options])


def load_generic(source: Path, out: Path, *options: str) -> Result:
    return invoke(["load", "generic", str(source), str(out), *V1_COLUMNS, *options, "--json"])


def report_of(result: Result, key: str) -> dict[str, Any]:
    # replay's progress bar shares the output: the report is the JSON object in it.
    text = result.output[result.output.index('{"' + key) :]
    return dict(json.loads(text.splitlines()[0]))


def rows(count: int) -> list[str]:
    return [f"r{i},u1,search,desk lamp {i},{TS + i}" for i in range(count)]


def stray_quote(variant: str) -> str:
    lines = rows(1000)
    if variant == "middle":
        lines[2] = f'r2,u1,search,"27 inch monitor,{TS}'
    elif variant == "last-column":
        lines[2] = f'r2,u1,search,27 inch monitor,"{TS}'
    else:  # closed by a later quoted cell
        lines[2] = f'r2,u1,search,"27 inch monitor,{TS}'
        lines[500] = f'r500,u1,search,"desk, lamp",{TS}'
    return "\n".join([HEADER, *lines]) + "\n"


@pytest.mark.parametrize("variant", ["middle", "last-column", "closed-later"])
def test_a_stray_quote_loses_only_its_own_row(tmp_path: Path, variant: str) -> None:
    source = tmp_path / "e.csv"
    source.write_text(stray_quote(variant))
    result = replay_dry(source, tmp_path)
    assert result.exit_code == 0, result.output
    report = report_of(result, "source")
    assert (report["read"], report["rejected"], report["malformed"]) == (999, 0, 1), report
    assert report["malformed_lines"][0].startswith('line 4: unbalanced quote: an opening "')

    out = tmp_path / "out.jsonl"
    result = load_generic(source, out)
    assert result.exit_code == 0, result.output
    loaded = report_of(result, "out")
    assert (loaded["written"], loaded["skipped"], loaded["malformed"]) == (999, 1, 1), loaded
    ids = [json.loads(line)["event_id"] for line in out.read_text().splitlines()]
    assert ids == [f"r{i}" for i in range(1000) if i != 2]


@pytest.mark.parametrize("option", [[], ["--delimiter", ";"], ["--delimiter", "auto"]])
def test_an_excel_sep_line_is_read_and_skipped(tmp_path: Path, option: list[str]) -> None:
    source = tmp_path / "e.csv"
    body = "\r\n".join([HEADER, *rows(3)]).replace(",", ";")
    source.write_bytes(b"\xef\xbb\xbfsep=;\r\n" + body.encode() + b"\r\n")
    report = report_of(replay_dry(source, tmp_path, *option), "source")
    assert (report["read"], report["rejected"], report["malformed"]) == (3, 0, 0), report
    loaded = report_of(load_generic(source, tmp_path / "out.jsonl", *option), "out")
    assert (loaded["written"], loaded["skipped"]) == (3, 0), loaded


def test_a_delimiter_against_the_sep_line_is_one_error_naming_both(tmp_path: Path) -> None:
    source = tmp_path / "e.csv"
    source.write_text("sep=;\n" + "\n".join([HEADER, *rows(3)]).replace(",", ";") + "\n")
    for result in (
        replay_dry(source, tmp_path, "--delimiter", ","),
        load_generic(source, tmp_path / "out.jsonl", "--delimiter", ","),
    ):
        assert result.exit_code == 1
        assert "declares the separator ';'" in result.output and "--delimiter ','" in result.output
        assert "Traceback" not in result.output


@pytest.mark.parametrize("length", [131_073, 600_000])
def test_a_query_past_the_csv_field_limit_is_cut_as_in_jsonl(tmp_path: Path, length: int) -> None:
    source = tmp_path / "e.csv"
    lines = rows(3)
    lines[1] = f"r1,u1,search,{'q' * length},{TS}"
    source.write_text("\n".join([HEADER, *lines]) + "\n")
    report = report_of(replay_dry(source, tmp_path), "source")
    assert (report["read"], report["rejected"], report["truncated"], report["malformed"]) == (3, 0, 1, 0)
    out = tmp_path / "out.jsonl"
    loaded = report_of(load_generic(source, out), "out")
    assert (loaded["written"], loaded["skipped"]) == (3, 0), loaded
    assert len(json.loads(out.read_text().splitlines()[1])["query"]) == 512


def test_a_long_cell_in_another_field_is_rejected_alone_naming_it(tmp_path: Path) -> None:
    source = tmp_path / "e.csv"
    lines = rows(3)
    lines[1] = f"r1,{'u' * 200_000},search,q,{TS}"
    lines[2] = f"r2,u1,search,{'x' * 1_100_000},{TS}"  # over the largest event read
    source.write_text("\n".join([HEADER, *lines]) + "\n")
    result = replay_dry(source, tmp_path)
    assert result.exit_code == 0, result.output
    report = report_of(result, "source")
    assert (report["read"], report["rejected"], report["malformed"]) == (2, 1, 1), report
    assert any(reason.startswith("user_id:") for reason in report["reasons"])
    assert report["malformed_lines"][0].startswith("line 4: over 1,048,576 characters")


@pytest.mark.parametrize(
    ("codec", "named"),
    [("utf-16-le", "utf-16-le"), ("utf-16-be", "utf-16-be"), ("utf-32", "utf-32")],
)
def test_wide_encodings_are_named_and_then_read(tmp_path: Path, codec: str, named: str) -> None:
    source = tmp_path / "e.csv"
    source.write_bytes(("\n".join([HEADER, *rows(3)]) + "\n").encode(codec))
    refused = replay_dry(source, tmp_path)
    assert refused.exit_code == 1 and f"--encoding {named}" in refused.output, refused.output
    assert "Traceback" not in refused.output
    report = report_of(replay_dry(source, tmp_path, "--encoding", named), "source")
    assert (report["read"], report["rejected"], report["malformed"]) == (3, 0, 0), report


BAD_ROWS = {
    "all-rejected": [f"r{i},u1,search,q,not-a-time" for i in range(3)],
    "all-malformed": [f"r{i},u1" for i in range(3)],
    "all-unmapped": [f"r{i},u1,remove_from_cart,,{TS}" for i in range(3)],
    "mixed": ["r0,u1", "r1,u1,search,q,not-a-time", f"r2,u1,remove_from_cart,,{TS}"],
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_nothing_landing_from_a_non_empty_file_exits_1_with_the_whole_report(
    tmp_path: Path, case: str
) -> None:
    source = tmp_path / "e.csv"
    source.write_text("\n".join([HEADER, *BAD_ROWS[case]]) + "\n")
    result = replay_dry(source, tmp_path)
    assert result.exit_code == 1, result.output
    report = report_of(result, "source")
    assert report["read"] + report["malformed"] == 3 and report["produced"] == 0
    assert "no event would be produced (dry run)" in result.output

    loaded_result = load_generic(source, tmp_path / "out.jsonl")
    assert loaded_result.exit_code == 1, loaded_result.output
    loaded = report_of(loaded_result, "out")
    assert (loaded["written"], loaded["skipped"]) == (0, 3)
    assert "no event written" in loaded_result.output

    text = invoke(["replay", str(source), "--dry-run", "--rejects", str(tmp_path / "r.jsonl")])
    assert text.exit_code == 1 and "0 produced" in text.output and "no event would be produced" in text.output


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param([HEADER], 0, id="header-only"),
        pytest.param([HEADER, *rows(2), "r9,u1"], 0, id="partial-success"),
        pytest.param([HEADER, "r9,u1", *rows(1)], 0, id="one-good-row-last"),
    ],
)
def test_an_empty_file_or_a_partial_success_exits_0(tmp_path: Path, body: list[str], code: int) -> None:
    source = tmp_path / "e.csv"
    source.write_text("\n".join(body) + "\n")
    assert replay_dry(source, tmp_path).exit_code == code
    assert load_generic(source, tmp_path / "out.jsonl").exit_code == code
