"""Online evaluation (`profilestream evaluate DATASET --task online`): the real pipeline, scored from Redis.

Each row of the evaluated split becomes a user of its own (``{split}-{row}``) whose history is
produced to Kafka as purchases one second apart (the timing `models.evaluation.search.history_window`
gives the offline evaluation). A real worker (`profilestream worker`, a child process with the
served model and the data set's items indexed under the same template) consumes them and writes
recommendations to Redis; once its stored positions reach the end of every partition
(`stream.kafka.drain`), the top-K lists are read back from Redis and scored against each row's target.

In the same run the stream's own offline function (`stream.profiles.offline.offline_payloads`, the same
`ProfileComputer` over windows built from the whole event set) scores the same rows. The two must
agree user by user (same items in the same order, scores within 1e-4) and so give equal metrics;
any difference is listed. The protocol is the stream's, not the full-ranking one of
``--task recommend``: already purchased items (the history) are never recommended (unless
PROFILESTREAM_EXCLUDE_PURCHASED is false), stock and MMR settings apply, and only the top K = 20
land in Redis, so MRR is MRR@20.

Everything runs in a namespace of its own (topics, consumer group, Redis prefix), removed at the
end unless asked to keep it.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.data.amazon import AMAZON_BASE_TS_MS, AMAZON_HISTORY_STEP_MS, EvalRow
from models.evaluation import report as report_files
from models.evaluation.recommend import K_VALUES, IntArray, Metrics, metric_titles, summarise
from stream.core.errors import SourceError
from stream.core.events import Event, EventType
from stream.core.settings import Settings
from stream.profiles.computer import user_vector_mode

log = logging.getLogger(__name__)

# Recommendations written per user: the largest K evaluated.
ONLINE_TOP_K = max(K_VALUES)
SCORE_TOLERANCE = 1e-4
WORKER_START_TIMEOUT_S = 180.0
DIFFERENCES_SHOWN = 10


@dataclass(frozen=True, slots=True)
class OnlineRow:
    user_id: str
    target: str
    events: tuple[Event, ...]


def online_rows(rows: Sequence[EvalRow], split: str) -> list[OnlineRow]:
    """One user per row, the history as purchases one second apart, oldest first."""
    result = []
    for n, row in enumerate(rows):
        user_id = f"{split}-{n:06d}"
        events = tuple(
            Event(
                f"{user_id}-h{p:04d}",
                user_id,
                EventType.PURCHASE,
                AMAZON_BASE_TS_MS + p * AMAZON_HISTORY_STEP_MS,
                item_id=item,
            )
            for p, item in enumerate(row.history)
        )
        result.append(OnlineRow(user_id, row.target, events))
    return result


def list_ranks(lists: Sequence[Sequence[str] | None], targets: Sequence[str]) -> IntArray:
    """0-based position of each target in its row's list; -1 when absent or the row has no list."""
    ranks = np.full(len(targets), -1, dtype=np.intp)
    for n, (items, target) in enumerate(zip(lists, targets, strict=True)):
        if items is not None and target in items:
            ranks[n] = list(items).index(target)
    return ranks


def list_differences(
    online: Mapping[str, Sequence[tuple[str, float]]],
    offline: Mapping[str, Sequence[tuple[str, float]]],
    tolerance: float = SCORE_TOLERANCE,
) -> list[str]:
    """Users whose online list is not the offline one (ids in order, scores within `tolerance`)."""
    problems = []
    for user in sorted(set(online) | set(offline)):
        got, want = online.get(user), offline.get(user)
        if got is None or want is None:
            problems.append(f"{user}: {'missing online' if got is None else 'missing offline'}")
        elif [i for i, _ in got] != [i for i, _ in want]:
            problems.append(f"{user}: online {[i for i, _ in got]} != offline {[i for i, _ in want]}")
        elif any(abs(g - w) > tolerance for (_, g), (_, w) in zip(got, want, strict=True)):
            problems.append(f"{user}: scores differ by more than {tolerance:g}")
    return problems


@dataclass(frozen=True, slots=True)
class OnlineEvalReport:
    dataset: str
    split: str
    rows: int
    events: int
    user_vector: str
    model_version: str
    online: Metrics
    offline: Metrics
    users_with_lists: int  # users the stream wrote recommendations for
    differences: tuple[str, ...]  # user-level differences (the first DIFFERENCES_SHOWN)
    different_users: int
    drain_s: float  # from producing the first event to every partition processed (worker start included)
    seconds: float
    notes: tuple[str, ...] = field(default=())
    popularity_weight: float = 0.0  # the served prior (stream.core.prior), on allowed-interaction counts
    exclude_purchased: bool = True  # PROFILESTREAM_EXCLUDE_PURCHASED: history purchases never listed

    @property
    def history(self) -> str:
        return "history items excluded" if self.exclude_purchased else "history items allowed"

    @property
    def equal(self) -> bool:
        return self.different_users == 0 and self.online == self.offline

    def to_dict(self) -> dict[str, Any]:
        def metrics(m: Metrics) -> dict[str, float]:
            return {"mrr_at_20": m.mrr, **m.by_k()}

        return {
            "task": "online",
            "dataset": self.dataset,
            "split": self.split,
            "rows": self.rows,
            "events": self.events,
            "user_vector": self.user_vector,
            "model_version": self.model_version,
            "popularity_weight": self.popularity_weight,
            "protocol": f"the stream's top-20 from Redis; {self.history}",
            "online": metrics(self.online),
            "offline": metrics(self.offline),
            "equal": self.equal,
            "users_with_lists": self.users_with_lists,
            "different_users": self.different_users,
            "differences": list(self.differences),
            "drain_s": round(self.drain_s, 1),
            "seconds": round(self.seconds, 1),
            "notes": list(self.notes),
        }

    def to_markdown(self) -> str:
        header = ["side", *metric_titles(self.online.ks, mrr="MRR@20")]
        lines = [
            f"Online evaluation on {self.dataset} ({self.split}, {self.rows} rows, {self.events} events "
            f"through a real worker and Redis; user vector `{self.user_vector}`, model "
            f"{self.model_version}, popularity prior weight {self.popularity_weight:g}; {self.history}, "
            f"top {ONLINE_TOP_K} in Redis)",
            "",
            *report_files.table_head(header),
        ]
        for side, m in (("online (Redis)", self.online), ("offline recomputation", self.offline)):
            lines.append(f"| {side} | {m.cells()} |")
        verdict = (
            "equal: every user's Redis list is the offline one"
            if self.equal
            else f"DIFFERENT: {self.different_users} users differ, e.g. {list(self.differences[:3])}"
        )
        lines.append(
            f"\n{verdict}; {self.users_with_lists} of {self.rows} users got a list; the worker "
            f"processed everything {self.drain_s:.1f} s after the first event was produced (its "
            "start included)."
        )
        lines.extend(f"\n{note}" for note in self.notes)
        return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eval_settings(settings: Settings, work_dir: Path, run_id: str) -> Settings:
    """The served settings in a namespace of their own, with the data set's index and top 20."""
    from stream.core.namespace import namespaced

    return namespaced(settings, f"eval-{run_id}").model_copy(
        update={
            "index_dir": work_dir / "index",
            "data_dir": work_dir / "data",
            "worker_web_port": _free_port(),
            "top_k": ONLINE_TOP_K,
        }
    )


def _redis_lists(settings: Settings, users: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
    from stream.redis.client import redis_sync
    from stream.redis.reco_store import RECO_KIND

    redis = redis_sync(settings)
    try:
        lists: dict[str, list[tuple[str, float]]] = {}
        for start in range(0, len(users), 1000):
            chunk = users[start : start + 1000]
            pipe = redis.pipeline(transaction=False)
            for user in chunk:
                pipe.hget(settings.redis_key(RECO_KIND, user), "json")
            for user, raw in zip(chunk, pipe.execute(), strict=True):
                if raw is not None:
                    items = json.loads(raw)["items"]
                    lists[user] = [(item["item_id"], float(item["score"])) for item in items]
        return lists
    finally:
        redis.close()


def _offline_lists(
    settings: Settings, events: Sequence[Event]
) -> tuple[dict[str, list[tuple[str, float]]], str]:
    from stream.profiles.offline import offline_payloads
    from stream.worker.resources import open_computer

    # Opened as the worker opens it (encoder, index, and the tower in mode `sequence`).
    computer = open_computer(settings)
    payloads = offline_payloads(events, computer)
    lists = {
        user: [(item["item_id"], float(item["score"])) for item in payload["items"]]
        for user, payload in payloads.items()
    }
    return lists, computer.model_version


def _cleanup(settings: Settings) -> None:
    from kafka.admin import KafkaAdminClient

    from stream.kafka.security import kafka_python_security
    from stream.redis.client import delete_prefix

    delete_prefix(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers, **kafka_python_security(settings))
    try:
        # Faust names its own topics (the windows' changelog, the leader topic) after the app id,
        # which is the consumer group.
        owned = {settings.events_topic, settings.dead_letter_topic}
        topics = [t for t in admin.list_topics() if t in owned or t.startswith(f"{settings.consumer_group}-")]
        admin.delete_topics(topics)
    finally:
        admin.close()


def _start_worker(settings: Settings, environ: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    from stream.core.settings import child_environment

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_environment(environ, settings),
        )


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def run_online_eval(
    settings: Settings,
    dataset_dir: Path,
    work_dir: Path,
    environ: Mapping[str, str],
    *,
    split: str = "test",
    limit: int | None = None,
    timeout_s: float = 1800.0,
    keep: bool = False,
) -> OnlineEvalReport:
    """Index the data set's items, replay the split's histories through a worker, score Redis.

    `environ` is the parent's environment for the worker child (its PROFILESTREAM_* variables are
    replaced by the evaluation's settings). Needs Kafka and Redis at the configured addresses.
    """
    from models.data.amazon import items_with_popularity, load_dataset
    from models.encoder.onnx_encoder import load_encoder, options_from_settings
    from models.index.item_index import sync_items
    from stream.ingest.producer import EventProducer
    from stream.kafka.drain import wait_drained
    from stream.kafka.topics import ensure_topics

    started = time.perf_counter()
    dataset = load_dataset(dataset_dir, splits=(split,), limit=limit)
    rows = online_rows(dataset.rows[split], split)
    if not rows:
        raise SourceError(f"{dataset_dir}/{split}.csv holds no rows to evaluate; check the file")
    run = eval_settings(settings, work_dir, uuid.uuid4().hex[:8])
    encoder = load_encoder(run.model_dir, options_from_settings(run))
    # Popularity as the offline evaluation counts it: allowed interactions only (every split read).
    sync_items(
        run.index_dir,
        items_with_popularity(load_dataset(dataset_dir), split),
        encoder,
        source=f"{dataset_dir / 'items.json'} with allowed-interaction counts",
        rebuild=True,
        batch_size=run.encoder_batch_size,
    )
    events = [event for row in rows for event in row.events]
    ensure_topics(run)
    log_path = work_dir / "worker.log"
    worker = _start_worker(run, environ, log_path)
    try:
        produced_at = time.monotonic()
        with EventProducer(run) as producer:
            producer.send_many(events, timeout_s=120.0)
        log.info(
            "online evaluation: %d events of %d rows produced to %s", len(events), len(rows), run.events_topic
        )
        wait_drained(run, worker, timeout_s + WORKER_START_TIMEOUT_S, log_path)
        drain_s = time.monotonic() - produced_at
        users = [row.user_id for row in rows]
        online = _redis_lists(run, users)
    finally:
        _stop_worker(worker)
    offline, model_version = _offline_lists(run, events)
    differences = list_differences(online, offline)
    targets = [row.target for row in rows]

    def scored(lists: Mapping[str, Sequence[tuple[str, float]]]) -> Metrics:
        ranked = [[item for item, _ in lists[u]] if u in lists else None for u in users]
        return summarise(list_ranks(ranked, targets))

    if not keep:
        _cleanup(run)
    report = OnlineEvalReport(
        dataset=dataset.name,
        split=split,
        rows=len(rows),
        events=len(events),
        user_vector=user_vector_mode(run),  # what `auto` resolved to
        model_version=model_version,
        online=scored(online),
        offline=scored(offline),
        users_with_lists=len(online),
        differences=tuple(differences[:DIFFERENCES_SHOWN]),
        different_users=len(differences),
        drain_s=drain_s,
        seconds=time.perf_counter() - started,
        notes=() if keep else ("The evaluation's topics and Redis keys were removed.",),
        popularity_weight=run.popularity_weight,
        exclude_purchased=run.exclude_purchased,
    )
    log.info("online evaluation: %s", "equal to offline" if report.equal else "DIFFERENT from offline")
    return report


def write_report(report: OnlineEvalReport, out_dir: Path) -> list[Path]:
    """``online_eval.json`` and ``online_eval.md``."""
    return report_files.write_report(report, out_dir, "online_eval")
