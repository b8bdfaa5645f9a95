"""Personalised search, the pure part: query checks, the search profile, blending and explanations.

Retrieval takes the `SearchConfig.candidates` items most similar to the query (exact cosine,
in-stock only); re-ranking orders them by ``(1 - w) * query match + w * profile match`` where `w`
is the blend weight and the profile is the user's live vector from Redis mixed with their recent
search queries. Without a profile the candidates keep the query order, so an unknown user gets
exactly the query-only ranking. Each result is explained by its two match scores and the recent
event it is most similar to ("because you viewed X"), chosen as the recommendations choose theirs.

No I/O here: `stream.serving.search_service` reads Redis and runs the encoder. Vectors are L2-normalised,
so a dot product is a cosine similarity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from models.index.topk import top_k
from stream.core.errors import InvalidEvent
from stream.core.events import (
    MAX_ID_CHARS,
    EventType,
    has_control_character,
    is_blank,
    normalise_query,
    valid_id,
)
from stream.core.ranking import Anchor, explain
from stream.core.settings import Settings
from stream.profiles.computer import ItemCatalogue, PreparedCatalogue

if TYPE_CHECKING:
    from stream.serving.lookups import Unreadable

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]

# The event schema's limits: whatever can be searched can be tracked, and a query is cut to
# MAX_QUERY_CHARS the same way here as in the schema (`stream.core.events.truncate_query`).
MAX_USER_ID_CHARS = MAX_ID_CHARS
# The event schema's id rule (`stream.core.events.check_id`), named in every user_id rejection.
USER_ID_RULE = (
    f"not empty, at most {MAX_ID_CHARS} characters, no whitespace, control or invisible character "
    "at either end, no bidirectional control"
)
MAX_SEARCH_K = 100
DEFAULT_SEARCH_K = 10
# The newest distinct queries of the recent-activity list that join the search profile.
RECENT_QUERIES = 5


@dataclass(frozen=True, slots=True)
class SearchConfig:
    blend_weight: float = 0.3
    recent_query_weight: float = 0.3
    candidates: int = 200

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchConfig:
        return cls(
            blend_weight=settings.search_blend_weight,
            recent_query_weight=settings.search_recent_query_weight,
            candidates=settings.search_candidates,
        )


# --- input checks (ValueError: what pydantic turns into a field-level 422) ----------------------


def clean_query(value: object) -> str:
    """The query to search for, trimmed of whitespace and invisible characters at its edges and
    cut to MAX_QUERY_CHARS characters as the event schema normalises a tracked query; a
    ValueError naming `q` says what is wrong with it."""
    if not isinstance(value, str):
        raise ValueError(f"q must be a string, got {type(value).__name__}")
    if is_blank(value):
        raise ValueError(
            "q is empty or only whitespace or invisible characters; send the words to search for"
        )
    # The schema's own rule (invisible edges trimmed, then cut), so a search and a tracked search
    # of the same text are the same query.
    text = normalise_query(value)
    if has_control_character(text):
        raise ValueError("q contains control characters; send plain text")
    return text


def check_user_id(value: object) -> str | None:
    """The user id as events store it (`stream.core.events.valid_id`: non-ASCII text in Unicode
    form NFC, ``"42.0"`` read as ``"42"``), or None for None; a ValueError naming `user_id` and
    the schema's id rule for an id no event can carry (``"u1 "``, ``"a\nb"``, 129 characters),
    which could only ever read the popular fallback."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"user_id must be a string of 1-{MAX_USER_ID_CHARS} characters, or left out")
    try:
        return valid_id(value, "user_id")
    except InvalidEvent as exc:
        raise ValueError(
            f"user_id must be an id an event can carry: {exc.reason} (the event schema's id rule: "
            f"{USER_ID_RULE})"
        ) from exc


def check_k(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SEARCH_K:
        raise ValueError(f"k must be an integer from 1 to {MAX_SEARCH_K}, got {value!r}")
    return value


# --- the user's signals ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivityEntry:
    """One line of the recent-activity list (`stream.redis.activity.activity_entry`)."""

    event_id: str
    type: EventType
    ts_ms: int
    item_id: str | None = None
    query: str | None = None
    received_ms: int | None = None

    @property
    def receive_order_ms(self) -> int:
        """When it was received (the collector's stamp), else its event time: the forget's cut."""
        return self.received_ms if self.received_ms is not None else self.ts_ms


def parse_activity(documents: Iterable[Mapping[str, Any]]) -> list[ActivityEntry]:
    """Entries oldest first; a line that is not a behaviour event is skipped, not fatal."""
    entries = []
    for doc in documents:
        try:
            entry = ActivityEntry(
                event_id=str(doc["event_id"]),
                type=EventType(doc["type"]),
                ts_ms=int(doc["ts_ms"]),
                item_id=str(doc["item_id"]) if doc.get("item_id") is not None else None,
                query=str(doc["query"]) if doc.get("query") is not None else None,
                received_ms=int(doc["received_ms"]) if doc.get("received_ms") is not None else None,
            )
        except (KeyError, TypeError, ValueError):
            continue
        if entry.type is not EventType.FORGET:
            entries.append(entry)
    return entries


@dataclass(frozen=True, slots=True)
class UserSignals:
    """What Redis holds about a user: live vector (float32 values), recent activity, forget time,
    and the entries that could not be read (a profile read in part is not used at all)."""

    vector: FloatArray | None
    activity: tuple[ActivityEntry, ...] = ()
    forgotten_ts_ms: int | None = None
    unreadable: tuple[Unreadable, ...] = ()

    def usable_activity(self) -> list[ActivityEntry]:
        """Activity after the user's last forget: the list is kept as received, so an old replay
        could append pre-forget events; those must not personalise anything."""
        # The tombstone holds the forget's receive time: cut by receive order, like the window.
        cut = self.forgotten_ts_ms
        return [e for e in self.activity if cut is None or e.receive_order_ms > cut]


def recent_queries(entries: Sequence[ActivityEntry], limit: int = RECENT_QUERIES) -> list[str]:
    """The newest `limit` distinct search queries, newest first."""
    queries: list[str] = []
    for entry in reversed(entries):
        if entry.type is EventType.SEARCH and entry.query and entry.query.strip() not in queries:
            queries.append(entry.query.strip())
            if len(queries) == limit:
                break
    return queries


def vector_fault(vector: FloatArray, dim: int | None) -> str | None:
    """Why a stored live vector cannot be blended (None when it can); `dim` None skips the width."""
    if vector.ndim != 1 or vector.size == 0:
        return "the live vector is empty"
    if dim is not None and vector.shape != (dim,):
        return (
            f"the live vector has {vector.size} values where the encoder has {dim}: it comes from another "
            "model"
        )
    # One NaN or infinity makes every profile score NaN, and the blended order arbitrary.
    bad = int(np.count_nonzero(~np.isfinite(vector)))
    if bad:
        return f"the live vector holds {bad} of {vector.size} values that are NaN or infinite"
    return None


@dataclass(frozen=True, slots=True)
class SearchProfile:
    """The vector search blends in (None: query-only ranking) and why, in words."""

    vector: FloatArray | None
    why: str

    @property
    def personalised(self) -> bool:
        return self.vector is not None


def unreadable_profile(causes: str) -> SearchProfile:
    return SearchProfile(None, f"stored profile could not be read ({causes}); query ranking only")


def search_profile(
    user_id: str | None,
    signals: UserSignals | None,
    query_vectors: Mapping[str, FloatArray],
    config: SearchConfig,
    dim: int,
) -> SearchProfile:
    """Mix the live vector with the mean of the recent queries' vectors (`recent_query_weight`).

    The live vector already holds the queries at their small event-type weight; mixing them in
    again here lets a search steer the very next one, before the worker has recomputed anything.
    """
    if user_id is None:
        return SearchProfile(None, "no user_id")
    if signals is None:
        return SearchProfile(None, "unknown user")
    if signals.unreadable:
        # Half a profile can mislead: an unreadable forget time could hide a forget, say.
        return unreadable_profile("; ".join(f"{u.kind}: {u.cause}" for u in signals.unreadable))
    vector = signals.vector
    fault = None if vector is None else vector_fault(vector, dim)
    if fault is not None:
        return unreadable_profile(fault)
    queries = recent_queries(signals.usable_activity())
    recent = [query_vectors[q] for q in queries if q in query_vectors] if config.recent_query_weight else []
    has_vector = vector is not None and bool(np.any(vector))
    total = np.zeros(dim, dtype=np.float64)
    if has_vector and vector is not None:
        total += (1.0 - config.recent_query_weight if recent else 1.0) * vector
    if recent:
        total += (config.recent_query_weight if has_vector else 1.0) * np.mean(np.stack(recent), axis=0)
    norm = float(np.linalg.norm(total))
    if norm == 0.0:
        if signals.forgotten_ts_ms is not None:
            return SearchProfile(None, "forgotten user")
        return SearchProfile(None, "unknown user")
    if has_vector:
        why = "live profile and recent searches" if recent else "live profile"
    else:
        why = "recent searches"
    return SearchProfile((total / norm).astype(np.float32), why)


# --- ranking ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchHit:
    item_id: str
    title: str | None
    score: float  # what the results are ordered by
    query_score: float  # cosine of query and item
    profile_score: float | None  # cosine of search profile and item; None when not personalised
    reason: str | None  # "because you viewed X"; None when not personalised or nothing to point at

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "score": round(self.score, 6),
            "query_score": round(self.query_score, 6),
            "profile_score": None if self.profile_score is None else round(self.profile_score, 6),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: str
    user_id: str | None
    personalised: bool
    why: str
    blend_weight: float
    items: tuple[SearchHit, ...]
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "user_id": self.user_id,
            "personalised": self.personalised,
            "why": self.why,
            "blend_weight": self.blend_weight,
            "items": [hit.to_dict() for hit in self.items],
            "model_version": self.model_version,
        }


def blend_order(query_scores: FloatArray, profile_scores: FloatArray | None, weight: float) -> IntArray:
    """Positions of the candidates, best first, by ``(1 - weight) * query + weight * profile``.

    Candidates arrive in query order, and ties keep that order, so no profile (or weight 0) returns
    them unchanged: exactly the query-only ranking.
    """
    positions = np.arange(len(query_scores), dtype=np.intp)
    if profile_scores is None or weight <= 0.0:
        return positions
    blended = (1.0 - weight) * query_scores.astype(np.float64) + weight * profile_scores.astype(np.float64)
    order: IntArray = np.lexsort((positions, -blended)).astype(np.intp)
    return order


def query_candidates(
    query_vectors: FloatArray, catalogue: ItemCatalogue, pool: int
) -> list[tuple[IntArray, FloatArray]]:
    """Per query, the `pool` in-stock items most similar to it: (catalogue rows, cosines), best first."""
    # The index's prepared form (int8 prefilter on large catalogues) when the catalogue has one.
    items = catalogue.prepared if isinstance(catalogue, PreparedCatalogue) else catalogue.vectors
    ranked = top_k(query_vectors, items, catalogue.ids, pool, in_stock=catalogue.in_stock)
    out = []
    for pairs in ranked:
        rows = np.asarray([catalogue.row(item_id) for item_id, _ in pairs], dtype=np.intp)
        out.append((rows, np.asarray([score for _, score in pairs], dtype=np.float32)))
    return out


def activity_anchors(
    entries: Sequence[ActivityEntry],
    catalogue: ItemCatalogue,
    query_vectors: Mapping[str, FloatArray],
    exclude_query: str | None = None,
) -> tuple[list[Anchor], FloatArray]:
    """One anchor per distinct known item or encoded query of the activity, newest first.

    The query being searched is left out: "because you searched 'x'" says nothing when x is
    what the user just typed.
    """
    anchors: list[Anchor] = []
    vectors: list[FloatArray] = []
    seen: set[tuple[str, str]] = set()
    for entry in reversed(entries):
        if entry.item_id is not None:
            row, title = catalogue.row(entry.item_id), catalogue.title(entry.item_id)
            if row is None or not title or ("item", entry.item_id) in seen:
                continue
            seen.add(("item", entry.item_id))
            anchors.append(Anchor(entry.event_id, entry.type, title))
            vectors.append(catalogue.vectors[row])
        elif entry.type is EventType.SEARCH and entry.query:
            query = entry.query.strip()
            if query == exclude_query or query not in query_vectors or ("query", query) in seen:
                continue
            seen.add(("query", query))
            anchors.append(Anchor(entry.event_id, entry.type, query))
            vectors.append(query_vectors[query])
    dim = catalogue.vectors.shape[1]
    stacked = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dim)
    return anchors, stacked


def rank_search(
    *,
    query: str,
    query_vector: FloatArray,
    profile: SearchProfile,
    catalogue: ItemCatalogue,
    k: int,
    config: SearchConfig,
    anchors: Sequence[Anchor] = (),
    anchor_vectors: FloatArray | None = None,
) -> list[SearchHit]:
    """Retrieve by query, re-rank by the blend, explain the top k."""
    rows, query_scores = query_candidates(query_vector[None, :], catalogue, max(config.candidates, k))[0]
    vectors = catalogue.vectors[rows]
    profile_scores = None if profile.vector is None else (vectors @ profile.vector).astype(np.float32)
    order = blend_order(query_scores, profile_scores, config.blend_weight)[:k]
    weight = config.blend_weight if profile_scores is not None else 0.0
    reasons: list[Anchor | None] = [None] * len(order)
    if profile_scores is not None and anchors and anchor_vectors is not None:
        reasons = explain(vectors[order], anchor_vectors, anchors)
    hits = []
    for pos, reason in zip(order, reasons, strict=True):
        q_score = float(query_scores[pos])
        p_score = None if profile_scores is None else float(profile_scores[pos])
        item_id = catalogue.ids[int(rows[pos])]
        hits.append(
            SearchHit(
                item_id=item_id,
                title=catalogue.title(item_id),
                score=q_score if p_score is None else (1.0 - weight) * q_score + weight * p_score,
                query_score=q_score,
                profile_score=p_score,
                reason=reason.reason if reason is not None else None,
            )
        )
    return hits
