"""Loaders: public data sets and your own tables turned into v1 event JSONL files for replay.

Each loader reads any path it is given (nothing here depends on where a data set lives), builds
documents, validates them with the worker's validator and writes the valid ones as JSON lines in
time order; rows that do not make a valid event are counted and skipped, never fatal.

amazon-office (``valid.csv`` then ``test.csv``; columns ``user_id``, ``history_item_id`` (a
Python-literal list, oldest first) and ``item_id`` (the target)). The files carry no times, but
rows are sorted by the target's time and every valid target precedes every test target, so:

- the row at global index r (valid rows first, then test rows) has its target at
  ``AMAZON_BASE_TS_MS + r * AMAZON_ROW_STEP_MS`` (one minute per row);
- a user's history items appear once, from the user's first row: item p of h items at
  ``target time - (h - p) * AMAZON_HISTORY_STEP_MS`` (one second apart, just before the target);
  in later rows the history is the user's earlier items again (it ends with the previous target),
  so only the new target is emitted;
- event_id ``amz-{user}-{position}-{item}`` where position counts the user's events from 0, so the
  same interaction gets the same id in every run (replays dedupe on it);
- every event is a ``purchase`` (a review follows a purchase), with ``context.split``.

ml-100k (``ml-100k.inter``: user, item, rating, Unix timestamp in seconds): real times,
``ts_ms = timestamp * 1000``; rating >= 4 -> ``purchase`` (a strong positive), lower ratings ->
``view`` (seen, not endorsed); ``context.rating`` keeps the rating; event_id ``ml-{user}-{item}``
(a user rates a movie once). Rows of equal time keep file order.

generic: a CSV, JSONL or Parquet file with your column names mapped onto v1 fields.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import click

from models.data.amazon import SPLITS as AMAZON_SPLITS
from models.data.amazon import load_amazon_office
from stream.core.errors import InvalidEvent, ProfilestreamError, SourceError
from stream.core.events import Event, EventLimits, event_from_dict
from stream.core.settings import Settings

log = logging.getLogger(__name__)

ML_PURCHASE_MIN_RATING = 4.0


@dataclass(frozen=True, slots=True)
class LoadReport:
    written: int
    skipped: int
    reasons: dict[str, int] = field(default_factory=dict)  # "field: reason" -> count, most common first


# --- ml-100k ----------------------------------------------------------------------------------


def ml100k_docs(lines: Iterable[str]) -> list[dict[str, Any]]:
    """v1 documents from ``ml-100k.inter`` lines (header included), sorted by time, stable."""
    docs: list[dict[str, Any]] = []
    for number, line in enumerate(lines):
        if number == 0 or not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 4:
            docs.append({"event_id": f"ml-line-{number}", "$raw": line})
            continue
        user, item, rating_text, ts_text = parts[:4]
        try:
            rating, ts_ms = float(rating_text), int(float(ts_text) * 1000)
        except ValueError:
            docs.append({"event_id": f"ml-line-{number}", "user_id": user, "ts_ms": ts_text})
            continue
        docs.append(
            {
                "event_id": f"ml-{user}-{item}",
                "user_id": user,
                "type": "purchase" if rating >= ML_PURCHASE_MIN_RATING else "view",
                "item_id": item,
                "ts_ms": ts_ms,
                "context": {"rating": rating},
            }
        )
    docs.sort(key=lambda doc: doc["ts_ms"] if isinstance(doc.get("ts_ms"), int) else 0)
    return docs


def load_ml100k(directory: Path) -> list[dict[str, Any]]:
    path = directory / "ml-100k.inter" if directory.is_dir() else directory
    if not path.is_file():
        raise SourceError(f"{path}: missing; give the ml-100k directory or its ml-100k.inter file")
    with open(path, encoding="utf-8", errors="replace") as lines:
        return ml100k_docs(lines)


# --- generic ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnMap:
    user_col: str
    ts_col: str
    item_col: str | None = None
    type_col: str | None = None
    default_type: str = "view"
    query_col: str | None = None
    session_col: str | None = None
    event_id_col: str | None = None
    ts_unit: str = "ms"  # "ms" or "s"
    id_prefix: str = "gen"


def generic_docs(rows: Iterable[dict[str, Any]], columns: ColumnMap) -> Iterator[dict[str, Any]]:
    """Rows of a user's table mapped onto v1 documents, in row order."""
    scale = 1000 if columns.ts_unit == "s" else 1
    for number, row in enumerate(rows):
        doc: dict[str, Any] = {
            "user_id": _text(row.get(columns.user_col)),
            "type": _text(row.get(columns.type_col)) if columns.type_col else columns.default_type,
            "ts_ms": _timestamp(row.get(columns.ts_col), scale),
        }
        for name, column in (
            ("item_id", columns.item_col),
            ("query", columns.query_col),
            ("session_id", columns.session_col),
        ):
            if column is not None:
                doc[name] = _text(row.get(column))
        given_id = _text(row.get(columns.event_id_col)) if columns.event_id_col else None
        doc["event_id"] = given_id or f"{columns.id_prefix}-{number}"
        yield {k: v for k, v in doc.items() if v is not None}


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _timestamp(value: Any, scale: int) -> Any:
    """Milliseconds from a number or numeric text; anything else is passed on for the validator."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(value * scale)
    return value


def read_table(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as text:
            yield from csv.DictReader(text)
    elif suffix in {".jsonl", ".ndjson"}:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError as exc:
                        raise SourceError(f"{path}:{number}: not a JSON line ({exc})") from exc
    elif suffix == ".parquet":
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        for batch in pq.ParquetFile(path).iter_batches(batch_size=16_384):
            yield from batch.to_pylist()
    else:
        raise SourceError(f"{path}: unknown suffix {path.suffix!r}; use .csv, .jsonl or .parquet")


# --- validation and output ---------------------------------------------------------------------


def validate_docs(docs: Iterable[Any], limits: EventLimits, now_ms: int) -> Iterator[Event | InvalidEvent]:
    for doc in docs:
        try:
            yield event_from_dict(doc, limits=limits, now_ms=now_ms)
        except InvalidEvent as exc:
            yield exc


def write_jsonl(docs: Iterable[Any], out: Path, limits: EventLimits | None = None) -> LoadReport:
    """Validate `docs` and write the valid ones to `out` as v1 JSON lines; count the rest."""
    now_ms = time.time_ns() // 1_000_000
    written = 0
    reasons: Counter[str] = Counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as sink:
        for outcome in validate_docs(docs, limits or EventLimits(), now_ms):
            if isinstance(outcome, InvalidEvent):
                reasons[f"{outcome.field}: {outcome.reason}"[:200]] += 1
                continue
            sink.write(outcome.to_json())
            sink.write(b"\n")
            written += 1
    report = LoadReport(written=written, skipped=sum(reasons.values()), reasons=dict(reasons.most_common(10)))
    log.info("wrote %d events to %s, skipped %d invalid rows", written, out, report.skipped)
    return report


# --- command line --------------------------------------------------------------------------------


def _echo_report(report: LoadReport, out: Path) -> None:
    click.echo(f"wrote {report.written} events to {out}; skipped {report.skipped} invalid rows")
    for reason, count in report.reasons.items():
        click.echo(f"  {count} x {reason}")


def _limits(ctx: click.Context) -> EventLimits:
    settings = cast(Settings | None, ctx.obj)
    return EventLimits.from_settings(settings) if settings is not None else EventLimits()


@click.group("load")
def load_command() -> None:
    """Turn a data set or your own table into a v1 event JSONL file (then `profilestream replay` it)."""


@load_command.command("amazon-office")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--split", "splits", multiple=True, type=click.Choice(AMAZON_SPLITS), help="Default: both.")
@click.pass_context
def load_amazon_command(ctx: click.Context, directory: Path, out: Path, splits: tuple[str, ...]) -> None:
    """amazon-office (valid.csv, test.csv) -> purchases with times derived from row order."""
    try:
        report = write_jsonl(load_amazon_office(directory, splits or AMAZON_SPLITS), out, _limits(ctx))
    except ProfilestreamError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_report(report, out)


@load_command.command("ml-100k")
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def load_ml100k_command(ctx: click.Context, directory: Path, out: Path) -> None:
    """MovieLens 100k (ml-100k.inter) -> views and purchases at their real times."""
    try:
        report = write_jsonl(load_ml100k(directory), out, _limits(ctx))
    except ProfilestreamError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_report(report, out)


@load_command.command("generic")
@click.argument("source", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--user-col", required=True)
@click.option("--ts-col", required=True)
@click.option("--ts-unit", type=click.Choice(["ms", "s"]), default="ms", show_default=True)
@click.option("--item-col")
@click.option("--type-col", help="Column holding the v1 type; without it every event gets --type.")
@click.option("--type", "default_type", default="view", show_default=True)
@click.option("--query-col")
@click.option("--session-col")
@click.option("--event-id-col", help="Without it, event ids are PREFIX-ROWNUMBER.")
@click.option("--id-prefix", default="gen", show_default=True)
@click.pass_context
def load_generic_command(
    ctx: click.Context,
    *,
    source: Path,
    out: Path,
    user_col: str,
    ts_col: str,
    ts_unit: str,
    item_col: str | None,
    type_col: str | None,
    default_type: str,
    query_col: str | None,
    session_col: str | None,
    event_id_col: str | None,
    id_prefix: str,
) -> None:
    """Your CSV/JSONL/Parquet file with a column mapping -> v1 events in row order."""
    columns = ColumnMap(
        user_col=user_col,
        ts_col=ts_col,
        item_col=item_col,
        type_col=type_col,
        default_type=default_type,
        query_col=query_col,
        session_col=session_col,
        event_id_col=event_id_col,
        ts_unit=ts_unit,
        id_prefix=id_prefix,
    )
    try:
        report = write_jsonl(generic_docs(read_table(source), columns), out, _limits(ctx))
    except ProfilestreamError as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_report(report, out)
