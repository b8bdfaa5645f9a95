"""Session neighbours (V-SKNN, "what similar shoppers bought next") that a sequence tower carries
to the stream.

The term, after Ludewig & Jannach, "Evaluation of session-based recommendation algorithms" (User
Modeling and User-Adapted Interaction 28, 2018: SKNN and its sequence-aware variant V-SKNN), with
one change measured on amazon-office (models/README.md, "Round 7"): only what a neighbour bought
AFTER the items it shares with the user counts.

- The window's newest `MAX_QUERY_EVENTS` item events (catalogue rows, newest first, L of them)
  weigh ``(L - age) / L`` each (V-SKNN's linear weights; an item seen twice keeps its newest
  weight).
- Similarity to a stored session (a training user's items, oldest first) is the cosine between
  those weights and the session's distinct items (a 0/1 vector): ``sum of the shared items'
  weights / (norm of the weights x sqrt(distinct items of the session))``.
- The `neighbours` most similar sessions (ties: the earlier stored session) each add
  ``similarity x follow_decay**(steps - 1)`` to every item ``steps >= 1`` positions after the
  session's last item shared with the window; items at or before it add nothing. Plain SKNN,
  which scores every item of a neighbour, mostly boosts the window's own items again
  (round 7: no gain), which the "follow" form avoids.
- The term is divided by its largest value (so it lies in (0, 1]) and multiplied by the fusion
  weight; the ranking adds it to the tower's score with the prior and the kNN term.

The sessions are the training data's allowed sequences (`profilestream train`: never a target of
the evaluated split), without user ids: a window's own user may be among its neighbours. They are
frozen in the export (``item_sessions.npz``, listed with its sha256 in the tower's manifest), so
the worker, the offline recomputation and `profilestream evaluate` score with the same sessions
and online equals offline. A ``forget`` request does not reach into them: retraining drops a
forgotten user's sequence (see stream/worker/README.md, privacy).

Bounds: a session keeps its newest `MAX_SESSION_ITEMS` items; an item's posting list (the sessions
holding it) its last `MAX_SESSIONS_PER_ITEM` sessions; a window reads `MAX_QUERY_EVENTS` items,
so the work per window is at most MAX_QUERY_EVENTS x MAX_SESSIONS_PER_ITEM similarities and
`neighbours` x MAX_SESSION_ITEMS additions.

Pure numpy: the worker imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.encoder.manifest import listed_file, sha256_file
from stream.core.errors import ModelError

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

SESSIONS_FILE = "item_sessions.npz"
# Chosen on the valid rows and the later half of them, then checked once on test (models/README.md,
# "Round 7"): fusion weight 0.15, 200 neighbour sessions, a follow decay of 0.8 per step.
DEFAULT_SESSION_WEIGHT = 0.15
DEFAULT_SESSION_NEIGHBOURS = 200
DEFAULT_FOLLOW_DECAY = 0.8
# The window's newest item events the term reads (round 7 measured 10).
MAX_QUERY_EVENTS = 10
# Stored per session and per item: bounds of the per-window work (module docstring).
MAX_SESSION_ITEMS = 50
MAX_SESSIONS_PER_ITEM = 500


@dataclass(frozen=True)
class ItemSessions:
    """Stored sessions by item id, in compressed rows: session ``s`` is ``ids[items[indptr[s]:
    indptr[s + 1]]]``, oldest first."""

    ids: tuple[str, ...]
    indptr: IntArray  # (sessions + 1,)
    items: IntArray  # positions into `ids`

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def session(self, n: int) -> list[str]:
        return [self.ids[int(i)] for i in self.items[int(self.indptr[n]) : int(self.indptr[n + 1])]]

    def for_catalogue(
        self,
        catalogue_ids: Sequence[str],
        *,
        weight: float,
        neighbours: int = DEFAULT_SESSION_NEIGHBOURS,
        follow_decay: float = DEFAULT_FOLLOW_DECAY,
    ) -> CatalogueSessions:
        """The sessions in a catalogue's row numbers: items the catalogue lacks are dropped (they
        can be neither in a window nor recommended), sessions left empty too."""
        rows = {item_id: row for row, item_id in enumerate(catalogue_ids)}
        mapped = np.asarray([rows.get(item_id, -1) for item_id in self.ids], dtype=np.int64)
        sessions: list[IntArray] = []
        for n in range(len(self)):
            kept = mapped[self.items[int(self.indptr[n]) : int(self.indptr[n + 1])]]
            kept = kept[kept >= 0][-MAX_SESSION_ITEMS:]
            if len(kept):
                sessions.append(kept)
        indptr = np.zeros(len(sessions) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(s) for s in sessions])
        items = np.concatenate(sessions) if sessions else np.empty(0, np.int64)
        distinct = [np.unique(s) for s in sessions]
        # Posting lists: per catalogue row, the sessions holding it (each once), the last ones kept.
        postings: list[list[int]] = [[] for _ in catalogue_ids]
        for n, rows_of_session in enumerate(distinct):
            for row in rows_of_session.tolist():
                postings[row].append(n)
        item_indptr = np.zeros(len(catalogue_ids) + 1, dtype=np.int64)
        item_indptr[1:] = np.cumsum([min(len(p), MAX_SESSIONS_PER_ITEM) for p in postings])
        flat = [n for p in postings for n in p[-MAX_SESSIONS_PER_ITEM:]]
        return CatalogueSessions(
            indptr=indptr,
            items=items,
            sizes=np.asarray([len(d) for d in distinct], dtype=np.float64),
            item_indptr=item_indptr,
            item_sessions=np.asarray(flat, dtype=np.int64),
            neighbours=neighbours,
            follow_decay=follow_decay,
            fusion_weight=weight,
        )


@dataclass(frozen=True)
class CatalogueSessions:
    """Stored sessions in catalogue rows with their posting lists, ready to score windows; the
    ranking adds ``scores(...)`` (the fusion weight applied) to the tower's score."""

    indptr: IntArray  # (sessions + 1,)
    items: IntArray  # catalogue rows, oldest first per session
    sizes: npt.NDArray[np.float64]  # distinct items per session
    item_indptr: IntArray  # (catalogue rows + 1,)
    item_sessions: IntArray  # per catalogue row, the sessions holding it
    neighbours: int
    follow_decay: float
    fusion_weight: float

    def scores(self, history_newest_first: Sequence[int]) -> tuple[IntArray, FloatArray]:
        """The session term of a history (catalogue rows, newest first; `MAX_QUERY_EVENTS` read):
        the rows it is non-zero for (ascending) and their values, the fusion weight applied."""
        return self.scores_batch([history_newest_first])[0]

    def scores_batch(self, histories: Sequence[Sequence[int]]) -> list[tuple[IntArray, FloatArray]]:
        """`scores` of each history, computed for the whole batch at once (a fixed number of numpy
        calls per batch, not per user: 0.5 ms a user the other way). A user's values do not depend
        on the rest of the batch: every sum runs over that user's own terms, in the same order."""
        users = len(histories)
        query_user, query_row, query_weight = _queries(histories)
        if not len(query_row):
            return [_EMPTY] * users
        norm = np.sqrt(np.bincount(query_user, weights=np.square(query_weight), minlength=users))
        # Similarity of each (user, session) sharing an item: the shared items' weights, summed.
        starts = self.item_indptr[query_row]
        counts = self.item_indptr[query_row + 1] - starts
        held = self.item_sessions[_ranges(starts, counts)]
        n_sessions = len(self.sizes)
        keys, inverse = np.unique(np.repeat(query_user, counts) * n_sessions + held, return_inverse=True)
        shared = np.bincount(inverse, weights=np.repeat(query_weight, counts), minlength=len(keys))
        pair_user, pair_session = keys // n_sessions, keys % n_sessions
        similarity = shared / (norm[pair_user] * np.sqrt(self.sizes[pair_session]))
        # Each user's `neighbours` most similar sessions, ties to the earlier session.
        order = np.lexsort((pair_session, -similarity, pair_user))
        pair_user, pair_session, similarity = pair_user[order], pair_session[order], similarity[order]
        rank = np.arange(len(pair_user)) - np.searchsorted(pair_user, pair_user, side="left")
        keep = rank < self.neighbours
        pair_user, pair_session, similarity = pair_user[keep], pair_session[keep], similarity[keep]
        # The neighbours' items, position by position; what follows the last shared item scores.
        lengths = self.indptr[pair_session + 1] - self.indptr[pair_session]
        owner = np.repeat(np.arange(len(pair_session)), lengths)
        offset = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        items = self.items[self.indptr[pair_session][owner] + offset]
        item_user = pair_user[owner]
        n_rows = len(self.item_indptr) - 1
        is_shared = np.isin(item_user * n_rows + items, query_user * n_rows + query_row)
        last_shared = np.full(len(pair_session), -1, dtype=np.int64)
        np.maximum.at(last_shared, owner[is_shared], offset[is_shared])
        steps = offset - last_shared[owner]
        after = steps > 0
        contributions = similarity[owner[after]] * np.power(self.follow_decay, steps[after] - 1)
        out_keys, inverse = np.unique(item_user[after] * n_rows + items[after], return_inverse=True)
        values = np.bincount(inverse, weights=contributions, minlength=len(out_keys)).astype(np.float64)
        return _per_user(out_keys // n_rows, out_keys % n_rows, values, users, self.fusion_weight)


_EMPTY: tuple[IntArray, FloatArray] = (np.empty(0, np.int64), np.empty(0, np.float32))


def _queries(
    histories: Sequence[Sequence[int]],
) -> tuple[IntArray, IntArray, npt.NDArray[np.float64]]:
    """Per history, its distinct rows among the newest MAX_QUERY_EVENTS with their linear weights
    (an item seen twice keeps its newest weight): (user, row, weight) triplets of the batch."""
    users: list[int] = []
    rows: list[int] = []
    weights: list[float] = []
    for user, history_newest_first in enumerate(histories):
        history = list(history_newest_first[:MAX_QUERY_EVENTS])
        weight_of: dict[int, float] = {}
        for age, row in enumerate(history):
            weight_of.setdefault(row, (len(history) - age) / len(history))
        users.extend([user] * len(weight_of))
        rows.extend(weight_of)
        weights.extend(weight_of.values())
    return (
        np.asarray(users, dtype=np.int64),
        np.asarray(rows, dtype=np.int64),
        np.asarray(weights, dtype=np.float64),
    )


def _per_user(
    user: IntArray, row: IntArray, values: npt.NDArray[np.float64], users: int, weight: float
) -> list[tuple[IntArray, FloatArray]]:
    """Each user's (rows, values), divided by that user's largest value, times `weight`;
    `user` is sorted (the keys were)."""
    bounds = np.searchsorted(user, np.arange(users + 1))
    result: list[tuple[IntArray, FloatArray]] = []
    for n in range(users):
        first, last = int(bounds[n]), int(bounds[n + 1])
        if first == last:
            result.append(_EMPTY)
            continue
        part = values[first:last]
        result.append((row[first:last].astype(np.int64), (part / part.max() * weight).astype(np.float32)))
    return result


def _ranges(starts: IntArray, counts: IntArray) -> IntArray:
    """The concatenation of ``arange(start, start + count)`` for each pair, without a Python loop."""
    total = int(counts.sum())
    ends = np.cumsum(counts)
    return np.repeat(starts - (ends - counts), counts) + np.arange(total)


def build_sessions(user_items: Mapping[str, Sequence[str]], ids: Sequence[str]) -> ItemSessions:
    """Sessions from each user's items, oldest first (training data only), over the items in
    `ids` (others dropped); each keeps its newest MAX_SESSION_ITEMS items. No user id is stored."""
    position = {item_id: n for n, item_id in enumerate(ids)}
    sessions = [
        kept[-MAX_SESSION_ITEMS:]
        for items in user_items.values()
        if (kept := [position[i] for i in items if i in position])
    ]
    indptr = np.zeros(len(sessions) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(s) for s in sessions])
    flat = np.asarray([row for s in sessions for row in s], dtype=np.int64)
    return ItemSessions(tuple(ids), indptr, flat)


def write_sessions(directory: Path, sessions: ItemSessions) -> tuple[str, str]:
    """Write ``item_sessions.npz`` into `directory`; returns (file name, sha256)."""
    path = directory / SESSIONS_FILE
    with path.open("wb") as handle:
        np.savez(
            handle, ids=np.asarray(sessions.ids, dtype=np.str_), indptr=sessions.indptr, items=sessions.items
        )
    return SESSIONS_FILE, sha256_file(path)


def read_sessions(directory: Path, file_name: str, digest: str) -> ItemSessions:
    """The sessions listed in a manifest, checked against its sha256 and their shapes."""
    return load_sessions(listed_file(directory, file_name, SESSIONS_FILE, digest))


def load_sessions(path: Path) -> ItemSessions:
    """``item_sessions.npz`` as written by `write_sessions`, its offsets and positions checked."""
    try:
        with np.load(path, allow_pickle=False) as data:
            ids = tuple(str(i) for i in data["ids"].tolist())
            indptr = data["indptr"].astype(np.int64)
            items = data["items"].astype(np.int64)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}: sessions unreadable ({exc}); re-export the tower") from exc
    consistent = (
        indptr.ndim == 1
        and len(indptr) >= 1
        and indptr[0] == 0
        and indptr[-1] == len(items)
        and bool(np.all(np.diff(indptr) >= 0))
        and (len(items) == 0 or (int(items.min()) >= 0 and int(items.max()) < len(ids)))
    )
    if not consistent:
        raise ModelError(f"{path}: inconsistent offsets or item positions; re-export the tower")
    return ItemSessions(ids, indptr, items)
