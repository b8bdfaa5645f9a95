"""The job both peers run, outside any framework: window update, user vectors, top-K, reasons, write.

What profilestream's worker does per batch in `items` mode, as a plain library user would write it:
per-user window of the last `window_max_events` events, the decayed type-weighted mean of the
window's item (and search query) vectors, exact top-K over the whole index (numpy, in-stock only,
purchased items excluded), for each recommended item the window anchor most similar to it as the
reason, and the worker's own newer-only Lua script for the Redis write. Shared with the worker
where a peer would import the same library anyway: the item index and encoder loading, the Lua
text, the settings' numbers. Not shared: decoding, validation, window code, ranking code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from models.encoder.onnx_encoder import OnnxTextEncoder, load_encoder, options_from_settings
from stream.core.settings import Settings, redis_tag
from stream.profiles.catalogue import load_catalogue
from stream.redis.reco_store import WRITE_IF_NEWER_LUA, WRITE_IF_NEWER_SHA
from stream.worker.metrics import FRESHNESS_BUCKETS_MS  # the worker's: all three read alike

FloatArray = npt.NDArray[np.float32]
# A window entry: (ts_ms, event_id, type, item_id, query), oldest first.
Entry = tuple[int, str, str, str | None, str | None]

VERBS = {
    "view": "viewed",
    "click": "clicked",
    "add_to_cart": "added",
    "purchase": "bought",
    "search": "searched for",
}


@dataclass
class PeerMetrics:
    """The two series the driver reads, under the worker's names and buckets."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.events = Counter("profilestream_events", "Valid events processed.", registry=self.registry)
        self.freshness_ms = Histogram(
            "profilestream_freshness_ms",
            "Kafka record time to just after the Redis write (ms).",
            buckets=FRESHNESS_BUCKETS_MS,
            registry=self.registry,
        )

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)


@dataclass
class Job:
    ids: Sequence[str]
    vectors: FloatArray
    in_stock: npt.NDArray[np.bool_]
    rows: dict[str, int]
    titles: Mapping[str, str]
    encoder: OnnxTextEncoder
    type_weights: dict[str, float]
    half_life_ms: float
    max_events: int
    top_k: int
    prefix: str
    ttl_s: int
    query_vectors: dict[str, FloatArray] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings) -> Job:
        encoder = load_encoder(Path(settings.model_dir), options_from_settings(settings))
        catalogue = load_catalogue(settings, encoder.model_version)
        return cls(
            ids=catalogue.ids,
            vectors=np.ascontiguousarray(catalogue.vectors, dtype=np.float32),
            in_stock=np.asarray(catalogue.in_stock, dtype=bool),
            rows={item_id: n for n, item_id in enumerate(catalogue.ids)},
            titles=catalogue.titles,
            encoder=encoder,
            type_weights=settings.type_weights,
            half_life_ms=settings.window_half_life_s * 1000.0,
            max_events=settings.window_max_events,
            top_k=settings.top_k,
            prefix=settings.redis_key_prefix,
            ttl_s=settings.reco_ttl_s,
        )


def parse(value: Mapping[str, Any]) -> Entry | None:
    """The fields the job reads, or None when one is missing or of the wrong type."""
    user, event_id, kind, ts = (
        value.get("user_id"),
        value.get("event_id"),
        value.get("type"),
        value.get("ts_ms"),
    )
    if not (
        isinstance(user, str) and isinstance(event_id, str) and isinstance(kind, str) and isinstance(ts, int)
    ):
        return None
    return (ts, event_id, kind, value.get("item_id"), value.get("query"))


def add_event(window: list[Entry], entry: Entry, max_events: int) -> list[Entry]:
    """The window with `entry` added (duplicates ignored), time-ordered, newest `max_events` kept."""
    if any(e[1] == entry[1] for e in window):
        return window
    window.append(entry)
    # Compared field by field: a window restored from JSON state holds lists, not tuples.
    if len(window) > 1 and (window[-2][0], window[-2][1]) > (entry[0], entry[1]):
        window.sort(key=lambda e: (e[0], e[1]))
    del window[: max(0, len(window) - max_events)]
    return window


def redis_args(job: Job, windows: Mapping[str, Sequence[Entry]], now_ms: int) -> list[tuple[Any, ...]]:
    """EVALSHA arguments (script, keys, args) for every user whose window gives a vector."""
    new_queries = sorted(
        {e[4] for w in windows.values() for e in w if e[4] and e[3] is None} - job.query_vectors.keys()
    )
    if new_queries:
        job.query_vectors.update(zip(new_queries, job.encoder.encode(new_queries), strict=True))
    users: list[tuple[str, Sequence[Entry]]] = []
    vectors: list[FloatArray] = []
    excluded: list[list[int]] = []
    for user, window in windows.items():
        vector, bought = user_vector(job, window) if window else (None, [])
        if vector is not None:
            users.append((user, window))
            vectors.append(vector)
            excluded.append(bought)
    if not users:
        return []
    matrix = np.stack(vectors)
    scores = matrix @ job.vectors.T
    scores[:, ~job.in_stock] = -np.inf
    for n, rows in enumerate(excluded):
        scores[n, rows] = -np.inf
    k = min(job.top_k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    result = []
    for n, (user, window) in enumerate(users):
        chosen = top[n][np.argsort(-scores[n, top[n]], kind="stable")]
        chosen = chosen[np.isfinite(scores[n, chosen])]
        newest_ts, newest_id = window[-1][0], window[-1][1]
        payload = {
            "user_id": user,
            "items": recommendations(job, window, chosen, scores[n]),
            "model_version": job.encoder.model_version,
            "window_newest_ts_ms": newest_ts,
            "window_newest_event_id": newest_id,
            "computed_at_ms": now_ms,
            "source": "profile",
        }
        version = "".join(f"{e[0]:016d}{e[1]}\x00" for e in reversed(window))
        result.append(
            (
                WRITE_IF_NEWER_SHA,
                3,
                # Key schema v2, as the worker's (Settings.redis_key): the user id is the hash tag.
                f"{job.prefix}:{{{redis_tag(user)}}}:reco",
                f"{job.prefix}:{{{redis_tag(user)}}}:emb",
                f"{job.prefix}:{{{redis_tag(user)}}}:forgotten",
                newest_ts,
                version,
                json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
                matrix[n].astype("<f4").tobytes(),
                job.ttl_s,
            )
        )
    return result


def user_vector(job: Job, window: Sequence[Entry]) -> tuple[FloatArray | None, list[int]]:
    """The decayed, type-weighted mean of the window's item and query vectors (None: nothing
    indexed), and the rows of the items the user bought."""
    newest = window[-1][0]
    rows: list[int] = []
    weights: list[float] = []
    total = np.zeros(job.vectors.shape[1], dtype=np.float64)
    bought: list[int] = []
    for ts, _, kind, item, query in window:
        weight = job.type_weights.get(kind, 0.0) * 0.5 ** ((newest - ts) / job.half_life_ms)
        if item is not None:
            row = job.rows.get(item)
            if row is not None:
                rows.append(row)
                weights.append(weight)
                if kind == "purchase":
                    bought.append(row)
        elif query:
            total += weight * job.query_vectors[query]
    if rows:
        total += np.asarray(weights) @ job.vectors[rows].astype(np.float64)
    norm = float(np.linalg.norm(total))
    if not rows and norm == 0:
        return None, bought
    vector: FloatArray = (total / (norm or 1.0)).astype(np.float32)
    return vector, bought


def recommendations(
    job: Job, window: Sequence[Entry], chosen: npt.NDArray[np.intp], scores: FloatArray
) -> list[dict[str, Any]]:
    """The payload's items, each with the window anchor (distinct item or query, newest first)
    most similar to it as the reason."""
    seen: set[str] = set()
    anchors: list[Entry] = []
    anchor_vectors: list[FloatArray] = []
    for entry in reversed(window):
        name = entry[3] or entry[4]
        row = job.rows.get(entry[3]) if entry[3] else None
        if name is None or name in seen or (entry[3] is not None and row is None):
            continue
        seen.add(name)
        anchors.append(entry)
        anchor_vectors.append(job.vectors[row] if row is not None else job.query_vectors[name])
    best = (
        np.argmax(job.vectors[chosen] @ np.asarray(anchor_vectors, dtype=np.float32).T, axis=1).tolist()
        if anchors
        else []
    )
    items: list[dict[str, Any]] = []
    for position, row in enumerate(chosen.tolist()):
        reason = None
        if anchors:
            _, _, kind, item, query = anchors[best[position]]
            what = job.titles.get(item, item) if item is not None else f'"{query}"'
            reason = f"Because you {VERBS.get(kind, kind)} {what}"
        items.append({"item_id": job.ids[row], "score": float(scores[row]), "reason": reason})
    return items


__all__ = ["WRITE_IF_NEWER_LUA", "Entry", "Job", "PeerMetrics", "add_event", "parse", "redis_args"]
