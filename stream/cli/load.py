"""``profilestream load``: data sets and your own tables turned into v1 event JSONL files.

The loading itself is `stream.ingest.loaders`; this module holds only the commands and their
options. The file options (``--encoding``, ``--delimiter``, ``--columns``, ``--ts-unit``, ``--type-map``,
``--type-map-file``, ``--na-markers``) are shared with ``profilestream replay`` (`stream.cli.replay`) through
`file_options`; the tracking-record commands take ``--encoding`` and ``--delimiter``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from models.data.amazon import SPLITS as AMAZON_SPLITS
from models.data.amazon import load_amazon_office
from stream.core.errors import ProfilestreamError
from stream.core.events import EventLimits
from stream.core.settings import Settings
from stream.core.tabular import (
    TS_UNITS,
    ColumnMap,
    ReadTally,
    RowRules,
    TsUnit,
    check_encoding,
    parse_columns,
    parse_delimiter,
    parse_type_map,
)
from stream.ingest.adapters import SOURCES
from stream.ingest.loaders import LoadReport, load_generic, load_ml100k, standard_docs, write_jsonl

F = TypeVar("F", bound=Callable[..., Any])
# --na-markers: pandas' default na_values mean no value, or (none) are text like any other.
NA_MARKER_CHOICES = ("default", "none")

_DELIMITER_OPTION = click.option(
    "--delimiter",
    default="auto",
    show_default=True,
    metavar="auto|tab|CHAR",
    help="Column separator of a CSV file: auto detects , ; tab or | from the first lines (.tsv and "
    ".tab files are tab-separated); or tab, or one character such as ';' or '|'. In a ';'-separated "
    "file a decimal comma in an id, ts_ms or v (90001,0) reads as a point. JSONL and Parquet ignore it.",
)


def file_options(func: F) -> F:
    """The options every file-reading command shares: encoding, delimiter, the columns of a
    headerless file, time unit, type map."""
    options = [
        click.option(
            "--encoding",
            default="utf-8",
            show_default=True,
            help="Text encoding of a CSV/JSONL file (e.g. cp1252 for Excel/Windows exports; utf-8,cp1252 "
            "for a file that mixes both); a UTF-8 "
            "byte-order mark is read away.",
        ),
        _DELIMITER_OPTION,
        click.option(
            "--columns",
            "column_names",
            metavar="NAME,NAME,...",
            help="The CSV file has no header row: these are its columns' names, in order, "
            "comma-separated (Taobao's UserBehavior.csv: --columns user_id,item_id,category_id,type,ts); "
            "its first line is then a row. CSV only (.csv, .tsv, .tab, .dat).",
        ),
        click.option(
            "--ts-unit",
            type=click.Choice(TS_UNITS),
            default="ms",
            show_default=True,
            help="Unit of numeric event times (ISO-8601 and 'YYYY-MM-DD HH:MM:SS[ UTC]' text is "
            "always read; no zone = UTC).",
        ),
        click.option(
            "--type-map",
            "type_map_specs",
            multiple=True,
            metavar="NAME=TYPE[,...]",
            help="Map the file's event names onto v1 types, over the defaults (addtocart, cart, "
            "transaction, pageview, ...); TYPE '-' skips the name. Repeatable.",
        ),
        click.option(
            "--type-map-file",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help='A JSON object {"NAME": "TYPE" or null} applied before --type-map.',
        ),
        click.option(
            "--na-markers",
            type=click.Choice(NA_MARKER_CHOICES),
            default="default",
            show_default=True,
            help="default: a CSV or Parquet cell reading NA, nan, None, NULL, N/A, \\N... (pandas' "
            "na_values) has no value (a user or time so marked rejects its row), except a search's "
            "query, read as written; none: such text is kept as text (pandas' keep_default_na=False), "
            "only empty cells are absent. JSON text is always text.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def row_rules(
    ts_unit: str,
    type_map_specs: tuple[str, ...],
    type_map_file: Path | None,
    *,
    na_markers: str = "default",
) -> RowRules:
    """The RowRules of the file options; click.BadParameter naming a bad option value."""
    try:
        file_text = type_map_file.read_text(encoding="utf-8-sig") if type_map_file is not None else None
        type_map = parse_type_map(type_map_specs, file_text=file_text)
    except (OSError, ProfilestreamError) as exc:
        raise click.BadParameter(str(exc), param_hint="--type-map/--type-map-file") from exc
    return RowRules(ts_unit=cast(TsUnit, ts_unit), type_map=type_map, na_markers=na_markers != "none")


def checked_encoding(encoding: str) -> str:
    try:
        check_encoding(encoding)
    except ProfilestreamError as exc:
        raise click.BadParameter(str(exc), param_hint="--encoding") from exc
    return encoding


def checked_delimiter(delimiter: str) -> str | None:
    """The ``--delimiter`` value as the separator to read with (None: detect); click.BadParameter
    naming the accepted values otherwise."""
    try:
        return parse_delimiter(delimiter)
    except ProfilestreamError as exc:
        raise click.BadParameter(str(exc), param_hint="--delimiter") from exc


def checked_columns(column_names: str | None) -> tuple[str, ...] | None:
    """The ``--columns`` value as column names (None: the file's header names them);
    click.BadParameter for an empty or repeated name."""
    if column_names is None:
        return None
    try:
        return parse_columns(column_names)
    except ProfilestreamError as exc:
        raise click.BadParameter(str(exc), param_hint="--columns") from exc


def echo_report(report: LoadReport, out: Path, as_json: bool) -> None:
    """Print the report (as JSON with `as_json`); exit 1 after it when rows were read but not one
    was written (some written is a partial success: exit 0)."""
    if as_json:
        click.echo(json.dumps({"out": str(out), **report.to_dict()}, ensure_ascii=False))
    else:
        click.echo(f"wrote {report.written} events to {out}; skipped {report.skipped} rows")
        for reason, count in report.reasons.items():
            click.echo(f"  {count} x invalid: {reason}")
        for name, count in report.unmapped_types.items():
            click.echo(f"  {count} x type {name!r} maps to no v1 type (map it with --type-map {name}=TYPE)")
        if report.malformed:
            click.echo(f"  {report.malformed} x malformed line, first: " + "; ".join(report.malformed_lines))
        if report.clamped_received_first is not None:
            first = report.clamped_received_first
            click.echo(
                f"  {report.clamped_received} x received_ms past the loader's clock, set to it (written); "
                f"first: {first['position']} {first['reason']}"
            )
        for warning in report.warnings:
            click.echo(f"  warning: {warning}")
    if report.written == 0 and report.skipped > 0:
        click.echo(
            f"profilestream: error: no event written to {out}: all {report.skipped} rows were skipped "
            f"({report.malformed} malformed, {sum(report.unmapped_types.values())} of unmapped types, "
            "the rest invalid); fix them as the report says and load again",
            err=True,
        )
        click.get_current_context().exit(1)


def _limits(ctx: click.Context) -> EventLimits:
    settings = cast(Settings | None, ctx.obj)
    return EventLimits.from_settings(settings) if settings is not None else EventLimits()


_JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")


@click.group("load")
def load_command() -> None:
    """Turn a data set or your own table into a v1 event JSONL file (then `profilestream replay` it)."""


@load_command.command("amazon-office")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--split", "splits", multiple=True, type=click.Choice(AMAZON_SPLITS), help="Default: both.")
@_JSON_OPTION
@click.pass_context
def load_amazon_command(
    ctx: click.Context, directory: Path, out: Path, splits: tuple[str, ...], as_json: bool
) -> None:
    """amazon-office (valid.csv, test.csv) -> purchases with times derived from row order."""
    try:
        report = write_jsonl(load_amazon_office(directory, splits or AMAZON_SPLITS), out, _limits(ctx))
    except ProfilestreamError as exc:
        raise click.ClickException(str(exc)) from exc
    echo_report(report, out, as_json)


@load_command.command("ml-100k")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@_JSON_OPTION
@click.pass_context
def load_ml100k_command(ctx: click.Context, directory: Path, out: Path, as_json: bool) -> None:
    """MovieLens 100k (ml-100k.inter) -> views and purchases at their real times."""
    try:
        report = write_jsonl(load_ml100k(directory), out, _limits(ctx))
    except ProfilestreamError as exc:
        raise click.ClickException(str(exc)) from exc
    echo_report(report, out, as_json)


@load_command.command("generic")
@click.argument("source", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--user-col", required=True)
@click.option("--ts-col", required=True)
@click.option("--item-col")
@click.option("--type-col", help="Column holding the event type; without it every event gets --type.")
@click.option("--type", "default_type", default="view", show_default=True)
@click.option("--query-col")
@click.option("--session-col")
@click.option(
    "--event-id-col",
    help="Without it, event ids are PREFIX-HASH, a hash of the row's content (duplicate rows dedupe).",
)
@click.option("--id-prefix", default="gen", show_default=True)
@file_options
@_JSON_OPTION
@click.pass_context
def load_generic_command(
    ctx: click.Context,
    *,
    source: Path,
    out: Path,
    user_col: str,
    ts_col: str,
    item_col: str | None,
    type_col: str | None,
    default_type: str,
    query_col: str | None,
    session_col: str | None,
    event_id_col: str | None,
    id_prefix: str,
    column_names: str | None,
    encoding: str,
    delimiter: str,
    ts_unit: str,
    type_map_specs: tuple[str, ...],
    type_map_file: Path | None,
    na_markers: str,
    as_json: bool,
) -> None:
    """Your CSV/JSONL/JSON/Parquet file (or .csv.gz, .jsonl.bz2, .json.xz, .csv.zst...) with a
    column mapping -> v1 events in row order.

    CSV and Parquet cells holding a missing-value marker (NA, nan, None, NULL, \\N, ...: pandas'
    list) have no value, except a search's query (--na-markers none: no marker). The report
    warns about a header that looks like data (pass --columns) and counts rows sharing their
    user's timestamp (their order in a window follows event ids).
    """
    columns = ColumnMap(
        user_col=user_col,
        ts_col=ts_col,
        item_col=item_col,
        type_col=type_col,
        default_type=default_type,
        query_col=query_col,
        session_col=session_col,
        event_id_col=event_id_col,
        id_prefix=id_prefix,
    )
    rules = row_rules(ts_unit, type_map_specs, type_map_file, na_markers=na_markers)
    encoding, separator = checked_encoding(encoding), checked_delimiter(delimiter)
    names = checked_columns(column_names)
    try:
        report = load_generic(
            source,
            out,
            columns,
            rules=rules,
            encoding=encoding,
            delimiter=separator,
            limits=_limits(ctx),
            names=names,
        )
    except ProfilestreamError as exc:
        raise click.ClickException(str(exc)) from exc
    echo_report(report, out, as_json)


def _standard_command(source: str) -> click.Command:
    @click.command(source)
    @click.argument(
        "source_path", metavar="SOURCE", type=click.Path(dir_okay=False, exists=True, path_type=Path)
    )
    @click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
    @click.option(
        "--encoding", default="utf-8", show_default=True, help="Text encoding of the JSON Lines file."
    )
    @_DELIMITER_OPTION
    @_JSON_OPTION
    @click.pass_context
    def command(
        ctx: click.Context, source_path: Path, out: Path, encoding: str, delimiter: str, as_json: bool
    ) -> None:
        encoding, separator = checked_encoding(encoding), checked_delimiter(delimiter)
        try:
            tally = ReadTally()
            docs = standard_docs(
                source_path,
                source,
                encoding=encoding,
                delimiter=separator,
                tally=tally,
                receive_ms=time.time_ns() // 1_000_000,
            )
            report = write_jsonl(docs, out, _limits(ctx), tally=tally)
        except ProfilestreamError as exc:
            raise click.ClickException(str(exc)) from exc
        echo_report(report, out, as_json)

    command.help = (
        f"A JSON Lines file of {source} records (one request body or message a line, as the collector's "
        f"{source} endpoint takes them) -> v1 events, mapped as stream/ingest/README.md documents."
    )
    return command


for _source in SOURCES:
    load_command.add_command(_standard_command(_source))
