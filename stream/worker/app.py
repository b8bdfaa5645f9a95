"""The Faust app: per-user windows in a changelogged table, re-encoded profiles, top-K to Redis.

Events are read in micro-batches: a batch is taken when it holds `batch_max_events`, or
`batch_max_wait_ms` after the previous one was taken once no more records wait
(`stream.worker.batching`). A batch first passes the worker's own position per partition
(`stream.worker.positions`): only records that run on without a gap from where the stored state
ends are processed, records below it were processed already, and a gap sends the consumer back to
read the missing records. Faust's commits are not trusted for this: its fetcher can drop records
around restarts and rebalances and commit past them.

For each admitted batch: invalid messages go to the dead-letter topic as a bounded copy (prefix,
size, sha256, reason: `stream.core.deadletter`), acknowledged by the broker before anything else
of the batch happens; valid events are applied to their user's window; every user whose window changed
is encoded once, ranked against the item index and written to Redis by a newer-only Lua script;
then the new windows, and after them each partition's new position, go to a Faust table backed by
a compacted changelog topic, so a restarted worker recovers both. A crash before they are stored
replays the batch against windows without it (recomputed, and the idempotent write makes that
harmless); a crash after skips the records the stored position already covers.

A batch that fails with an unexpected error is processed again in halves down to single records,
and a record that fails alone `poison_max_attempts` times is quarantined to the dead-letter topic
(`stream.worker.quarantine`); only a peer's failure (Kafka, Redis) still ends the process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, cast

import faust
from faust.types import EventT, TableT, TopicT
from prometheus_client import generate_latest
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no stubs installed

from stream.core.batch import BatchOutcome, apply_batch, not_forgotten
from stream.core.deadletter import DeadLetter, SourcePosition, header_pairs
from stream.core.decode import DecodedBatch, normalised_key
from stream.core.errors import ProfilestreamError
from stream.core.events import EventLimits
from stream.core.settings import Settings
from stream.core.window import Window, WindowConfig
from stream.kafka.security import _sasl_password, kafka_ssl_context
from stream.profiles.computer import Timings
from stream.redis.apply_once import REDIS_UNANSWERED
from stream.worker.batching import take_batches
from stream.worker.changelog import ChangelogWriter
from stream.worker.compute_process import ComputeProcess
from stream.worker.decode_ahead import DecodeAhead
from stream.worker.fetch_wait import use_fetch_max_wait
from stream.worker.handoff import PerBatchMonitor, RawBytesSchema, use_inline_handoff
from stream.worker.identity import IdentityJoiner
from stream.worker.metrics import WorkerMetrics
from stream.worker.overlap import alongside
from stream.worker.positions import PositionKeeper
from stream.worker.quarantine import process_isolating
from stream.worker.reroute import keep_own
from stream.worker.resources import COMPUTE_BLAS_THREADS, WORKER_GC_THRESHOLDS, WorkerState
from stream.worker.retention import BoundedState
from stream.worker.window_cache import WindowCache

log = logging.getLogger(__name__)

WINDOWS_TABLE = "windows"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` (None for PLAINTEXT)."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = kafka_ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=_sasl_password(settings),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )


def faust_parts(settings: Settings) -> tuple[faust.App, TopicT, TopicT, TableT[bytes, bytes]]:
    """The worker's Faust app, its events and dead-letter topics, and its windows table."""
    app = faust.App(
        settings.consumer_group,
        broker=[f"kafka://{server}" for server in settings.kafka_servers],
        # faust's rocksdb:// store runs on rocksdict when python-rocksdb is absent (it is not installable).
        store=f"{settings.table_store}://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.events_partitions,
        # run_worker resolves the setting's 0 (auto) from the cluster (`ensure_topics`); an app
        # built without it (tests on one broker) keeps one copy.
        topic_replication_factor=settings.kafka_replication_factor or 1,
        producer_acks=-1,
        # A batch writes a few hundred windows of a few KB each. Faust's defaults (16 KB batches,
        # no linger) sent them as dozens of small produce requests, and the socket writes cost
        # about a fifth of the event loop at 1,000 events/s (py-spy); fewer, larger requests.
        producer_linger=PRODUCER_LINGER_S,
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        producer_max_request_size=settings.kafka_record_max_bytes,
        # Failover time after a crash: the group waits this long for a dead member.
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_credentials=faust_credentials(settings),
        consumer_auto_offset_reset="earliest",
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_in_thread=False,
        # Faust's per-record timing feeds only its own statistics pages (stream/worker/handoff.py).
        monitor=PerBatchMonitor(),
    )
    events_topic = app.topic(settings.events_topic, schema=RawBytesSchema())
    dead_letter_topic = app.topic(settings.dead_letter_topic, schema=RawBytesSchema())
    # Faust declares the changelog (compacted, one partition per events partition) and refreshes
    # its producer's metadata. use_partitioner: changelog records are partitioned by user id like
    # the events topic, so a batched write lands in the user's own changelog partition (not in the
    # partition of the batch's last event).
    windows = app.Table(
        WINDOWS_TABLE,
        default=None,
        partitions=settings.events_partitions,
        # Raw bytes both ways: keys are the user ids exactly as in the events topic (so they hash to
        # the same partition) and values are our own JSON. Left untyped, Faust JSON-encodes keys
        # and then cannot read its own changelog back during recovery.
        key_type=bytes,
        value_type=bytes,
        use_partitioner=True,
    )
    return app, events_topic, dead_letter_topic, windows


def create_app(
    settings: Settings, state_factory: Callable[[Settings], WorkerState] | None = None
) -> faust.App:
    from stream.worker.resources import open_worker_state

    factory = state_factory or open_worker_state
    app, events_topic, dead_letter_topic, windows = faust_parts(settings)
    window_config = WindowConfig.from_settings(settings)
    metrics = WorkerMetrics()
    window_cache = WindowCache(settings.window_cache_users, on_corrupt=metrics.corrupt_windows.inc)

    loaded: list[WorkerState] = []
    positions = PositionKeeper(app, windows, settings, metrics)
    _serve_pages(app, metrics, loaded, positions.stuck)
    positions.watch_idle()
    changelog = ChangelogWriter.for_app(app, windows, settings.events_partitions)
    bounded = BoundedState(changelog, settings, metrics, window_cache)
    identity = IdentityJoiner(events_topic, settings)
    compute = compute_process(settings, state_factory)
    # Two batches are held at most (the one processed and the next): twice that leaves room for
    # records of a partition taken away before their batch came.
    ahead = DecodeAhead(EventLimits.from_settings(settings), max_held=4 * settings.batch_max_events)

    async def process_batch(batch: Sequence[EventT[bytes]], state: WorkerState) -> None:
        with positions.processing():
            admission = await positions.admit(batch)
            if admission.admitted:
                # Records another partitioner put here go to their user's partition first.
                poisoned = (
                    await process_isolating(
                        own,
                        lambda part: process_admitted(part, state),
                        max_attempts=settings.poison_max_attempts,
                    )
                    if (
                        own := await keep_own(
                            events_topic, admission.admitted, settings.events_partitions, metrics
                        )
                    )
                    else []
                )
                if poisoned:
                    await quarantine(dead_letter_topic, poisoned, settings, metrics)
                # The windows (and the retention sweep's tombstones, also from parts that then
                # failed) are acknowledged by the broker before the positions move past them.
                await changelog.flush()
                positions.store(admission)
            await positions.update_lag()

    async def process_admitted(batch: Sequence[EventT[bytes]], state: WorkerState) -> None:
        started = time.perf_counter()
        # Mostly decoded already, while the batch before was computed (stream/worker/decode_ahead.py).
        decoded = ahead.batch(batch)
        await send_dead_letters(
            dead_letter_topic, decoded.dead_letters, metrics, settings.dead_letter_max_payload_bytes
        )
        current = {
            u: window_cache.decode(key, raw)
            for u in {event.user_id for event in decoded.events}
            if (raw := windows.get(key := u.encode())) is not None
        }
        # Logins move anonymous windows to the known users through Kafka, acknowledged before the
        # anonymous windows are cleared; forgets reach linked ids (stream/worker/identity.py).
        joined = await identity.apply(
            decoded.events,
            current,
            *apply_batch(current, decoded.events, window_config, settings.popularity_half_life_s * 1000),
        )

        # The recent-activity write needs no profile: it goes out before the compute, on its own
        # connection, so that Redis runs its scripts while the compute thread works (a joined
        # visitor's keys go once its last events are recorded).
        profile_count, timings = await alongside(
            identity.after_activity(
                state.activity.write(not_forgotten(decoded.events, joined.windows)), joined.anonymous
            ),
            write_profiles(
                state,
                compute,
                window_cache,
                joined.outcome,
                # Moves the retention watermarks and sweeps a few stored windows; returns the
                # popularity of catalogue items only.
                lambda: bounded.admit(
                    batch, decoded.events, joined.outcome.popularity, state.computer.catalogue.ids
                ),
            ),
        )
        # Windows are stored only after Redis has the batch. The other way round, a crash between
        # the changelog write and the Redis write would restore windows that already hold the
        # batch: its replay would be all duplicates, and those users' Redis entries would stay stale.
        store_windows(changelog, window_cache, joined.windows, current, batch)
        _observe(
            metrics,
            batch=batch,
            decoded=decoded,
            outcome=joined.outcome,
            profiles=profile_count,
            timings=timings,
            started_s=started,
        )

    @app.agent(events_topic, name="profilestream.events")
    async def process_events(stream: faust.StreamT[bytes]) -> None:
        state = await load_state(factory, settings, compute)
        # The model, index and catalogue live as long as the worker: no collection needs to
        # scan them again.
        gc.freeze()
        loaded.append(state)
        try:
            # Full batches, or due ones once nothing more waits (stream/worker/batching.py).
            async for batch in take_batches(
                cast(faust.Stream[bytes], stream),
                settings.batch_max_events,
                settings.batch_max_wait_ms / 1000,
                on_add=ahead.prepare,
            ):
                try:
                    await process_batch(batch, state)
                except Exception as exc:
                    exit_for_redelivery(batch, exc)
                finally:
                    ahead.release(batch)
        finally:
            loaded.clear()
            await asyncio.gather(
                state.store.close(),
                state.activity.close(),
                identity.close(),
                positions.close(),
                *([compute.close()] if compute is not None else []),
            )

    return app


async def quarantine(
    topic: Any,
    poisoned: Sequence[tuple[EventT[bytes], Exception]],
    settings: Settings,
    metrics: WorkerMetrics,
) -> None:
    """Dead-letter records that failed alone `poison_max_attempts` times, the error as reason."""
    letters = [
        DeadLetter(
            key=e.message.key,
            raw=e.message.value or b"",
            field="$",
            reason=(
                f"quarantined: processing failed {settings.poison_max_attempts} times on this "
                f"record alone: {type(error).__name__}: {error}"
            ),
            source=SourcePosition(e.message.topic, e.message.partition, e.message.offset),
            original_headers=header_pairs(e.message.headers),
        )
        for e, error in poisoned
    ]
    for letter in letters:
        log.error("quarantining %s: %s", letter.source, letter.reason)
    await send_dead_letters(topic, letters, metrics, settings.dead_letter_max_payload_bytes)
    metrics.quarantined.inc(len(letters))


async def send_dead_letters(
    topic: Any, letters: Sequence[DeadLetter], metrics: WorkerMetrics, max_payload_bytes: int
) -> None:
    """Send dead letters (bounded copies, reasons in headers) and wait for the broker's acks.

    Awaited before the batch goes on, so the partition's position can move past a rejected record
    only once the broker holds its dead letter (a crash in between re-reads and re-sends it).
    """
    pending = []
    for letter in letters:
        record = letter.bounded(max_payload_bytes)
        pending.append(await topic.send(key=record.key, value=record.value, headers=record.headers))
    await asyncio.gather(*pending)
    if letters:
        metrics.dead_letters.inc(len(letters))
        first = letters[0]
        log.warning(
            "dead-lettered %d messages to %s; first at %s: field %r: %s",
            len(letters),
            topic.get_topic_name(),
            first.source,
            first.field,
            first.reason,
        )


def _serve_pages(
    app: faust.App, metrics: WorkerMetrics, loaded: list[WorkerState], stuck: Callable[[], list[str]]
) -> None:
    """/metrics, /healthz and /readyz on the worker's web port."""

    @app.page("/metrics")
    async def _metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; Prometheus' text format is UTF-8 anyway.
        return web.bytes(generate_latest(metrics.registry), content_type=PROMETHEUS_CONTENT_TYPE)

    @app.page("/healthz")
    async def _health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def _ready(web: Any, request: Any) -> Any:
        # Not ready while the model loads, the group rebalances or tables restore: a probe then
        # keeps traffic and rollouts waiting instead of counting this replica as serving.
        unanswered_s = REDIS_UNANSWERED.unanswered_s()
        waiting = [
            reason
            for reason, pending in (
                ("loading the encoder and index", not loaded),
                ("rebalancing", app.rebalancing),
                ("restoring tables from the changelog", app.in_recovery),
                # Its batches wait (retrying) until Redis answers: nothing is served meanwhile.
                (f"Redis, unanswered for {unanswered_s:.0f} s", unanswered_s >= REDIS_UNREADY_AFTER_S),
            )
            if pending
        ]
        # A partition rewound again and again to one offset serves nothing from there on.
        waiting += stuck()
        if waiting:
            return web.json({"status": "not ready", "waiting_for": waiting}, status=503)
        return web.json({"status": "ready"})


# A write that waits for Redis longer than a few retries (0.1 + 0.2 + ... s) makes /readyz 503.
REDIS_UNREADY_AFTER_S = 3.0
EXIT_BATCH_FAILED = 70  # EX_SOFTWARE
EXIT_SETUP_FAILED = 78  # EX_CONFIG
# A normal stop (the batch in hand finishes, Faust's services stop) takes a few seconds here.
STOP_DEADLINE_S = 15.0
PRODUCER_LINGER_S = 0.005
PRODUCER_MAX_BATCH_BYTES = 512 * 1024  # under the broker's default message.max.bytes (1 MB)


def exit_for_redelivery(batch: Sequence[EventT[bytes]], error: Exception) -> None:
    """End the process at once after an unexpected error in a batch.

    Faust would restart the agent and read on past the failed batch, and a later commit would
    skip it: its events would be lost. Exiting without committing anything makes the failure a
    crash like a SIGKILL (tested): the supervisor restarts the worker, which reads the batch again.
    """
    first = batch[0].message if batch else None
    where = f"{first.topic}/{first.partition}@{first.offset}" if first else "an empty batch"
    log.critical(
        "batch from %s failed; exiting with %d so that it is read again after a restart",
        where,
        EXIT_BATCH_FAILED,
        exc_info=error,
    )
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)


async def load_state(
    factory: Callable[[Settings], WorkerState], settings: Settings, compute: ComputeProcess | None = None
) -> WorkerState:
    """Open the worker's resources and start its compute process (if any), or end the process
    (`exit_for_bad_setup`)."""
    try:
        # Loaded in a thread (and the child at the same time): the event loop meanwhile answers
        # /readyz ("loading") and heartbeats.
        opened = asyncio.get_running_loop().run_in_executor(None, factory, settings)
        started = asyncio.ensure_future(compute.start() if compute is not None else asyncio.sleep(0))
        try:
            # The worker's own error first: the child opens the same model and index.
            state = await opened
        except BaseException:
            started.cancel()
            raise
        await started
        return state
    except Exception as exc:
        exit_for_bad_setup(exc)


class StopDeadlineWorker(faust.Worker):
    """Faust's worker, ended at once if a stop takes longer than `STOP_DEADLINE_S`.

    On SIGTERM Faust waits for the batch in hand to finish (its events acknowledged) before it
    stops, which is what makes a normal stop clean. A batch that waits for an unreachable Redis
    or Kafka never finishes, and the worker ignored SIGTERM for good. Past the deadline the
    process exits as a crash would (nothing more runs, the batch's positions are not stored, so
    it is read again). Letting Faust stop without waiting instead (`stream_wait_empty=False`)
    lost events in the fault test where a second worker leaves its group (31 users' latest
    events; the likely cause, not proven: the abandoned batch acknowledged and its offsets
    committed on the way out).
    """

    async def stop(self) -> None:
        deadline = threading.Timer(STOP_DEADLINE_S, exit_for_stuck_stop)
        deadline.daemon = True
        deadline.start()
        await super().stop()


def exit_for_stuck_stop() -> None:
    log.critical(
        "the worker did not stop within %.0f s: its batch waits for a peer (Redis or Kafka); "
        "exiting with %d without storing that batch's positions, so it is read again",
        STOP_DEADLINE_S,
        EXIT_BATCH_FAILED,
    )
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)


def exit_for_bad_setup(error: Exception) -> NoReturn:
    """End the process when the model, index or tower cannot be opened.

    Faust would restart the agent, which fails the same way for ever while the worker holds its
    partitions and answers /healthz: a missing or mismatched model is fixed by its operator, not
    by a retry. A `ProfilestreamError` says what to fix in one line; anything else keeps its
    traceback.
    """
    if isinstance(error, ProfilestreamError):
        log.critical("cannot start the worker: %s (exit %d)", error, EXIT_SETUP_FAILED)
    else:
        log.critical("cannot start the worker (exit %d)", EXIT_SETUP_FAILED, exc_info=error)
    logging.shutdown()
    os._exit(EXIT_SETUP_FAILED)


async def compute_and_store(
    state: WorkerState, outcome: BatchOutcome, admit_popularity: Callable[[], dict[str, float]]
) -> tuple[int, Timings]:
    """Compute the profiles of the batch's changed users and write them, its forgets and the
    catalogue popularity (`admit_popularity`, called once the profiles are computed) to the
    recommendation store. Returns the count of profiles written and the compute's timings."""
    # The encoder releases the GIL; a thread keeps Kafka heartbeats flowing meanwhile.
    profiles, timings = await asyncio.get_running_loop().run_in_executor(
        None, state.computer.compute_timed, [(u, w) for u, w in outcome.changed if w.events]
    )
    await state.store.write(profiles, outcome.forgets, admit_popularity(), int(time.time() * 1000))
    return len(profiles), timings


def compute_process(
    settings: Settings, state_factory: Callable[[Settings], WorkerState] | None
) -> ComputeProcess | None:
    """The worker's compute process (None: the compute runs in a thread of this process)."""
    # A state factory is a test's: its fakes live in this process, so the compute does too.
    if settings.worker_compute == "process" and state_factory is None:
        return ComputeProcess(settings)
    return None


def write_profiles(
    state: WorkerState,
    compute: ComputeProcess | None,
    cache: WindowCache,
    outcome: BatchOutcome,
    admit_popularity: Callable[[], dict[str, float]],
) -> Awaitable[tuple[int, Timings]]:
    """The batch's profile computation and write: in the compute process, or (None) in a thread."""
    if compute is None:
        return compute_and_store(state, outcome, admit_popularity)
    return compute_in_process(compute, cache, outcome, admit_popularity)


async def compute_in_process(
    compute: ComputeProcess,
    cache: WindowCache,
    outcome: BatchOutcome,
    admit_popularity: Callable[[], dict[str, float]],
) -> tuple[int, Timings]:
    """`compute_and_store` in the compute process: the changed windows go as the bytes the
    changelog will store (remembered by `cache`, so `store_windows` does not encode them again),
    with the popularity `admit_popularity` gives (called before they go)."""
    windows = [(u, cache.encode(u.encode(), w)) for u, w in outcome.changed if w.events]
    return await compute.compute_and_write(windows, outcome.forgets, admit_popularity())


def store_windows(
    changelog: ChangelogWriter,
    cache: WindowCache,
    new_windows: dict[str, Window],
    current: dict[str, Window],
    batch: Sequence[EventT[bytes]],
) -> None:
    """Write the windows that changed to the table's store and queue their changelog records
    (sent, and acknowledged, before the batch's positions are stored: `process_batch`)."""
    # By the user id the key names: a record keyed by another spelling of it is processed on the
    # id's partition too (`stream.worker.reroute`).
    event_by_key = {normalised_key(e.message.key): e for e in batch}
    for user_id, window in new_windows.items():
        if window != current.get(user_id, Window()):
            key = user_id.encode()
            changelog.set(key, cache.encode(key, window), event_by_key[key])


def _observe(
    metrics: WorkerMetrics,
    *,
    batch: Sequence[EventT[bytes]],
    decoded: DecodedBatch,
    outcome: BatchOutcome,
    profiles: int,
    timings: Timings,
    started_s: float,
) -> None:
    """Count the batch in the metrics and log one line for it (`started_s`: its perf_counter start)."""
    metrics.events.inc(len(decoded.events))
    metrics.truncated_queries.inc(decoded.truncated_queries)
    metrics.clamped_received.inc(decoded.clamped_received)
    metrics.late_events.inc(outcome.late)
    metrics.duplicate_events.inc(outcome.duplicates)
    metrics.forgotten_events.inc(outcome.received_before_forget)
    metrics.window_bytes_dropped.inc(outcome.dropped_for_bytes)
    metrics.forgets.inc(len(outcome.forgets))
    metrics.profiles_written.inc(profiles)
    metrics.batch_events.observe(len(batch))
    metrics.batch_users.observe(len(outcome.changed))
    metrics.encode_ms.observe(timings.encode_ms)
    metrics.topk_ms.observe(timings.rank_ms)
    now_s = time.time()
    for event in batch:
        # Kafka's record timestamp (produce time) to now: how stale Redis was for this event.
        metrics.freshness_ms.observe(max(0.0, (now_s - event.message.timestamp) * 1000))
    log.info(
        "batch: %d events (%d with a query cut), %d dead letters, %d users re-encoded, %d late, "
        "%d duplicates, %d received before their user's forget, encode %.0f ms, rank %.0f ms, "
        "total %.0f ms",
        len(decoded.events),
        decoded.truncated_queries,
        len(decoded.dead_letters),
        profiles,
        outcome.late,
        outcome.duplicates,
        outcome.received_before_forget,
        timings.encode_ms,
        timings.rank_ms,
        (time.perf_counter() - started_s) * 1000,
    )


def run_worker(settings: Settings) -> None:
    """Run one worker until SIGINT/SIGTERM; several share the load as one consumer group."""
    from stream.kafka.codecs import require_codecs
    from stream.kafka.topics import PartitionCountMismatch, ensure_topics

    try:
        # A compressed record the consumer cannot read would crash the worker at every restart.
        require_codecs("aiokafka")
    except ProfilestreamError as exc:
        exit_for_bad_setup(exc)
    # The topics Faust creates itself (its assignor's leader topic, any later table) are
    # replicated like ours: the factor resolved from the cluster, not the setting's 0 (auto).
    try:
        # Refused before any topic is created: a changelog made with the wrong count stays wrong.
        replication = ensure_topics(settings, refuse_partition_mismatch=True)
    except PartitionCountMismatch as exc:
        exit_for_bad_setup(exc)
    settings = settings.model_copy(update={"kafka_replication_factor": replication.factor})
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    # Python's cyclic garbage collector scanned the whole heap (Faust, the index, cached windows)
    # every 2-3 s in a 1,000 events/s run, and each full pass stopped every thread for 70-140 ms
    # (measured with gc.callbacks); rarer passes over a frozen start-up heap took p50 freshness
    # from 410-510 to 370-430 ms (bench/pipeline.py, two runs each). The worker's garbage is
    # nearly all acyclic and freed by reference counting, so collections are rarer, not off.
    gc.set_threshold(*WORKER_GC_THRESHOLDS)
    use_fetch_max_wait(settings.kafka_fetch_max_wait_ms)
    use_inline_handoff()
    # OpenBLAS' second thread spun for the products of the compute thread on the same two cores
    # as the event loop: the product of 220 users by 500 items cost 10 ms of CPU on 2 threads and
    # 2.8 ms on one, and one worker's CPU per event fell 5 % (bench.peer_compare, 2,000 events/s).
    threadpool_limits(COMPUTE_BLAS_THREADS, user_api="blas")
    app = create_app(settings)
    worker = StopDeadlineWorker(app, loglevel=settings.log_level.lower(), quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG at WARNING and above, so every
    # library debug line (Faust's include message values, i.e. user ids) became a log record.
    worker.spinner = None
    worker.execute_from_commandline()
