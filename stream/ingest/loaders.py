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

generic: a CSV, JSONL or Parquet file with your column names mapped onto v1 fields, read by the
shared reader `stream.core.tabular` (BOM, ``--encoding``, the column separator given by
``--delimiter`` or detected, malformed lines skipped and counted, float-written integers and, in a
``;``-separated file, decimal-comma ones, times in ms/s/us or date-time text, the event-type map,
event ids derived from the row's content when the table has none). A headerless CSV file
(Taobao's ``UserBehavior.csv``, YOOCHOOSE's ``.dat``) is read with ``--columns`` naming its columns;
in CSV and Parquet, missing-value markers (``NA``, ``nan``, ``\\N``...) are no value, except in a
search's query (``--na-markers none``: kept as text), and in JSON text is text (null is no
value); ``.json`` is JSON lines or one array. A file may be compressed (``.csv.gz``, ``.bz2``,
``.xz``, ``.zst``).

Every loader's report counts the rows that share their user's timestamp with the user's previous
row (`SameTimeTally`): a window orders such events by event id, not by file order, so the count
comes with a warning to export finer times.

A ``received_ms`` a file gives (a sender export's ``receivedAt``) later than the loader's clock
plus RECEIVE_TIME_TOLERANCE_MS is set to the clock's now and counted (`stream.ingest.receive_time`):
an event received in the future could outlast every forget.

The ``profilestream load`` commands live in `stream.cli.load`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stream.core.errors import InvalidEvent, SourceError, UnmappedEventType
from stream.core.events import Event, EventLimits, event_from_dict
from stream.core.reserved import check_client_event
from stream.core.tabular import (
    ColumnMap,
    ReadTally,
    RowRules,
    csv_options,
    format_of,
    headerless_hint,
    read_rows,
    to_v1_doc,
)
from stream.ingest.adapters import adapt_file_record
from stream.ingest.receive_time import ReceiveClamps

__all__ = [
    "ColumnMap",
    "LoadReport",
    "RowRules",
    "SameTimeTally",
    "generic_docs",
    "load_generic",
    "load_ml100k",
    "ml100k_docs",
    "read_table",
    "standard_docs",
    "validate_docs",
    "write_jsonl",
]

log = logging.getLogger(__name__)

ML_PURCHASE_MIN_RATING = 4.0
# Users whose last event time `SameTimeTally` holds: a few MB, whatever the file's size.
SAME_TIME_USERS_TRACKED = 100_000


@dataclass(frozen=True, slots=True)
class LoadReport:
    written: int
    skipped: int  # every row not written: invalid + unmapped types + malformed lines
    reasons: dict[str, int] = field(default_factory=dict)  # "field: reason" -> count, most common first
    unmapped_types: dict[str, int] = field(default_factory=dict)  # type name in the file -> rows
    malformed: int = 0
    malformed_lines: list[str] = field(default_factory=list)  # the first few, "line N: reason"
    same_ts_rows: int = 0  # written events sharing their user's time with the user's previous one
    warnings: list[str] = field(default_factory=list)  # what was loaded but may not be what was meant
    # Events whose received_ms lay past the loader's clock (plus the tolerance): set to it.
    clamped_received: int = 0
    clamped_received_first: dict[str, object] | None = None  # the first, as `ClampedReceive.to_dict`

    def to_dict(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "skipped": self.skipped,
            "invalid": self.reasons,
            "unmapped_types": self.unmapped_types,
            "malformed": self.malformed,
            "malformed_lines": self.malformed_lines,
            "same_ts_rows": self.same_ts_rows,
            "warnings": self.warnings,
            "clamped_received": self.clamped_received,
            "clamped_received_first": self.clamped_received_first,
        }


class SameTimeTally:
    """Counts events that share their user's timestamp with that user's previous event.

    A profile window orders events of one time by event id (the window is a function of the event
    set), so a file whose times have second or date resolution loses its order there. Only each
    user's last time is kept, for the `max_users` users seen last (least recently seen forgotten),
    so memory is bounded on any file; `partial` says users were forgotten (the count is a lower
    bound). A tie with an earlier, not the previous, event of the user (an unsorted file) is not
    counted.
    """

    def __init__(self, max_users: int = SAME_TIME_USERS_TRACKED) -> None:
        self._last_ts_ms: OrderedDict[str, int] = OrderedDict()
        self._max_users = max_users
        self.count = 0
        self.partial = False

    def note(self, user_id: str, ts_ms: int) -> None:
        last = self._last_ts_ms.get(user_id)
        if last is not None:
            self._last_ts_ms.move_to_end(user_id)
            if last == ts_ms:
                self.count += 1
        self._last_ts_ms[user_id] = ts_ms
        if len(self._last_ts_ms) > self._max_users:
            self._last_ts_ms.popitem(last=False)
            self.partial = True

    def warning(self) -> str | None:
        """The report's warning, None when no event shares its user's time."""
        if not self.count:
            return None
        counted = f"at least {self.count:,}" if self.partial else f"{self.count:,}"
        return (
            f"{counted} rows share their user's timestamp with another row; their order in a window "
            "follows event ids, not the file: export times with finer resolution (or add the order "
            "as milliseconds)"
        )


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
        except (ValueError, OverflowError):  # OverflowError: a time past the float range (1e400)
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


def generic_docs(
    rows: Iterable[Mapping[str, Any]], columns: ColumnMap, rules: RowRules | None = None
) -> Iterator[dict[str, Any] | InvalidEvent]:
    """Rows of a user's table mapped onto v1 documents, in row order (see `stream.core.tabular`).

    A row whose values no rule can read comes out as its InvalidEvent (an UnmappedEventType for a
    type the map leaves out), for `write_jsonl` to count.
    """
    chosen = rules or RowRules()
    for row in rows:
        try:
            yield to_v1_doc(row, columns, chosen)
        except InvalidEvent as exc:
            yield exc


def standard_docs(
    path: Path,
    source: str,
    *,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    tally: ReadTally | None = None,
    receive_ms: int,
) -> Iterator[dict[str, Any] | InvalidEvent]:
    """v1 documents from a JSON Lines file of a tracking sender's records (`source`: segment, ga4 or
    snowplow; one request body or message a line, as `stream.ingest.adapters.adapt_file_record`
    reads them), in file order.

    A line that is not JSON is counted in `tally` as malformed; a record the adapter refuses comes
    out as its InvalidEvent, an unknown event name as an UnmappedEventType (both counted by
    `write_jsonl`, never fatal). `receive_ms` stands in for the receive time a record lacks.
    `delimiter` applies to a CSV file only (see `stream.core.tabular.read_rows`).
    """
    counted = tally if tally is not None else ReadTally()
    for row in read_rows(path, encoding=encoding, tally=counted, delimiter=delimiter):
        try:
            adapted = adapt_file_record(source, row.values, receive_ms)
        except InvalidEvent as exc:
            yield exc
            continue
        yield from adapted.docs
        for error in adapted.errors:
            yield InvalidEvent(error.field, error.reason)
        for name, count in adapted.ignored.items():
            for _ in range(count):
                yield UnmappedEventType(name)


def read_table(
    path: Path,
    *,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    tally: ReadTally | None = None,
    names: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows of a CSV, JSONL, JSON or Parquet file (the shared reader: BOM, encoding, a CSV
    file's `delimiter` (None: detected) and, for a headerless one, column `names`, malformed
    lines)."""
    for row in read_rows(path, encoding=encoding, tally=tally, delimiter=delimiter, columns=names):
        yield row.values


# --- validation and output ---------------------------------------------------------------------


def validate_docs(docs: Iterable[Any], limits: EventLimits, now_ms: int) -> Iterator[Event | InvalidEvent]:
    for doc in docs:
        if isinstance(doc, InvalidEvent):
            yield doc
            continue
        try:
            event = event_from_dict(doc, limits=limits, now_ms=now_ms)
            # A loaded file comes from outside: it may not say what only the worker says.
            check_client_event(event)
        except InvalidEvent as exc:
            yield exc
            continue
        yield event


def write_jsonl(
    docs: Iterable[Any],
    out: Path,
    limits: EventLimits | None = None,
    tally: ReadTally | None = None,
) -> LoadReport:
    """Validate `docs` and write the valid ones to `out` as v1 JSON lines; count the rest.

    The file appears whole or not at all: it is written beside `out` and renamed at the end, so a
    whole-file error (a wrong --encoding) leaves no half-written output. `tally` is the reader's
    count of malformed lines, for the report.
    """
    now_ms = time.time_ns() // 1_000_000
    written = 0
    clamps = ReceiveClamps()
    reasons: Counter[str] = Counter()
    unmapped: Counter[str] = Counter()
    same_time = SameTimeTally()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        with open(partial, "wb") as sink:
            for outcome in validate_docs(docs, limits or EventLimits(), now_ms):
                if isinstance(outcome, UnmappedEventType):
                    unmapped[outcome.name] += 1
                elif isinstance(outcome, InvalidEvent):
                    reasons[f"{outcome.field}: {outcome.reason}"[:200]] += 1
                else:
                    sink.write(clamps.bound(outcome, f"output line {written + 1}").to_json())
                    sink.write(b"\n")
                    written += 1
                    same_time.note(outcome.user_id, outcome.ts_ms)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    malformed = tally.malformed if tally is not None else 0
    warnings = list(tally.warnings) if tally is not None else []
    same_time_warning = same_time.warning()
    if same_time_warning is not None:
        warnings.append(same_time_warning)
    report = LoadReport(
        written=written,
        skipped=sum(reasons.values()) + sum(unmapped.values()) + malformed,
        reasons=dict(reasons.most_common(10)),
        unmapped_types=dict(unmapped.most_common()),
        malformed=malformed,
        malformed_lines=list(tally.first_malformed) if tally is not None else [],
        same_ts_rows=same_time.count,
        warnings=warnings,
        clamped_received=clamps.count,
        clamped_received_first=clamps.first.to_dict() if clamps.first is not None else None,
    )
    clamps.log_summary("loader")
    for warning in warnings:
        log.warning("%s", warning)
    log.info(
        "wrote %d events to %s; skipped %d invalid rows, %d of unmapped types, %d malformed lines",
        written,
        out,
        sum(reasons.values()),
        sum(unmapped.values()),
        malformed,
    )
    return report


def load_generic(
    source: Path,
    out: Path,
    columns: ColumnMap,
    *,
    rules: RowRules | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    limits: EventLimits | None = None,
    names: Sequence[str] | None = None,
) -> LoadReport:
    """`source` (CSV/JSONL/JSON/Parquet) mapped by `columns` and `rules` into the v1 JSONL file `out`.

    `delimiter`: a CSV file's column separator (None or ``auto``: detected); a ``;``-separated
    file has its decimal commas read (`stream.core.tabular.csv_options`). `names`: the columns of
    a CSV file without a header row (``--columns``). Raises SourceError for a whole-file problem
    (see `stream.core.tabular.read_rows`) and a mapped column the table lacks.
    """
    tally = ReadTally()
    delimiter, chosen = csv_options(source, rules or RowRules(), encoding=encoding, delimiter=delimiter)
    rows = read_table(source, encoding=encoding, delimiter=delimiter, tally=tally, names=names)
    if format_of(source) not in ("jsonl", "json"):  # JSON may leave out a key; a table has its columns
        rows = _with_columns(rows, columns, source)
    else:
        # JSON says "no value" with null: its text "NA" is text, as replay reads a JSON line.
        chosen = replace(chosen, na_markers=False)
    return write_jsonl(generic_docs(rows, columns, chosen), out, limits, tally)


def _with_columns(
    rows: Iterator[dict[str, Any]], columns: ColumnMap, source: Path
) -> Iterator[dict[str, Any]]:
    """`rows`, after checking on the first that every mapped column exists (a typo fails at once)."""
    for number, row in enumerate(rows):
        if number == 0:
            wanted = [
                (option, name)
                for option, name in (
                    ("--user-col", columns.user_col),
                    ("--ts-col", columns.ts_col),
                    ("--item-col", columns.item_col),
                    ("--type-col", columns.type_col),
                    ("--query-col", columns.query_col),
                    ("--session-col", columns.session_col),
                    ("--event-id-col", columns.event_id_col),
                )
                if name is not None and name not in row
            ]
            if wanted:
                option, name = wanted[0]
                known = ", ".join(repr(column) for column in list(row)[:30])
                hint = headerless_hint([str(column) for column in row])
                # Column options match exactly (a table may hold "id" and "ID"); say which one is meant.
                spelt = [str(column) for column in row if str(column).casefold() == name.casefold()]
                if spelt:
                    hint = f"the column is spelt {spelt[0]!r}: pass {option} {spelt[0]}"
                raise SourceError(
                    f"{source}: {option} {name!r} is not a column; the columns are {known}"
                    + (f"; {hint}" if hint is not None else "")
                )
        yield row
