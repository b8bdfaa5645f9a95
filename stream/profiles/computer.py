"""From windows to recommendations: profile text -> user vector -> top-K -> MMR -> reasons.

One `ProfileComputer` serves the stream worker and the offline recomputation, so the two can
only differ by the events they were given. No I/O here; the encoder and the item catalogue come
in through their protocols.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from models.encoder.cooccurrence import CatalogueNeighbours
from models.encoder.onnx_encoder import TextEncoder
from models.encoder.sequence_tower import SEQUENCE_MANIFEST, SequenceInputs, sequence_features
from models.encoder.sessions import CatalogueSessions
from models.index.topk import Boost, PreparedItems, prepare_items, top_k_ranked
from stream.core.errors import ConfigError
from stream.core.events import EventType
from stream.core.prior import has_prior, popularity_prior, ranking_matrix, widen_users
from stream.core.profile_text import build_profile_text
from stream.core.ranking import Anchor, mmr_order, nearest_anchors
from stream.core.records import Recommendation, UserProfile
from stream.core.settings import Settings
from stream.core.window import Window, WindowConfig, event_weights, window_version
from stream.profiles.query_cache import QueryVectorCache

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
UserVectorMode = Literal["text", "items", "hybrid", "sequence", "last_item"]
BoolArray = npt.NDArray[np.bool_]

# Distinct search queries whose vectors a worker keeps (384 floats each: about 15 MB).
QUERY_CACHE_SIZE = 10_000

# MMR re-ranks a pool this many times larger than K, so it has something to diversify with.
MMR_POOL_FACTOR = 4


class UserTower(Protocol):
    """The sequence user tower (`models.encoder.sequence_tower.SequenceTower`, or a test fake)."""

    @property
    def max_length(self) -> int: ...

    @property
    def version(self) -> str: ...

    def encode(self, inputs: SequenceInputs) -> FloatArray: ...

    def item_vectors(self, ids: Sequence[str], vectors: FloatArray) -> FloatArray:
        """The item vectors the tower reads and ranks against (the index's, with its learned
        per-item residuals applied; the same array when it has none)."""
        ...

    def neighbours_for(self, ids: Sequence[str]) -> CatalogueNeighbours | None:
        """The tower's item co-occurrence lists in the catalogue's rows, with the fusion weight
        they were measured with (None: the tower's score alone)."""
        ...

    def sessions_for(self, ids: Sequence[str]) -> CatalogueSessions | None:
        """The tower's training sessions in the catalogue's rows, with the fusion weight they were
        measured with (None: no session term)."""
        ...


class ItemCatalogue(Protocol):
    """What the stream needs of the item index: vectors, stock, and text for explanations."""

    @property
    def ids(self) -> Sequence[str]: ...

    @property
    def vectors(self) -> FloatArray: ...

    @property
    def in_stock(self) -> BoolArray: ...

    @property
    def popularity(self) -> FloatArray: ...  # per item, >= 0 (0: unknown); see stream.core.prior

    def row(self, item_id: str) -> int | None: ...

    def title(self, item_id: str) -> str | None: ...


@runtime_checkable
class PreparedCatalogue(Protocol):
    """A catalogue that already holds its `prepare_items` form (built when the index loads)."""

    @property
    def prepared(self) -> PreparedItems: ...


class _TowerCatalogue:
    """A catalogue seen through a sequence tower: the same items, with the tower's item vectors
    (`UserTower.item_vectors`), so the tower's input, the ranking, MMR and the reasons all use the
    vectors it was trained with."""

    def __init__(self, catalogue: ItemCatalogue, vectors: FloatArray) -> None:
        self._catalogue = catalogue
        self._vectors = vectors

    @property
    def ids(self) -> Sequence[str]:
        return self._catalogue.ids

    @property
    def vectors(self) -> FloatArray:
        return self._vectors

    @property
    def in_stock(self) -> BoolArray:
        return self._catalogue.in_stock

    @property
    def popularity(self) -> FloatArray:
        return self._catalogue.popularity

    def row(self, item_id: str) -> int | None:
        return self._catalogue.row(item_id)

    def title(self, item_id: str) -> str | None:
        return self._catalogue.title(item_id)


def _normalise(vectors: FloatArray) -> FloatArray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: FloatArray = (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)
    return normalised


def user_vector_mode(settings: Settings) -> UserVectorMode:
    """The served user vector: `settings.user_vector`, where ``auto`` (the default) is the best
    measured mode the install can serve: ``sequence`` when a trained tower is in
    `settings.sequence_model_dir`, else ``last_item`` (the best zero-shot mode; see models/README.md)."""
    if settings.user_vector != "auto":
        return settings.user_vector
    has_tower = (Path(settings.sequence_model_dir) / SEQUENCE_MANIFEST).is_file()
    return "sequence" if has_tower else "last_item"


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    window: WindowConfig
    top_k: int = 20
    mmr_lambda: float = 1.0
    max_profile_chars: int = 2048
    # "text": encode the profile text (the article's user tower); "items": decayed mean of the
    # window's item (and query) vectors, no encoder call per user; "hybrid": a normalised mix;
    # "sequence": the trained tower over the window's item and query vectors (needs a tower);
    # "last_item": the vector of the window's newest item (or search query) alone.
    user_vector: UserVectorMode = "items"
    text_weight: float = 0.5
    # Weight of the popularity prior added to every recommendation score (stream.core.prior); 0: none.
    popularity_weight: float = 0.0
    # Never recommend an item the window holds a purchase of; false: repeat purchases may be.
    exclude_purchased: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> ProfileConfig:
        return cls(
            window=WindowConfig.from_settings(settings),
            top_k=settings.top_k,
            mmr_lambda=settings.mmr_lambda,
            # Generous: the encoder truncates to its token limit; this only bounds the string.
            max_profile_chars=settings.encoder_max_length * 8,
            user_vector=user_vector_mode(settings),
            text_weight=settings.hybrid_text_weight,
            popularity_weight=settings.popularity_weight,
            exclude_purchased=settings.exclude_purchased,
        )


@dataclass(frozen=True, slots=True)
class Timings:
    encode_ms: float  # profile texts, encoder call, user vectors
    rank_ms: float  # top-K, MMR, reasons, payload records


@dataclass(frozen=True, slots=True)
class _Anchors:
    """A window's distinct indexed items and queries, newest first, as parallel lists.

    An `Anchor` record is made only for the few a recommendation is explained by: making one per
    item and user was a tenth of the ranking time (cProfile, `items` mode).
    """

    event_ids: list[str] = field(default_factory=list)
    types: list[EventType] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # the item's title or the query
    item_rows: list[int | None] = field(default_factory=list)  # catalogue row; None for a query
    queries: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def anchor(self, position: int) -> Anchor:
        return Anchor(self.event_ids[position], self.types[position], self.labels[position])


def _anchors(window: Window, rows: Sequence[int | None], catalogue: ItemCatalogue) -> _Anchors:
    """One anchor per distinct item or query of the window, newest first; `rows` are the window
    events' catalogue rows (None: no indexed item)."""
    # Per user and batch over every window event: the lookups are bound once (about 8 % of the
    # batch's compute went here, py-spy; issue 19 part 8).
    items_seen: set[str] = set()
    queries_seen: set[str] = set()
    title_of = catalogue.title
    result = _Anchors()
    event_ids, types, labels = result.event_ids, result.types, result.labels
    item_rows, queries = result.item_rows, result.queries
    for event, row in zip(reversed(window.events), reversed(rows), strict=True):
        item_id = event.item_id
        if item_id is not None:
            if row is None or item_id in items_seen:
                continue
            title = title_of(item_id)
            if not title:
                continue
            items_seen.add(item_id)
            label, query = title, None
        elif event.type is EventType.SEARCH and (query := event.query) and query not in queries_seen:
            queries_seen.add(query)
            label = query
        else:
            continue
        event_ids.append(event.event_id)
        types.append(event.type)
        labels.append(label)
        item_rows.append(row)
        queries.append(query)
    return result


def _purchased_rows(window: Window, rows: Sequence[int | None]) -> set[int]:
    """The catalogue rows of the window's purchased items (`purchased_items`); `rows` are the
    window events' catalogue rows."""
    return {
        row
        for event, row in zip(window.events, rows, strict=True)
        if row is not None and event.type is EventType.PURCHASE and event.item_id
    }


def _sparse_terms(
    neighbours: CatalogueNeighbours | None,
    sessions: CatalogueSessions | None,
    event_rows: Sequence[Sequence[int | None]],
) -> list[tuple[npt.NDArray[np.int64], FloatArray]]:
    """The sparse terms the ranking adds for each window whose events have catalogue rows
    `event_rows` (oldest first; None: no indexed item): the kNN term times its fusion weight plus
    the session term (its weight applied), summed per row in float32. Sessions are scored for the
    whole batch at once; a window's terms do not depend on the rest of the batch."""
    histories = [[row for row in reversed(rows) if row is not None] for rows in event_rows]
    knn: list[tuple[npt.NDArray[np.int64], FloatArray]] = []
    if neighbours is not None:
        weight = np.float32(neighbours.fusion_weight)
        for history in histories:
            item_rows, values = neighbours.scores(history)
            knn.append((item_rows, (values * weight).astype(np.float32)))
    if sessions is None:
        return knn
    session_terms = sessions.scores_batch(histories)
    if neighbours is None:
        return session_terms
    merged_terms = []
    for (knn_rows, knn_values), (session_rows, session_values) in zip(knn, session_terms, strict=True):
        if not len(session_rows):
            merged_terms.append((knn_rows, knn_values))
            continue
        merged, inverse = np.unique(np.concatenate([knn_rows, session_rows]), return_inverse=True)
        summed = np.zeros(len(merged), dtype=np.float32)
        np.add.at(summed, inverse, np.concatenate([knn_values, session_values]))
        merged_terms.append((merged.astype(np.int64), summed))
    return merged_terms


class ProfileComputer:
    def __init__(
        self,
        encoder: TextEncoder,
        catalogue: ItemCatalogue,
        config: ProfileConfig,
        tower: UserTower | None = None,
    ) -> None:
        if config.user_vector == "sequence" and tower is None:
            raise ConfigError(
                "PROFILESTREAM_USER_VECTOR=sequence needs the sequence tower: train one with "
                "`profilestream train DATASET --out DIR` and set PROFILESTREAM_SEQUENCE_MODEL_DIR=DIR"
            )
        self.encoder = encoder
        self.config = config
        self.tower = tower if config.user_vector == "sequence" else None
        if self.tower is not None:
            adjusted = self.tower.item_vectors(catalogue.ids, catalogue.vectors)
            if adjusted is not catalogue.vectors:
                catalogue = _TowerCatalogue(catalogue, adjusted)
        self.catalogue = catalogue
        # The co-occurrence (item-kNN) and session terms the tower's export carries, added to the
        # ranking score.
        self.neighbours = self.tower.neighbours_for(catalogue.ids) if self.tower is not None else None
        self.sessions = self.tower.sessions_for(catalogue.ids) if self.tower is not None else None
        # Profiles name both models when the tower makes the user vector.
        self.model_version = (
            f"{encoder.model_version}+{self.tower.version}"
            if self.tower is not None
            else encoder.model_version
        )
        # The ranking form of the item matrix (int8 prefilter on large catalogues), built once;
        # widened by the popularity prior's column when there is a prior.
        prior = popularity_prior(catalogue.popularity, config.popularity_weight)
        if has_prior(prior):
            self._ranking_items = prepare_items(ranking_matrix(catalogue.vectors, prior))
        elif isinstance(catalogue, PreparedCatalogue):
            self._ranking_items = catalogue.prepared
        else:
            self._ranking_items = prepare_items(catalogue.vectors)
        self._query_vectors = QueryVectorCache(encoder, QUERY_CACHE_SIZE)

    def profile_text(self, window: Window) -> str:
        return build_profile_text(
            window, self.config.window, self.catalogue.title, max_chars=self.config.max_profile_chars
        )

    def compute(self, windows: Sequence[tuple[str, Window]]) -> list[UserProfile]:
        """Profiles for the users whose window yields a profile text; others are left out
        (they have nothing the encoder could read, and lookups fall back to popular items)."""
        return self.compute_timed(windows)[0]

    def compute_timed(self, windows: Sequence[tuple[str, Window]]) -> tuple[list[UserProfile], Timings]:
        """`compute`, and how long encoding and ranking took (for the worker's metrics)."""
        started = time.perf_counter()
        mode = self.config.user_vector
        users: list[tuple[str, Window, str]] = []
        anchors: list[_Anchors] = []
        event_rows: list[list[int | None]] = []  # per user, each window event's catalogue row
        row_of = self.catalogue.row
        for user_id, window in windows:
            if window.newest is None:
                continue
            rows = [row_of(e.item_id) if e.item_id is not None else None for e in window.events]
            user_anchors = _anchors(window, rows, self.catalogue)
            # The items vector only reads indexed items and queries (the anchors); building the
            # text just to see that it is not empty cost a tenth of the batch.
            text = self.profile_text(window) if mode in ("text", "hybrid") else ""
            if text or (mode in ("items", "sequence", "last_item") and len(user_anchors)):
                users.append((user_id, window, text))
                anchors.append(user_anchors)
                event_rows.append(rows)
        if not users:
            return [], Timings(0.0, 0.0)
        queries = sorted({q for a in anchors for q in a.queries if q is not None})
        texts = [text for _, _, text in users] if mode in ("text", "hybrid") else []
        query_vectors = self._query_vectors.lookup(queries)
        new_queries = [q for q in queries if q not in query_vectors]
        # One encoder call for the profile texts and the queries not seen lately.
        encoded = self.encoder.encode(texts + new_queries)
        self._query_vectors.remember(new_queries, encoded[len(texts) :])
        query_vectors.update(zip(new_queries, encoded[len(texts) :], strict=True))
        if mode == "text":
            user_vectors = encoded[: len(texts)]
        elif mode == "last_item":
            # Anchors are newest first: the newest item or query of each window.
            user_vectors = np.stack(
                [
                    self.catalogue.vectors[a.item_rows[0]]
                    if a.item_rows[0] is not None
                    else query_vectors[a.queries[0] or ""]
                    for a in anchors
                ]
            ).astype(np.float32)
        elif self.tower is not None:
            # One batched tower call for every changed user (unknown items are skipped).
            inputs = sequence_features(
                [window for _, window, _ in users],
                self.catalogue.row,
                self.catalogue.vectors,
                query_vectors,
                self.tower.max_length,
            )
            user_vectors = self.tower.encode(inputs)
        else:
            behaviour = _normalise(
                np.stack(
                    [
                        self._behaviour_sum(window, rows, query_vectors)
                        for (_, window, _), rows in zip(users, event_rows, strict=True)
                    ]
                ).astype(np.float32)
            )
            if mode == "items":
                user_vectors = behaviour
            else:
                alpha = self.config.text_weight
                user_vectors = _normalise(alpha * encoded[: len(texts)] + (1.0 - alpha) * behaviour)

        encoded_at = time.perf_counter()
        pool = self.config.top_k if self.config.mmr_lambda >= 1.0 else self.config.top_k * MMR_POOL_FACTOR
        exclusions = [
            _purchased_rows(window, rows) if self.config.exclude_purchased else set()
            for (_, window, _), rows in zip(users, event_rows, strict=True)
        ]
        widened = widen_users(user_vectors, self._ranking_items.vectors.shape[1])
        # Catalogue rows, not ids, from here to the payload: mapping ids back to rows cost a
        # dict lookup per candidate.
        ranked = top_k_ranked(
            widened,
            self._ranking_items,
            pool,
            in_stock=self.catalogue.in_stock,
            exclude=exclusions,
            boost=self._cooccurrence_boost(event_rows),
        )
        profiles = [
            self._profile(
                user_id=user_id,
                window=window,
                vector=user_vectors[i],
                candidates=ranked.user(i),
                anchors=anchors[i],
                query_vectors=query_vectors,
            )
            for i, (user_id, window, _) in enumerate(users)
        ]
        done = time.perf_counter()
        return profiles, Timings(encode_ms=(encoded_at - started) * 1000, rank_ms=(done - encoded_at) * 1000)

    @property
    def has_boost(self) -> bool:
        """Whether the ranking adds sparse terms (the tower's neighbour lists or sessions)."""
        return self.neighbours is not None or self.sessions is not None

    def cooccurrence(self, window: Window) -> tuple[npt.NDArray[np.int64], FloatArray] | None:
        """The co-occurrence terms the ranking adds for this window (kNN and sessions), already
        weighted: the catalogue rows they are non-zero for and their summed values (None: neither
        lists nor sessions). Reads the window's newest item events, newest first."""
        if not self.has_boost:
            return None
        rows = [self.catalogue.row(e.item_id) if e.item_id is not None else None for e in window.events]
        return _sparse_terms(self.neighbours, self.sessions, [rows])[0]

    def _cooccurrence_boost(self, event_rows: Sequence[Sequence[int | None]]) -> Boost | None:
        """The co-occurrence term of each user's window as the ranking's boost (None: no neighbour
        lists); `event_rows` are each window's events' catalogue rows, as `compute` looked them up.

        The term is >= 0 and non-zero only on the window items' neighbours; `top_k_rows` adds it
        to the tower's score (with the prior) in float32 before ranking, so the ranking is the
        exact top-K of the fused score, ties to the lower catalogue row."""
        if not self.has_boost:
            return None
        terms = _sparse_terms(self.neighbours, self.sessions, event_rows)
        item_rows = [rows for rows, _ in terms] or [np.empty(0, np.int64)]
        values = [term for _, term in terms] or [np.empty(0, np.float32)]
        return Boost(
            user_rows=np.repeat(np.arange(len(terms), dtype=np.intp), [len(rows) for rows, _ in terms]),
            item_rows=np.concatenate(item_rows).astype(np.intp),
            values=np.concatenate(values).astype(np.float32),
        )

    def _behaviour_sum(
        self, window: Window, rows: Sequence[int | None], query_vectors: dict[str, FloatArray]
    ) -> npt.NDArray[np.float64]:
        """The decayed, type-weighted sum of the window's item and query vectors (normalised by
        the caller, for all users at once); `rows` are the events' catalogue rows."""
        item_rows: list[int] = []
        row_weights: list[float] = []
        total = np.zeros(self.catalogue.vectors.shape[1], dtype=np.float64)
        weights = event_weights(window, self.config.window)
        for event, row, weight in zip(window.events, rows, weights, strict=True):
            if row is not None:
                item_rows.append(row)
                row_weights.append(weight)
            elif event.item_id is None and event.query is not None and event.query in query_vectors:
                total += weight * query_vectors[event.query]
        if item_rows:
            # One gather and one product instead of a numpy call per event.
            total += np.asarray(row_weights, dtype=np.float64) @ self.catalogue.vectors[item_rows].astype(
                np.float64
            )
        return total

    def _profile(
        self,
        *,
        user_id: str,
        window: Window,
        vector: FloatArray,
        candidates: tuple[npt.NDArray[np.intp], FloatArray],
        anchors: _Anchors,
        query_vectors: dict[str, FloatArray],
    ) -> UserProfile:
        rows, scores = candidates
        item_vectors = (
            self.catalogue.vectors[rows] if len(rows) else np.zeros((0, vector.shape[0]), np.float32)
        )
        if self.config.mmr_lambda < 1.0:
            order = mmr_order(scores, item_vectors, self.config.top_k, self.config.mmr_lambda)
            rows, scores, item_vectors = rows[order], scores[order], item_vectors[order]
        # else the candidates are the top-K already, best first, ties by row: MMR's order at lambda 1.
        chosen_vectors = item_vectors
        if None in anchors.item_rows:
            # One gather for the items, then the queries' rows filled in.
            anchor_vectors = self.catalogue.vectors[
                np.asarray([row or 0 for row in anchors.item_rows], dtype=np.int64)
            ].astype(np.float32, copy=False)
            for position, (row, query) in enumerate(zip(anchors.item_rows, anchors.queries, strict=True)):
                if row is None:
                    anchor_vectors[position] = query_vectors[query or ""]
        else:
            anchor_vectors = self.catalogue.vectors[np.asarray(anchors.item_rows, dtype=np.int64)]
        nearest = nearest_anchors(chosen_vectors, anchor_vectors)
        # Each anchor's sentence once, however many items it explains.
        sentences = {position: anchors.anchor(position).reason for position in set(nearest or ())}
        reasons: list[str | None] = [sentences[p] for p in nearest] if nearest else [None] * len(rows)
        chosen_rows, chosen_scores = rows.tolist(), scores.tolist()
        newest = window.newest
        assert newest is not None
        ids = self.catalogue.ids
        return UserProfile(
            user_id=user_id,
            # Positional: a frozen dataclass takes keywords a third slower, 20 per user.
            items=tuple(
                [
                    Recommendation(ids[row], score, reason)
                    for row, score, reason in zip(chosen_rows, chosen_scores, reasons, strict=True)
                ]
            ),
            vector=vector,
            model_version=self.model_version,
            window_version=window_version(window),
            window_newest_ts_ms=newest.ts_ms,
            window_newest_event_id=newest.event_id,
            window_newest_received_ms=max([e.received_ms for e in window.events]),
        )
