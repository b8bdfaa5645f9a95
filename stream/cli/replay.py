"""``profilestream replay``: v1 events from a file or a Kafka topic into a topic.

The replaying itself is `stream.ingest.replay`; this module holds only the command and its options
(the file options are shared with ``profilestream load``, see `stream.cli.load.file_options`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import click

from stream.cli.load import checked_columns, checked_delimiter, checked_encoding, file_options, row_rules
from stream.core.errors import ProfilestreamError
from stream.core.events import MAX_QUERY_CHARS
from stream.core.settings import Settings
from stream.ingest.replay import (
    SENDERS,
    ReplayOptions,
    ReplayReport,
    Sender,
    SourceSpec,
    parse_speed,
    replay,
    target_settings,
)


@click.command("replay")
@click.argument("source")
@click.option("--to", "to_topic", help="Target topic (default: the events topic).")
@click.option("--namespace", help="Replay into the separate topics of this namespace (a shadow run).")
@click.option("--speed", default="max", show_default=True, help="'max', or a factor dividing original gaps.")
@click.option(
    "--max-gap-s",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="With --speed FACTOR: cut each wait between two events to at most this many seconds "
    "(an outlier time a year later would otherwise hold the replay for hours). Default: no cut.",
)
@click.option(
    "--from-offset", type=click.IntRange(0), help="kafka:// source: start at this offset per partition."
)
@click.option("--from-ts-ms", type=click.IntRange(0), help="kafka:// source: first record time (ms).")
@click.option("--to-ts-ms", type=click.IntRange(0), help="kafka:// source: last record time (ms).")
@click.option("--dry-run", is_flag=True, help="Validate and count only; produce nothing.")
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("replay-rejects.jsonl"),
    show_default=True,
    help="Where invalid events are written (only when there are some).",
)
@click.option(
    "--processes", default=1, show_default=True, type=click.IntRange(1, 64), help="Producer processes."
)
@click.option(
    "--sender",
    type=click.Choice(SENDERS),
    default="aiokafka",
    show_default=True,
    help="aiokafka: whole batches (fast); kafka-python: event by event. --speed FACTOR uses kafka-python.",
)
@file_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def replay_command(
    ctx: click.Context,
    *,
    source: str,
    to_topic: str | None,
    namespace: str | None,
    speed: str,
    max_gap_s: float | None,
    from_offset: int | None,
    from_ts_ms: int | None,
    to_ts_ms: int | None,
    dry_run: bool,
    rejects_path: Path,
    processes: int,
    sender: Sender,
    encoding: str,
    delimiter: str,
    column_names: str | None,
    ts_unit: str,
    type_map_specs: tuple[str, ...],
    type_map_file: Path | None,
    na_markers: str,
    as_json: bool,
) -> None:
    """Replay v1 events from SOURCE (a .jsonl/.json/.csv/.dat/.parquet file or kafka://TOPIC) into a topic.

    The file options (--encoding, --delimiter, --columns, --ts-unit, --type-map, --type-map-file,
    --na-markers) apply to files only; --delimiter and --columns to CSV files (.csv, .tsv, .tab, .dat).
    """
    if from_offset is not None and from_ts_ms is not None:
        raise click.UsageError("give --from-offset or --from-ts-ms, not both")
    spec = SourceSpec(
        source,
        from_offset=from_offset,
        from_ts_ms=from_ts_ms,
        to_ts_ms=to_ts_ms,
        encoding=checked_encoding(encoding),
        rules=row_rules(ts_unit, type_map_specs, type_map_file, na_markers=na_markers),
        delimiter=checked_delimiter(delimiter),
        columns=checked_columns(column_names),
    )
    options = ReplayOptions(
        speed=parse_speed(speed),
        max_gap_s=max_gap_s,
        dry_run=dry_run,
        processes=processes,
        rejects_path=rejects_path,
        sender=sender,
    )
    try:
        settings = target_settings(cast(Settings, ctx.obj), namespace, to_topic)
        report = replay(settings, spec, options)
    except ProfilestreamError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        echo_replay_report(report)
    problem = nothing_replayed(report)
    if problem is not None:
        click.echo(f"profilestream: error: {problem}", err=True)
        ctx.exit(1)


def nothing_replayed(report: ReplayReport) -> str | None:
    """Why a replay that sent (or, dry, would send) no event from a source that was not empty
    failed, or None when some events went (partial success exits 0) or the source was empty."""
    unmapped = sum(report.unmapped_types.values())
    valid = report.read - report.rejected - unmapped
    sent = report.produced if report.topic is not None else valid
    if sent > 0 or report.read + report.malformed == 0:
        return None
    verb = "produced" if report.topic is not None else "would be produced (dry run)"
    return (
        f"no event {verb} from {report.source}: of {report.read + report.malformed} rows or lines, "
        f"{report.rejected} rejected, {unmapped} of unmapped types, {report.malformed} malformed; "
        "fix them as the report says and replay again"
    )


def echo_replay_report(report: ReplayReport) -> None:
    target = report.topic or "nowhere (dry run)"
    click.echo(
        f"{report.read} events read, {report.produced} produced to {target}, {report.rejected} rejected, "
        f"{report.events_per_s:,.0f} events/s"
    )
    for reason, count in report.reasons.items():
        click.echo(f"  {count} x invalid: {reason}")
    if report.truncated:
        click.echo(f"  {report.truncated} x query over {MAX_QUERY_CHARS} characters, cut to them (produced)")
    if report.forgets_stamped:
        click.echo(
            f"  {report.forgets_stamped} x forget without received_ms: received now (removes what was "
            "received before the replay, not only before its ts_ms)"
        )
    for name, count in report.unmapped_types.items():
        click.echo(f"  {count} x type {name!r} maps to no v1 type (map it with --type-map {name}=TYPE)")
    if report.malformed:
        click.echo(f"  {report.malformed} x malformed line, first: " + "; ".join(report.malformed_lines))
    if report.clamped_received_first is not None:
        first = report.clamped_received_first
        click.echo(
            f"  {report.clamped_received} x received_ms past the replay's clock, set to it (produced); "
            f"first: {first['position']} {first['reason']}"
        )
    for warning in report.warnings:
        click.echo(f"  warning: {warning}")
    if report.rejects_path is not None:
        click.echo(f"rejected events: {report.rejects_path}")
