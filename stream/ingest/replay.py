"""Replaying v1 events from a file or a Kafka topic into a topic, validated, in per-user order.

``profilestream replay SOURCE`` where SOURCE is

- a file of v1 events: ``.jsonl``/``.ndjson`` (one JSON event per line), ``.csv`` (one column per
  v1 field; empty cells are absent, ``context`` holds JSON text) or ``.parquet`` (one column per
  field; ``context`` a JSON string or a struct);
- ``kafka://TOPIC``: the records from ``--from-offset N`` (per partition, default: the beginning) or
  from the time range ``--from-ts-ms``/``--to-ts-ms`` (Kafka record timestamps, via offsets_for_times),
  up to the end offsets captured at the start, so a replay of a live topic terminates.

Every event goes through the worker's validator. An invalid row is counted and written with its
position, field and reason to a rejects file (``--rejects``, JSON lines, default
``replay-rejects.jsonl``, created only when something is rejected); it never stops the replay.

Order: events are produced keyed by user_id, in source order, by an idempotent producer, so each
user's events keep their file (or partition) order; nothing is reordered. With ``--processes N``
users are split between N producer processes by a hash of user_id (a user never spans two), each
reading the whole source and producing its own users' events in source order. The processes are
spawned, so a script calling `replay` with ``processes > 1`` needs the usual
``if __name__ == "__main__":`` guard (the ``profilestream`` command has it).

Speed: ``--speed max`` (default) replays as fast as the producer goes; ``--speed 10`` keeps the
original gaps between events' ``ts_ms`` divided by 10. A JSON line that validates is forwarded as
it is, without re-encoding. ``--namespace NAME`` replays into that namespace's own topics
(see `stream.core.namespace`), never touching the default ones.

Sender: ``--sender aiokafka`` (default) builds whole record batches per partition and sends them
with aiokafka (`stream.kafka.bulk_sender`), about three times faster than ``--sender kafka-python``, which
sends event by event as the collector and SDK do. Both put a user's events in the partition of the
default partitioner, acks=all, idempotent. A paced replay (``--speed FACTOR``) always uses
kafka-python, whose linger sends each event soon after its time.

Files are read by the shared reader `stream.core.tabular`, with the same rules as ``load generic``:
a UTF-8 BOM is read away, ``--encoding`` decodes other text (undecodable bytes stop the replay
before anything is produced, naming the line), a CSV file's column separator is ``--delimiter`` or
detected (a ``;`` file's decimal commas read as points), malformed lines (not JSON; a truncated CSV row) are
skipped and counted, float-written integers (``17850.0``) are read as integers in every format,
``ts_ms`` may be ms/s/us/ns (``--ts-unit``) or date-time text, event types go through the type map
(unmapped ones skipped and counted per name) and a row without ``event_id`` gets one derived from
its content. A JSON line that these rules leave unchanged is forwarded as it is.

Receive times: a file's ``received_ms`` later than the replay's clock plus
RECEIVE_TIME_TOLERANCE_MS (60 s) is set to the clock's now (an event received in the future could
outlast every forget) and counted in the report (``clamped_received``, the first in
``clamped_received_first``); ``kafka://`` keeps the topic's, which its receivers stamped.

The ``profilestream replay`` command lives in `stream.cli.replay`.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO, cast

import click
from kafka.errors import KafkaError

from stream.core import json_numbers
from stream.core.errors import (
    InvalidEvent,
    ProfilestreamError,
    ServiceUnavailable,
    SourceError,
    UnmappedEventType,
)
from stream.core.events import (
    RECEIVE_TIME_TOLERANCE_MS,
    DecodedEvent,
    Event,
    EventLimits,
    EventType,
    decode_doc,
    decode_event_noted,
)
from stream.core.reserved import check_client_event
from stream.core.settings import Settings
from stream.core.tabular import (
    FORMATS_BY_SUFFIX,
    ReadTally,
    RowRules,
    check_encoding,
    csv_options,
    format_of,
    is_normal_v1,
    normalise_v1,
    read_jsonl_lines,
    read_rows,
)
from stream.ingest.receive_time import ReceiveClamps
from stream.kafka.bulk_sender import AiokafkaBatchSender, default_partition
from stream.kafka.codecs import codec_of_error, require_codecs
from stream.kafka.producer import ProducerTuning, RecordSender, kafka_producer, not_acknowledged
from stream.kafka.security import kafka_python_security
from stream.kafka.topics import ensure_topics, kafka_unreachable

log = logging.getLogger(__name__)

KAFKA_SCHEME = "kafka://"
FILE_FORMATS = FORMATS_BY_SUFFIX
# Replay favours throughput: big batches that fill while the previous request is in flight.
REPLAY_TUNING = ProducerTuning(
    client_id="profilestream-replay",
    linger_ms=20,
    batch_size_bytes=512 * 1024,
    max_block_ms=60_000,
    delivery_timeout_ms=120_000,
    bootstrap_timeout_ms=10_000,
)
_PROGRESS_EVERY = 2_000

# (position in the source, original JSON bytes or None, document) where the document is
# - None: a Kafka record, parsed by the replay loop;
# - with bytes: the line as `parse_line` parsed it (a dict, or UNPARSED); valid lines go out as they are;
# - without bytes: a normalised document (a table row, a JSON line the value rules changed), re-encoded;
# - an InvalidEvent: a row the value rules refused (UnmappedEventType: skipped and counted by type).
Item = tuple[object, bytes | None, object]
Sender = Literal["aiokafka", "kafka-python"]
SENDERS: tuple[Sender, ...] = ("aiokafka", "kafka-python")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where to read: a file path, or a topic with an offset or a time range."""

    location: str
    from_offset: int | None = None
    from_ts_ms: int | None = None
    to_ts_ms: int | None = None
    # Files only: the text encoding, the value rules (time unit, event-type map) and a CSV file's
    # column separator (None: detected).
    encoding: str = "utf-8"
    rules: RowRules = field(default_factory=RowRules)
    delimiter: str | None = None
    columns: tuple[str, ...] | None = None  # a headerless CSV file's column names (--columns)

    @property
    def topic(self) -> str | None:
        return self.location[len(KAFKA_SCHEME) :] if self.location.startswith(KAFKA_SCHEME) else None


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    speed: float | None = None  # None: as fast as possible
    max_gap_s: float | None = None  # paced: the longest wait between two events (None: any)
    dry_run: bool = False
    processes: int = 1
    rejects_path: Path = Path("replay-rejects.jsonl")
    progress: bool = True
    sender: Sender = "aiokafka"  # a paced replay (speed set) always sends with kafka-python


@dataclass(frozen=True, slots=True)
class Reject:
    position: str
    field: str
    reason: str
    raw: str

    def to_json(self) -> str:
        return json.dumps(
            {"position": self.position, "field": self.field, "reason": self.reason, "raw": self.raw},
            ensure_ascii=False,
        )


@dataclass(frozen=True, slots=True)
class ReplayReport:
    source: str
    topic: str | None  # None for a dry run
    read: int
    produced: int
    rejected: int
    elapsed_s: float
    rejects_path: Path | None = None
    truncated: int = 0  # events produced with their over-long query cut to MAX_QUERY_CHARS
    reasons: dict[str, int] = field(default_factory=dict)  # "field: reason" -> rejects, most common first
    unmapped_types: dict[str, int] = field(default_factory=dict)  # type name in the file -> rows skipped
    malformed: int = 0  # lines the file reader skipped (not JSON, a truncated CSV row...)
    malformed_lines: list[str] = field(default_factory=list)  # the first few, "line N: reason"
    # Whole-file doubts the reader read on with (a header that looks like data, backslash escapes).
    warnings: list[str] = field(default_factory=list)
    # File events whose received_ms lay past the replay's clock (plus the tolerance): set to it.
    clamped_received: int = 0
    clamped_received_first: dict[str, object] | None = None  # the first, as `ClampedReceive.to_dict`
    # File forgets without received_ms, given the replay's clock as theirs (see `_client_event`).
    forgets_stamped: int = 0

    @property
    def events_per_s(self) -> float:
        return self.read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "topic": self.topic,
            "read": self.read,
            "produced": self.produced,
            "rejected": self.rejected,
            "truncated": self.truncated,
            "forgets_stamped": self.forgets_stamped,
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_s": round(self.events_per_s),
            "rejects_path": str(self.rejects_path) if self.rejects_path else None,
            "reasons": self.reasons,
            "unmapped_types": self.unmapped_types,
            "malformed": self.malformed,
            "malformed_lines": self.malformed_lines,
            "warnings": self.warnings,
            "clamped_received": self.clamped_received,
            "clamped_received_first": self.clamped_received_first,
        }


def parse_speed(text: str) -> float | None:
    """``max`` -> None (no pacing), else a positive factor dividing the original gaps."""
    if text.strip().lower() == "max":
        return None
    try:
        factor = float(text)
    except ValueError:
        factor = 0.0
    if not factor > 0 or factor == float("inf"):
        raise click.BadParameter(f"{text!r}: use 'max' or a positive factor such as 1, 10 or 0.5")
    return factor


# A wait this long for one event is worth a line: a paced replay otherwise looks hung.
LONG_WAIT_S = 60.0


class Pacer:
    """Keeps the original gaps between event times, divided by `speed`, against the wall clock.

    Events whose time goes backwards (other users, clock skew) are sent at once; the schedule is
    anchored on the first event and never drifts from the wall clock. A jump longer than
    `max_gap_s` once divided by `speed` (a gap of hours, or one outlier time a year later) is cut
    to `max_gap_s` (a jump back, after such an outlier, to nothing) and the schedule restarts there,
    so the gaps after it keep their length (`capped_gaps` counts the cuts); a wait over LONG_WAIT_S
    is logged, naming the option, so a replay waiting hours says so.
    """

    def __init__(
        self,
        speed: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        *,
        max_gap_s: float | None = None,
    ) -> None:
        self._speed = speed
        self._clock = clock
        self._sleep = sleep
        self._max_gap_s = max_gap_s
        self._origin: tuple[int, float] | None = None
        self._last_due = 0.0
        self.capped_gaps = 0

    def delay_s(self, ts_ms: int) -> float:
        if self._origin is None:
            self._origin = (ts_ms, self._clock())
            self._last_due = self._origin[1]
            return 0.0
        first_ts_ms, started = self._origin
        due = started + (ts_ms - first_ts_ms) / 1000.0 / self._speed
        if self._max_gap_s is not None and abs(due - self._last_due) > self._max_gap_s:
            # A jump either way (a real gap, or one outlier time and the jump back after it): the
            # schedule restarts at this event, so the gaps after it keep their length.
            due = self._last_due + (self._max_gap_s if due > self._last_due else 0.0)
            self._origin = (ts_ms, due)
            self.capped_gaps += 1
        self._last_due = max(self._last_due, due)
        return max(due - self._clock(), 0.0)

    def wait(self, ts_ms: int) -> None:
        delay = self.delay_s(ts_ms)
        if delay > LONG_WAIT_S:
            log.warning(
                "replay: waiting %.0f s for the next event (ts_ms %d) at --speed %g; "
                "--max-gap-s S cuts each gap between events to at most S seconds",
                delay,
                ts_ms,
                self._speed,
            )
        if delay > 0:
            self._sleep(delay)


# --- sources --------------------------------------------------------------------------------


def file_format(path: Path) -> str:
    return format_of(path)


def iter_source(spec: SourceSpec, settings: Settings, tally: ReadTally | None = None) -> Iterator[Item]:
    """The items of `spec`; a file's malformed lines are counted in `tally` and skipped."""
    topic = spec.topic
    if topic is not None:
        return iter_kafka(settings, topic, spec)
    path = Path(spec.location)
    if not path.is_file():
        raise SourceError(f"{path}: no such file; give a .jsonl, .csv or .parquet file or kafka://TOPIC")
    counts = tally if tally is not None else ReadTally()
    if file_format(path) == "jsonl":
        if spec.columns is not None:
            # What read_rows says for the other formats that name their own fields.
            raise SourceError(
                f"{path}: --columns names the columns of a CSV file without a header row; a jsonl "
                "file names its own fields: leave --columns out"
            )
        return iter_jsonl(path, spec, EventLimits.from_settings(settings), counts)
    return iter_table(path, spec, counts)


def iter_jsonl(path: Path, spec: SourceSpec, limits: EventLimits, tally: ReadTally) -> Iterator[Item]:
    """A JSONL file's lines: valid v1 lines as they are, others through the value rules.

    A line that is not a JSON object is malformed: counted in `tally` and skipped. A line too big
    to parse here is left to the validator, which rejects it with its size.
    """
    for number, raw in read_jsonl_lines(path, spec.encoding):
        tally.rows += 1
        parsed = parse_line(raw, limits)
        if parsed is UNPARSED:
            problem = _json_problem(raw)
            if problem is not None:
                tally.note_malformed(number, problem)
                continue
            yield number, raw, parsed
        elif not isinstance(parsed, dict):
            tally.note_malformed(number, f"a JSON {type(parsed).__name__}, not an object")
        elif not is_normal_v1(parsed, spec.rules):
            try:
                yield number, None, normalise_v1(parsed, spec.rules, empty_is_absent=False)
            except InvalidEvent as exc:
                yield number, raw, RowReject(exc, None)
        else:
            yield number, raw, parsed


def _json_problem(raw: bytes) -> str | None:
    """Why `raw` is not JSON at all (a malformed line), or None when it parses."""
    if len(raw) > 1_000_000:
        return None  # too big to parse twice; the validator rejects it by its size
    try:
        json_numbers.loads(raw)
    except RecursionError:
        return "JSON nested too deeply"
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno}; a truncated line?)"
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    return None


def iter_table(path: Path, spec: SourceSpec, tally: ReadTally) -> Iterator[Item]:
    """A CSV or Parquet file of v1 columns: each row through the value rules (empty cells absent)."""
    delimiter, rules = csv_options(path, spec.rules, encoding=spec.encoding, delimiter=spec.delimiter)
    for row in read_rows(
        path, encoding=spec.encoding, tally=tally, delimiter=delimiter, columns=spec.columns
    ):
        try:
            doc: object = normalise_v1(row.values, rules, empty_is_absent=True)
        except InvalidEvent as exc:
            doc = RowReject(exc, row.values)
        yield row.number, None, doc


@dataclass(frozen=True, slots=True)
class RowReject:
    """A file row the value rules refused, with the row as read (for the rejects file)."""

    error: InvalidEvent
    row: object


def iter_kafka(settings: Settings, topic: str, spec: SourceSpec) -> Iterator[Item]:
    """The records of `topic` in the chosen range; each partition in order, partitions interleaved."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import UnsupportedCodecError

    # A compressed batch kafka-python cannot decompress fails the read: name the package first.
    require_codecs("kafka-python")
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_servers,
            group_id=None,
            enable_auto_commit=False,
            client_id="profilestream-replay-reader",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            # Records of aborted transactions never happened; the worker does not read them either.
            isolation_level="read_committed",
            **kafka_python_security(settings),
        )
    except KafkaError as exc:
        raise kafka_unreachable(settings, exc) from exc
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise SourceError(f"kafka://{topic}: no such topic on {settings.kafka_bootstrap_servers}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        start, stop = _offset_range(consumer, tps, spec)
        for tp in tps:
            consumer.seek(tp, start[tp])
        remaining = {tp for tp in tps if start[tp] < stop[tp]}
        idle_polls = 0
        while remaining:
            batches = consumer.poll(timeout_ms=1000, max_records=5000)
            idle_polls = 0 if batches else idle_polls + 1
            if idle_polls > 60:
                raise SourceError(f"kafka://{topic}: no records for 60 s before the end offsets {stop}")
            for tp, records in batches.items():
                for record in records:
                    if record.offset < stop[tp]:
                        yield f"{tp.topic}/{tp.partition}@{record.offset}", record.value or b"", None
            for tp in list(remaining):
                if consumer.position(tp) >= stop[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
    except UnsupportedCodecError as exc:
        codec = codec_of_error(str(exc)) or "a"
        raise SourceError(
            f"kafka://{topic}: a record batch is {codec}-compressed and kafka-python cannot "
            f"decompress it ({exc}); install the project's dependencies (`deploy/local/install`, or "
            "`pip install -e .`: python-snappy, lz4 and zstandard)"
        ) from exc
    except KafkaError as exc:
        raise kafka_unreachable(settings, exc) from exc
    finally:
        consumer.close()


def _offset_range(consumer: Any, tps: list[Any], spec: SourceSpec) -> tuple[dict[Any, int], dict[Any, int]]:
    begin = consumer.beginning_offsets(tps)
    end = consumer.end_offsets(tps)

    def at_time(ts_ms: int) -> dict[Any, int]:
        found = consumer.offsets_for_times(dict.fromkeys(tps, ts_ms))
        return {tp: found[tp].offset if found.get(tp) is not None else end[tp] for tp in tps}

    if spec.from_ts_ms is not None:
        start = at_time(spec.from_ts_ms)
    else:
        start = {tp: max(begin[tp], min(spec.from_offset or 0, end[tp])) for tp in tps}
    stop = at_time(spec.to_ts_ms + 1) if spec.to_ts_ms is not None else dict(end)
    return start, stop


# --- validation and producing ----------------------------------------------------------------


def shard_of(user_id: str, shards: int) -> int:
    return zlib.crc32(user_id.encode()) % shards if shards > 1 else 0


def _user_of(raw: bytes | None, doc: object) -> str | None:
    """The user of an item without validating it (for sharding); None when there is none.

    `doc` is the item's document, or UNPARSED for a line that `parse_line` left alone; such a line
    may still be valid (a BOM, NaN in a field the validator ignores...), so it is parsed as
    `decode_event` would parse it, keeping each user's events on one shard.
    """
    if raw is not None and doc is UNPARSED:
        try:
            doc = json_numbers.loads(raw)
        except (ValueError, RecursionError):
            return None
    user = doc.get("user_id") if isinstance(doc, dict) else None
    return user if isinstance(user, str) else None


@dataclass
class _Tally:
    read: int = 0
    produced: int = 0
    truncated: int = 0
    rejects: list[Reject] = field(default_factory=list)
    unmapped: Counter[str] = field(default_factory=Counter)
    received: ReceiveClamps = field(default_factory=ReceiveClamps)
    forgets_stamped: int = 0
    # Users with a forget received during this replay, and the last receive time stamped (ms).
    stamped_users: set[str] = field(default_factory=set)
    stamp_ms: int = 0


class EventSink(Protocol):
    """Where the replay loop puts validated events: a producer for one topic."""

    @property
    def partitions(self) -> list[int]: ...

    def add(self, partition: int, key: bytes, value: bytes) -> None:
        """Send one event (asynchronously); ServiceUnavailable once an earlier send failed."""

    def finish(self) -> None:
        """Wait until the broker acknowledged every event, then close; ServiceUnavailable if not."""

    def close(self) -> None:
        """Give up: close without waiting for acknowledgements."""


class KafkaPythonSink:
    """Event by event through kafka-python's ``send()`` (one future each), as the SDK sends."""

    def __init__(self, producer: RecordSender, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._failures: list[BaseException] = []
        self.partitions = _partitions(producer, topic)

    def add(self, partition: int, key: bytes, value: bytes) -> None:
        try:
            self._producer.send(self._topic, key=key, value=value, partition=partition).add_errback(
                self._failures.append
            )
        except KafkaError as exc:
            raise not_acknowledged(self._topic, exc) from exc

    def finish(self) -> None:
        try:
            self._producer.flush(timeout=REPLAY_TUNING.delivery_timeout_ms / 1000)
        except KafkaError as exc:
            raise not_acknowledged(self._topic, exc) from exc
        finally:
            self._producer.close(timeout=10)
        if self._failures:
            raise ServiceUnavailable(
                f"{len(self._failures)} events were not acknowledged on topic {self._topic!r} "
                f"(first: {self._failures[0]!r}); replaying again is safe for consumers that treat "
                "event_id as the identity"
            )

    def close(self) -> None:
        self._producer.close(timeout=1)


def open_sink(settings: Settings, sender: Sender, *, paced: bool) -> EventSink:
    """A connected sink for ``settings.events_topic``; ServiceUnavailable if Kafka is down."""
    topic = settings.events_topic
    if sender == "aiokafka" and not paced:
        return AiokafkaBatchSender(settings, topic)
    producer = kafka_producer(settings, REPLAY_TUNING)
    try:
        return KafkaPythonSink(producer, topic)
    except BaseException:
        producer.close(timeout=1)
        raise


def _replay_items(
    items: Iterator[Item],
    *,
    limits: EventLimits,
    sink: EventSink | None,
    pacer: Pacer | None,
    shard: tuple[int, int],
    on_progress: Callable[[int], object],
    from_client: bool = True,
) -> _Tally:
    """The hot loop: validate each item of this shard and send it; returns the counts.

    `from_client`: the items come from outside (a file), so what only the worker may say
    (`stream.core.reserved`) is refused, and a receive time past the replay's clock is set to it
    (`stream.ingest.receive_time`); a copy of the events topic carries the worker's records and
    its receivers' times."""
    tally = _Tally()
    now_ms = time.time_ns() // 1_000_000
    # Below this no receive time needs the clock read again (`ReceiveClamps.bound` reads it).
    latest_received_ms = now_ms + RECEIVE_TIME_TOLERANCE_MS
    index, shards = shard
    partition_of: dict[bytes, int] = {}
    partitions = sink.partitions if sink is not None else []
    add = sink.add if sink is not None else None
    unreported = 0
    for position, raw, doc in items:
        # Parsed once: for the shard and for validation (file lines come parsed by their reader).
        parsed = parse_line(raw, limits) if raw is not None and doc is None else doc
        if shards > 1:
            user = _user_of(raw, parsed)
            # Unparsable items have no user; shard 0 reports them.
            if (shard_of(user, shards) if user is not None else 0) != index:
                continue
        tally.read += 1
        unreported += 1
        if unreported >= _PROGRESS_EVERY:
            on_progress(unreported)
            unreported = 0
        try:
            event, value, truncated = _validate(raw, parsed, limits=limits, now_ms=now_ms)
            if from_client:
                event, value = _client_event(
                    event, value, tally, position, now_ms=now_ms, latest_received_ms=latest_received_ms
                )
        except UnmappedEventType as exc:
            tally.unmapped[exc.name] += 1
            continue
        except InvalidEvent as exc:
            if raw is not None:
                # A prefix: a line may be as long as the file (4 bytes per character at most).
                shown = raw[:8000].decode("utf-8", "replace")
            else:
                row = parsed.row if isinstance(parsed, RowReject) else parsed
                shown = json.dumps(row, default=str, ensure_ascii=False)
            tally.rejects.append(Reject(str(position), exc.field, exc.reason, shown[:2000]))
            continue
        tally.truncated += truncated
        if add is None:
            continue
        if pacer is not None:
            pacer.wait(event.ts_ms)
        key = event.user_id.encode()
        partition = partition_of.get(key)
        if partition is None:
            # The default partitioner's choice for the key, computed once per user.
            partition = partition_of[key] = default_partition(key, partitions)
        add(partition, key, value)
        tally.produced += 1
    on_progress(unreported)
    return tally


def _client_event(
    event: Event, value: bytes, tally: _Tally, position: object, *, now_ms: int, latest_received_ms: int
) -> tuple[Event, bytes]:
    """A file's `event` (and its record `value`) as the replay sends it: refused when it says what
    only the worker may (`check_client_event`), its receive time bounded by the replay's clock
    (`ReceiveClamps`), and a forget without one given the replay's `now_ms`: a forget removes what
    was received before it (`stream.core.window`), and without a receive time it would cut at its
    ts_ms (when the user asked, often days before the file is replayed), keeping what the
    collector received since."""
    check_client_event(event)
    if event.received_ms is not None and event.received_ms > latest_received_ms:
        event = tally.received.bound(event, position)
        return event, event.to_json()
    if event.received_ms is None and (event.type is EventType.FORGET or event.user_id in tally.stamped_users):
        # Once a user's forget is received now, the file's later events of that user are received
        # after it (one stamp per event, increasing in file order): with their historical ts_ms
        # as receive time they would all fall before the forget's cut and be dropped.
        tally.stamp_ms = max(tally.stamp_ms + 1, now_ms)
        if event.type is EventType.FORGET:
            tally.forgets_stamped += 1
            tally.stamped_users.add(event.user_id)
        event = replace(event, received_ms=tally.stamp_ms)
        return event, event.to_json()
    return event, value


def _validate(
    raw: bytes | None, parsed: object, *, limits: EventLimits, now_ms: int
) -> tuple[Event, bytes, bool]:
    """An item's event, the record to produce for it and whether its query was cut; raises
    InvalidEvent (an UnmappedEventType for a row of an unmapped type)."""
    if isinstance(parsed, RowReject):
        raise parsed.error
    if raw is None:
        decoded = decode_doc(parsed, limits=limits, now_ms=now_ms)
        return decoded.event, decoded.event.to_json(), decoded.query_truncated
    decoded = decode_parsed(raw, parsed, limits=limits, now_ms=now_ms)
    # A line the policy changed (its query cut), or over the byte limit as written, goes out
    # normalised, as the collector and the SDK send it; any other valid line as it is.
    unchanged = not decoded.query_truncated and len(raw) <= limits.max_bytes
    return decoded.event, raw if unchanged else decoded.event.to_json(), decoded.query_truncated


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every line: json.loads(raw, parse_constant=...) builds a decoder per call, and
# those are reference cycles that keep the garbage collector busy (half of the validation time).
# It parses numbers as `decode_event` does: an over-large one is left for the validator to name.
# A line whose JSON repeats a key is left to `decode_event`, which rejects it naming the key.
_LINE_DECODER = json_numbers.BoundedDecoder(_reject_constant, json_numbers.refuse_duplicate_keys)


UNPARSED = object()


def parse_line(raw: bytes, limits: EventLimits) -> object:
    """The JSON document of a line within the parse bound in UTF-8 plain JSON; else UNPARSED.

    Where this parses a line, `decode_event` parses the same document; every other line (over
    `limits.max_raw_bytes`, a BOM, another encoding, NaN, bad JSON) is left to `decode_event`.
    """
    if len(raw) > limits.max_raw_bytes:
        return UNPARSED
    try:
        return _LINE_DECODER.decode(raw.decode())
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return UNPARSED


def decode_parsed(raw: bytes, parsed: object, *, limits: EventLimits, now_ms: int) -> DecodedEvent:
    """What ``decode_event_noted(raw)`` returns or raises, given ``parsed = parse_line(raw)``.

    An unparsed line goes through `decode_event_noted` itself, so its rejects read the same.
    """
    if parsed is UNPARSED:
        return decode_event_noted(raw, limits=limits, now_ms=now_ms)
    return decode_doc(parsed, limits=limits, now_ms=now_ms, source_bytes=len(raw))


def _partitions(producer: RecordSender, topic: str) -> list[int]:
    try:
        partitions = cast(Any, producer).partitions_for(topic)
    except KafkaError as exc:
        raise not_acknowledged(topic, exc) from exc
    if not partitions:
        raise SourceError(f"topic {topic!r} does not exist; create it with `profilestream topics`")
    return sorted(partitions)


@dataclass(frozen=True, slots=True)
class _ShardJob:
    settings: Settings
    spec: SourceSpec
    shard: tuple[int, int]
    dry_run: bool
    sender: Sender


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one producer process did (picklable): its counts and the file reader's."""

    read: int
    produced: int
    rejects: list[Reject]
    unmapped: dict[str, int]
    reader: ReadTally
    truncated: int = 0
    received: ReceiveClamps = field(default_factory=ReceiveClamps)
    forgets_stamped: int = 0

    @classmethod
    def of(cls, tally: _Tally, reader: ReadTally) -> _Outcome:
        return cls(
            tally.read,
            tally.produced,
            tally.rejects,
            dict(tally.unmapped),
            reader,
            tally.truncated,
            tally.received,
            tally.forgets_stamped,
        )


def _run_shard(job: _ShardJob, counter: Any = None) -> _Outcome:
    """One producer process: the outcome of its shard. Top-level so it can be pickled."""

    def progress(n: int) -> None:
        if counter is not None:
            with counter.get_lock():
                counter.value += n

    sink = None if job.dry_run else open_sink(job.settings, job.sender, paced=False)
    reader = ReadTally()
    tally = _replay_into(
        sink,
        iter_source(job.spec, job.settings, reader),
        settings=job.settings,
        pacer=None,
        shard=job.shard,
        on_progress=progress,
        from_client=job.spec.topic is None,
    )
    return _Outcome.of(tally, reader)


def _replay_into(
    sink: EventSink | None,
    items: Iterator[Item],
    *,
    settings: Settings,
    pacer: Pacer | None,
    shard: tuple[int, int],
    on_progress: Callable[[int], object],
    from_client: bool = True,
) -> _Tally:
    """The replay loop, then the wait for acknowledgements; the sink is closed either way."""
    try:
        tally = _replay_items(
            items,
            limits=EventLimits.from_settings(settings),
            sink=sink,
            pacer=pacer,
            shard=shard,
            on_progress=on_progress,
            from_client=from_client,
        )
    except BaseException:
        if sink is not None:
            sink.close()
        raise
    if sink is not None:
        sink.finish()
    return tally


def replay(settings: Settings, spec: SourceSpec, options: ReplayOptions) -> ReplayReport:
    """Replay `spec` into ``settings.events_topic`` (created if missing) and report the counts."""
    from tqdm import tqdm  # type: ignore[import-untyped]

    if options.speed is not None and options.processes > 1:
        raise ProfilestreamError("--speed FACTOR keeps one global timeline: use it with --processes 1")
    if spec.topic is None:
        # Fail before any topic is created when the file is missing or of an unknown kind.
        path = Path(spec.location)
        if not path.is_file():
            raise SourceError(f"{path}: no such file; give a .jsonl, .csv or .parquet file or kafka://TOPIC")
        file_format(path)
        check_encoding(spec.encoding)
    if spec.topic == settings.events_topic and not options.dry_run:
        raise SourceError(f"kafka://{spec.topic} is also the target; give another target with --to")
    if not options.dry_run:
        ensure_topics(settings)
    topic = settings.events_topic
    started = time.perf_counter()
    with tqdm(desc="replay", unit=" events", disable=not options.progress, mininterval=0.5) as bar:
        if options.processes == 1:
            outcomes = [_replay_single(settings, spec, options, bar.update)]
        else:
            outcomes = _replay_sharded(settings, spec, options, bar)
    elapsed_s = time.perf_counter() - started
    rejects = [reject for outcome in outcomes for reject in outcome.rejects]
    unmapped: Counter[str] = Counter()
    for outcome in outcomes:
        unmapped.update(outcome.unmapped)
    reasons = Counter(f"{reject.field}: {reject.reason}"[:200] for reject in rejects)
    # Every shard reads the whole file: its malformed lines are those of shard 0.
    reader = outcomes[0].reader
    clamped = ReceiveClamps()
    for outcome in outcomes:
        clamped.merge(outcome.received)
    rejects_path = _write_rejects(rejects, options.rejects_path)
    report = ReplayReport(
        source=spec.location,
        topic=None if options.dry_run else topic,
        read=sum(outcome.read for outcome in outcomes),
        produced=sum(outcome.produced for outcome in outcomes),
        rejected=len(rejects),
        elapsed_s=elapsed_s,
        rejects_path=rejects_path,
        truncated=sum(outcome.truncated for outcome in outcomes),
        forgets_stamped=sum(outcome.forgets_stamped for outcome in outcomes),
        reasons=dict(reasons.most_common(10)),
        unmapped_types=dict(unmapped.most_common()),
        malformed=reader.malformed,
        malformed_lines=list(reader.first_malformed),
        warnings=list(reader.warnings),
        clamped_received=clamped.count,
        clamped_received_first=clamped.first.to_dict() if clamped.first is not None else None,
    )
    clamped.log_summary("replay")
    log.info(
        "replayed %s: %d read, %d produced to %s (%d with an over-long query cut), %d rejected, "
        "%d of unmapped types, %d malformed lines, %.0f events/s",
        spec.location,
        report.read,
        report.produced,
        report.topic,
        report.truncated,
        len(rejects),
        sum(unmapped.values()),
        reader.malformed,
        report.events_per_s,
    )
    return report


def _replay_single(
    settings: Settings, spec: SourceSpec, options: ReplayOptions, on_progress: Callable[[int], object]
) -> _Outcome:
    paced = options.speed is not None
    sink = None if options.dry_run else open_sink(settings, options.sender, paced=paced)
    pacer = Pacer(options.speed, max_gap_s=options.max_gap_s) if options.speed is not None else None
    reader = ReadTally()
    tally = _replay_into(
        sink,
        iter_source(spec, settings, reader),
        settings=settings,
        pacer=pacer,
        shard=(0, 1),
        on_progress=on_progress,
        from_client=spec.topic is None,
    )
    return _Outcome.of(tally, reader)


def _replay_sharded(settings: Settings, spec: SourceSpec, options: ReplayOptions, bar: Any) -> list[_Outcome]:
    # spawn: the parent may hold threads (tqdm's monitor, kafka clients) that fork would copy half-alive.
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    jobs = [
        _ShardJob(settings, spec, (index, options.processes), options.dry_run, options.sender)
        for index in range(options.processes)
    ]
    with context.Pool(options.processes, initializer=_init_worker, initargs=(counter,)) as pool:
        pending = pool.map_async(_run_shard_with_counter, jobs)
        shown = 0
        while not pending.ready():
            pending.wait(0.5)
            current = counter.value
            bar.update(current - shown)
            shown = current
        results: list[_Outcome] = pending.get()
        bar.update(counter.value - shown)
    return results


_worker_counter: Any = None


def _init_worker(counter: Any) -> None:
    global _worker_counter  # noqa: PLW0603 - multiprocessing hands shared values over only this way
    _worker_counter = counter


def _run_shard_with_counter(job: _ShardJob) -> _Outcome:
    return _run_shard(job, _worker_counter)


def _write_rejects(rejects: list[Reject], path: Path) -> Path | None:
    if not rejects:
        return None
    with open(path, "w", encoding="utf-8") as out:
        _write_lines(out, (reject.to_json() for reject in rejects))
    log.warning("%d invalid events written to %s", len(rejects), path)
    return path


def _write_lines(out: TextIO, lines: Iterator[str]) -> None:
    for line in lines:
        out.write(line)
        out.write("\n")


def target_settings(settings: Settings, namespace: str | None, to_topic: str | None) -> Settings:
    """The settings a replay writes with: a namespace's copy, and/or another target topic."""
    from pydantic import ValidationError

    from stream.core.errors import ConfigError
    from stream.core.namespace import namespaced

    if namespace is not None and to_topic is not None:
        raise ConfigError("--namespace chooses the target topic itself; drop --to or --namespace")
    if namespace is not None:
        return namespaced(settings, namespace)
    if to_topic is not None:
        try:
            return Settings.model_validate({**settings.model_dump(), "events_topic": to_topic})
        except ValidationError as exc:
            raise ConfigError(
                f"--to {to_topic!r}: not a valid topic name ({exc.errors()[0]['msg']})"
            ) from exc
    return settings
