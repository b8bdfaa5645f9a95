"""Next-item data of an amazon-office style folder, and the split rule that keeps test targets out.

A folder holds ``items.json`` and the split files ``valid.csv`` and ``test.csv`` (one next-item row
each: ``user_id``, ``history_item_id``, a list of up to 10 earlier items, oldest first, and the
target ``item_id``; rows sorted by the target's time, every valid target before every test one).

What training and the fitted baselines may see when evaluating on ``test`` (the data README's
protocol): the valid rows (histories and targets) and the histories inside ``test.csv``, never a
test target. A user's later test rows carry that user's earlier test targets in their histories
(``history of row k`` = the last 10 items before target k, which include targets 1..k-1), so only
the history of each user's FIRST test row is used: it holds the items from before the test period
and nothing else. Evaluating on ``valid`` follows the same rule one split earlier: only the first
valid row's history of each user.
"""

from __future__ import annotations

import ast
import csv
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from models.index.catalog import CatalogItem, read_amazon_items
from stream.core.errors import SourceError
from stream.core.events import Event, EventType
from stream.core.window import Window, WindowConfig, apply_events

log = logging.getLogger(__name__)

AMAZON_BASE_TS_MS = 1_538_352_000_000  # 2018-10-01T00:00:00Z, inside the reviews' time span
AMAZON_ROW_STEP_MS = 60_000
AMAZON_HISTORY_STEP_MS = 1_000

SPLITS = ("valid", "test")
# The data set's own history length: a pair's context never reaches further back than a row's would.
MAX_HISTORY = 10


@dataclass(frozen=True, slots=True)
class EvalRow:
    user_id: str
    history: tuple[str, ...]
    target: str


def read_rows(path: Path, limit: int | None = None) -> list[EvalRow]:
    """The first `limit` rows (all without one) of an amazon-office split file."""
    if not path.is_file():
        raise SourceError(f"{path}: missing; an amazon-office directory holds test.csv (and valid.csv)")
    rows: list[EvalRow] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for n, row in enumerate(csv.DictReader(handle)):
            if limit is not None and len(rows) >= limit:
                break
            try:
                rows.append(
                    EvalRow(row["user_id"], parse_history(row["history_item_id"]), row["item_id"].strip())
                )
            except (KeyError, AttributeError) as exc:
                raise SourceError(
                    f"{path} row {n + 2}: needs the columns user_id, history_item_id and item_id ({exc})"
                ) from exc
    return rows


def parse_history(text: str) -> tuple[str, ...]:
    """``history_item_id``: a Python-literal list of item ids, oldest first ("" for none)."""
    if not text.strip():
        return ()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise SourceError(f"history_item_id {text[:60]!r} is not a list literal like [3, 17]") from exc
    if not isinstance(value, list | tuple):
        raise SourceError(f"history_item_id {text[:60]!r} is not a list literal like [3, 17]")
    return tuple(str(item) for item in value)


def history_window(history: Sequence[str], config: WindowConfig) -> Window:
    """The window the stream holds after these purchases (one second apart, oldest first)."""
    events = [
        Event(
            f"h{p}", "eval", EventType.PURCHASE, AMAZON_BASE_TS_MS + p * AMAZON_HISTORY_STEP_MS, item_id=item
        )
        for p, item in enumerate(history)
    ]
    return apply_events(Window(), events, config).window


@dataclass(frozen=True, slots=True)
class UserSequence:
    """One user's items in time order that training may see, and where they came from."""

    user_id: str
    items: tuple[str, ...]
    source: str  # "valid rows", "first valid history", "first test history"


@dataclass(frozen=True, slots=True)
class TrainPair:
    """A next-item example: the history (oldest first) and the item that followed it."""

    user_id: str
    history: tuple[str, ...]
    target: str


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    items: dict[str, CatalogItem]  # item id -> item, in items.json order
    rows: dict[str, list[EvalRow]]  # split -> rows in file order


def load_dataset(directory: Path, splits: Sequence[str] = SPLITS, limit: int | None = None) -> Dataset:
    """Read ``items.json`` and the given split files; `limit` keeps the first rows of each split."""
    items_path = directory / "items.json"
    if not items_path.is_file():
        raise SourceError(
            f"{items_path}: missing; a next-item data folder holds items.json, valid.csv and test.csv "
            "(the amazon-office layout, see ../shared/data/README.md)"
        )
    items = {item.item_id: item for item in read_amazon_items(items_path)}
    rows = {split: read_rows(directory / f"{split}.csv", limit) for split in splits}
    return Dataset(directory.name, items, rows)


def _first_rows(rows: Iterable[EvalRow]) -> list[EvalRow]:
    """Each user's earliest row (the files are sorted by target time)."""
    seen: dict[str, EvalRow] = {}
    for row in rows:
        seen.setdefault(row.user_id, row)
    return list(seen.values())


def allowed_sequences(dataset: Dataset, eval_split: str = "test") -> list[UserSequence]:
    """What training and fitted baselines may see when `eval_split` is the one evaluated.

    ``test``: each valid user's first history followed by all of the user's valid targets, plus
    each test user's first test history. ``valid``: only each valid user's first history.
    """
    if eval_split not in SPLITS:
        raise SourceError(f"split {eval_split!r} is not one of {list(SPLITS)}")
    sequences: list[UserSequence] = []
    if eval_split == "test":
        by_user: dict[str, list[EvalRow]] = {}
        for row in dataset.rows.get("valid", []):
            by_user.setdefault(row.user_id, []).append(row)
        for user_id, user_rows in by_user.items():
            items = user_rows[0].history + tuple(row.target for row in user_rows)
            sequences.append(UserSequence(user_id, items, "valid rows"))
    sequences.extend(
        UserSequence(row.user_id, row.history, f"first {eval_split} history")
        for row in _first_rows(dataset.rows.get(eval_split, []))
        if row.history
    )
    return sequences


def training_pairs(sequences: Sequence[UserSequence], max_history: int = MAX_HISTORY) -> list[TrainPair]:
    """Every next-item pair inside the sequences (context: the up to `max_history` items before).

    A valid user's sequence overlaps the same user's first test history (both end with the last
    items before the test period), so duplicates (same user, history and target) are kept once.
    """
    pairs: dict[tuple[str, tuple[str, ...], str], TrainPair] = {}
    for sequence in sequences:
        for position in range(1, len(sequence.items)):
            history = sequence.items[max(0, position - max_history) : position]
            pair = TrainPair(sequence.user_id, history, sequence.items[position])
            pairs.setdefault((pair.user_id, pair.history, pair.target), pair)
    result = list(pairs.values())
    log.info("%d training pairs from %d sequences", len(result), len(sequences))
    return result


def interactions(sequences: Iterable[UserSequence]) -> list[tuple[str, str]]:
    """(user, item) interactions of the sequences; where a user's first test history repeats the
    end of the same user's valid sequence, those interactions count once."""
    counted: dict[str, list[str]] = {}
    for sequence in sequences:
        known = counted.setdefault(sequence.user_id, [])
        # The first test history ends with the user's last valid items: skip the overlap.
        overlap = _overlap(known, sequence.items)
        known.extend(sequence.items[overlap:])
    return [(user, item) for user, items in counted.items() for item in items]


def items_with_popularity(dataset: Dataset, eval_split: str = "test") -> list[CatalogItem]:
    """The catalogue with each item's popularity set to its count among the interactions allowed
    when evaluating `eval_split` (the popularity baseline's counts; never a target of the split)."""
    counts = Counter(item for _, item in interactions(allowed_sequences(dataset, eval_split)))
    return [replace(item, popularity=float(counts[item_id])) for item_id, item in dataset.items.items()]


def _overlap(known: Sequence[str], new: Sequence[str]) -> int:
    """Length of the longest suffix of `known` that is a prefix of `new`."""
    for size in range(min(len(known), len(new)), 0, -1):
        if tuple(known[-size:]) == tuple(new[:size]):
            return size
    return 0


# --- as v1 events, for replay -----------------------------------------------------------------


def amazon_office_docs(
    rows_by_split: Iterable[tuple[str, Iterable[dict[str, str]]]],
) -> Iterator[dict[str, Any]]:
    """v1 documents from amazon-office rows, split by split, in the time order described above."""
    positions: Counter[str] = Counter()
    row_index = 0
    for split, rows in rows_by_split:
        for row in rows:
            user = row["user_id"]
            target_ts_ms = AMAZON_BASE_TS_MS + row_index * AMAZON_ROW_STEP_MS
            row_index += 1
            items: list[tuple[str, int]] = []
            if positions[user] == 0:
                history = _item_list(row.get("history_item_id", ""))
                items = [
                    (item, target_ts_ms - (len(history) - p) * AMAZON_HISTORY_STEP_MS)
                    for p, item in enumerate(history)
                ]
            items.append((str(row["item_id"]).strip(), target_ts_ms))
            for item, ts_ms in items:
                position = positions[user]
                positions[user] += 1
                yield {
                    "event_id": f"amz-{user}-{position}-{item}",
                    "user_id": user,
                    "type": "purchase",
                    "item_id": item,
                    "ts_ms": ts_ms,
                    "context": {"split": split},
                }


def _item_list(text: str) -> list[str]:
    if not text.strip():
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(item) for item in value] if isinstance(value, list | tuple) else []


def load_amazon_office(directory: Path, splits: tuple[str, ...] = SPLITS) -> Iterator[dict[str, Any]]:
    def rows(split: str) -> Iterator[dict[str, str]]:
        path = directory / f"{split}.csv"
        if not path.is_file():
            raise SourceError(f"{path}: missing; an amazon-office directory holds valid.csv and test.csv")
        with open(path, newline="", encoding="utf-8") as text:
            yield from csv.DictReader(text)

    # valid precedes test in time, whatever order the caller lists them in.
    ordered = [split for split in SPLITS if split in splits]
    return amazon_office_docs((split, rows(split)) for split in ordered)
