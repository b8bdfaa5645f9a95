"""Exact cosine top-K over the item matrix for a batch of users (numpy + onnxruntime, no I/O).

Vectors are L2-normalised, so cosine = dot product. Two paths give the same answer:

- plain: one float32 BLAS product scores the whole batch, `np.partition` finds each user's k-th
  best, and every item within the BLAS error bound of it is a candidate;
- quantised (`prepare_items`, large catalogues): an int8 copy of the matrix scores the batch
  several times faster (`models.index.quantised`); the exact scores of the best item of each of a
  user's k best blocks (of 32 items) bound its exact k-th best from below, and only items whose
  proven upper bound (approximate score + error bound) reaches that floor are candidates.

A `Boost` (a sparse term >= 0 per (user, item), e.g. co-occurrence) is added in float32 to the
BLAS scores before the k-th best is found (plain) or joins its pairs to the candidates (int8).

Either way the candidates are re-scored by `exact_scores`, a function of the two vectors alone
(float32 products summed pairwise by numpy, row by row). A BLAS product is not such a function:
the same pair can differ in the last bit with the matrix shape or thread split, so ranking by it
would make the order of near-ties depend on the catalogue's size. Ranking by `exact_scores`, ties
broken by item index, makes both paths agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

from models.index.quantised import BLOCK, QuantisedItems, quantise_items

Ranked = list[tuple[str, float]]

# Below this many items the plain path is as fast (bench.topk: int8 won at 10k, lost at 3k) and
# needs no second copy of the matrix.
QUANTISE_MIN_ITEMS = 10_000
_U = 2.0**-24  # unit roundoff of float32
# Smallest float32 subnormal: a product that underflows is off by up to half of it, an error no
# relative bound covers (Higham's model fl(x*y) = xy(1 + d) + e, |e| <= 2**-150).
_SUBNORMAL = 2.0**-149
_PAIRS_PER_CHUNK = 4096  # bounds the temporaries of `exact_scores`
_NEVER = 2**62
# The int8 path's floor comes from each user's k best blocks of 32 items; with fewer blocks than
# this per k it is too low to prune much, and the plain path is faster.
_MIN_BLOCKS_PER_K = 4
# Candidate (user, item) pairs and their `exact_scores`.
_Pairs = tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32]]


@dataclass(frozen=True, slots=True)
class PreparedItems:
    """The item matrix, its largest row norm and, for large catalogues, its int8 prefilter.

    Build it once per index load with `prepare_items`; `top_k` accepts it in place of the matrix.
    """

    vectors: NDArray[np.float32]
    max_norm: float
    quantised: QuantisedItems | None = None


@dataclass(frozen=True, slots=True)
class Boost:
    """A sparse term added to some (user, item) scores before ranking, e.g. co-occurrence.

    Three (n_pairs,) arrays: user rows (intp), item rows (intp) and values (float32, finite,
    >= 0); a pair at most once (not checked: that would sort every pair of every batch). The
    boosted score is ``float32(exact score + value)``.
    """

    user_rows: NDArray[np.intp]
    item_rows: NDArray[np.intp]
    values: NDArray[np.float32]

    def check(self, n_users: int, n_items: int) -> None:
        """Raises `ValueError` for arrays of unequal lengths, rows out of range or bad values."""
        if not len(self.user_rows) == len(self.item_rows) == len(self.values):
            raise ValueError("a boost needs as many user rows, item rows and values")
        if not len(self.values):
            return
        if self.user_rows.min() < 0 or self.user_rows.max() >= n_users:
            raise ValueError(f"boost user rows outside 0..{n_users - 1}")
        if self.item_rows.min() < 0 or self.item_rows.max() >= n_items:
            raise ValueError(f"boost item rows outside 0..{n_items - 1}")
        if not np.isfinite(self.values).all() or self.values.min() < 0:
            raise ValueError("boost values must be finite and >= 0")


def prepare_items(
    vectors: NDArray[np.float32], *, threads: int = 0, min_items: int = QUANTISE_MIN_ITEMS
) -> PreparedItems:
    """Wrap the (n, dim) item matrix for `top_k`; quantises it when it has at least `min_items` rows.

    `vectors`: (n_items, dim) float32 (copied to a contiguous float32 array if it is not).
    `threads` is the onnxruntime thread count of the int8 product (0: one per core). A matrix
    holding NaN or infinity is never quantised. Raises `ValueError` unless `vectors` is 2-D.
    """
    if vectors.ndim != 2:
        raise ValueError(f"item matrix has shape {vectors.shape}, expected (n_items, dim)")
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.shape[0] >= max(min_items, 1) and np.isfinite(matrix).all():
        quantised = quantise_items(matrix, threads=threads)
        return PreparedItems(matrix, quantised.max_norm, quantised)
    # float32 sums of squares are within gamma_d of the truth: widen by more than that.
    squares = np.einsum("ij,ij->i", matrix, matrix)
    max_norm = float(np.sqrt(squares.max(initial=0.0))) * (1 + 2 * _gamma(max(matrix.shape[1], 1)))
    return PreparedItems(matrix, max_norm)


def score_matrix(
    users: NDArray[np.float32], items: NDArray[np.float32], in_stock: NDArray[np.bool_] | None = None
) -> NDArray[np.float32]:
    """(n_users, n_items) float32 cosine scores by one BLAS product; out-of-stock items score -inf.

    `users` (n_users, dim) and `items` (n_items, dim) float32, unit rows; `in_stock` (n_items,)
    bool. Raises `ValueError` when the widths or the mask's length disagree.
    """
    _check_shapes(users, items.shape, in_stock)
    scores: NDArray[np.float32] = users @ items.T
    if in_stock is not None:
        # One broadcast add of 0/-inf is cheaper than boolean column indexing on a wide matrix.
        penalty = np.where(in_stock, np.float32(0.0), np.float32(-np.inf)).astype(np.float32)
        scores += penalty
    return scores


def top_indices(scores: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """Indices of the k best finite scores of one row, best first, ties by ascending index.

    `scores`: (n,) float32; returns (min(k, finite count),) intp; empty for k <= 0.
    """
    n = scores.shape[0]
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.intp)
    if k < n:
        part = np.argpartition(scores, n - k)[n - k :]
        threshold = scores[part].min()
        # argpartition picks arbitrarily among scores equal to the threshold; take all of them
        # and let the sort below decide by index.
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(n)
    candidates = candidates[np.isfinite(scores[candidates])]
    order = np.lexsort((candidates, -scores[candidates]))
    selected: NDArray[np.intp] = candidates[order[:k]].astype(np.intp)
    return selected


def exact_scores(
    users: NDArray[np.float32],
    items: NDArray[np.float32],
    user_rows: NDArray[np.intp],
    item_rows: NDArray[np.intp],
) -> NDArray[np.float32]:
    """Score of each (user, item) pair in float32, the same whichever other pairs come along.

    `users` (n_users, dim), `items` (n_items, dim) float32; `user_rows` and `item_rows` (n_pairs,)
    row indices; returns (n_pairs,) float32, pair j scoring ``users[user_rows[j]]`` against
    ``items[item_rows[j]]``.

    Each score is ``(items[i] * users[u]).sum()``: float32 products that numpy sums pairwise in
    a fixed order for a row of a given length, so it depends on the two vectors only (unlike a
    BLAS product, whose blocking and kernels change with the matrix shape).
    """
    out = np.empty(len(user_rows), dtype=np.float32)
    # Grouping by user multiplies each gathered block by one broadcast user row, which is several
    # times faster than gathering a user row per pair.
    order = np.argsort(user_rows, kind="stable")
    sorted_users = user_rows[order]
    bounds = np.searchsorted(sorted_users, np.arange(users.shape[0] + 1))
    for user in np.unique(sorted_users).tolist():
        group = order[bounds[user] : bounds[user + 1]]
        for start in range(0, len(group), _PAIRS_PER_CHUNK):
            chunk = group[start : start + _PAIRS_PER_CHUNK]
            products = items[item_rows[chunk]]
            products *= users[user]
            out[chunk] = products.sum(axis=1)
    return out


def top_k(
    users: NDArray[np.float32],
    items: NDArray[np.float32] | PreparedItems,
    item_ids: Sequence[str],
    k: int,
    *,
    in_stock: NDArray[np.bool_] | None = None,
    exclude: Sequence[Collection[int]] | None = None,
) -> list[Ranked]:
    """Per user, up to k (item_id, score) pairs, best first, ties by item position.

    `users` is (n_users, dim) float32 with unit rows; `items` is the (n_items, dim) matrix or its
    `prepare_items` form (same answer, faster on large catalogues); `item_ids` names the n_items
    rows; `in_stock` is an (n_items,) bool mask. `exclude[u]` holds item indices user u must not
    get (e.g. already bought); out-of-stock items never appear; a user gets fewer than k pairs when
    fewer candidates remain. Returns one list per user; scores are float cosines (`exact_scores`).
    Raises `ValueError` when shapes, id count, exclusion count or exclusion indices do not fit.
    """
    prepared = items if isinstance(items, PreparedItems) else prepare_items(items, min_items=_NEVER)
    _check_shapes(np.asarray(users, dtype=np.float32), prepared.vectors.shape, in_stock)
    if len(item_ids) != prepared.vectors.shape[0]:
        raise ValueError(f"{len(item_ids)} item ids for {prepared.vectors.shape[0]} item vectors")
    ranked = top_k_rows(users, prepared, k, in_stock=in_stock, exclude=exclude)
    return [[(item_ids[row], score) for row, score in user] for user in ranked]


@dataclass(frozen=True, slots=True)
class RankedRows:
    """Every user's ranking in one set of arrays (compressed rows): user u's item rows, best
    first, are ``rows[starts[u]:starts[u + 1]]`` and their scores the same slice of `scores`.

    `rows` is intp, `scores` float32 (both of length ``starts[-1]``), `starts` intp of length
    n_users + 1. Slices are views: a caller ranking hundreds of users per batch reads each user's
    list without a Python object per candidate.
    """

    rows: NDArray[np.intp]
    scores: NDArray[np.float32]
    starts: NDArray[np.intp]

    def user(self, u: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """User u's item rows and scores, best first (views)."""
        start, end = int(self.starts[u]), int(self.starts[u + 1])
        return self.rows[start:end], self.scores[start:end]


def top_k_rows(
    users: NDArray[np.float32],
    items: NDArray[np.float32] | PreparedItems,
    k: int,
    *,
    in_stock: NDArray[np.bool_] | None = None,
    exclude: Sequence[Collection[int]] | None = None,
    boost: Boost | None = None,
) -> list[list[tuple[int, float]]]:
    """`top_k` with item rows (positions in `items`) in place of ids: per user, up to k
    (row, score) pairs, best first, ties by row. Same arguments, errors and scores.

    With a `boost`, users are ranked by ``float32(exact score + boost value)`` (the value 0 where
    the boost has no pair); excluded and out-of-stock items stay out whatever their boost.
    Raises `ValueError` also for a boost that does not fit (`Boost.check`).
    """
    ranked = top_k_ranked(users, items, k, in_stock=in_stock, exclude=exclude, boost=boost)
    rows, scores, starts = ranked.rows.tolist(), ranked.scores.tolist(), ranked.starts.tolist()
    return [list(zip(rows[start:end], scores[start:end], strict=True)) for start, end in pairwise(starts)]


def top_k_ranked(
    users: NDArray[np.float32],
    items: NDArray[np.float32] | PreparedItems,
    k: int,
    *,
    in_stock: NDArray[np.bool_] | None = None,
    exclude: Sequence[Collection[int]] | None = None,
    boost: Boost | None = None,
) -> RankedRows:
    """`top_k_rows` as one `RankedRows` (same arguments, order, scores and errors)."""
    prepared = items if isinstance(items, PreparedItems) else prepare_items(items, min_items=_NEVER)
    vectors = prepared.vectors
    users = np.asarray(users, dtype=np.float32)
    _check_shapes(users, vectors.shape, in_stock)
    excluded = _exclusion_pairs(exclude, users.shape[0], vectors.shape[0])
    if boost is not None:
        boost.check(users.shape[0], vectors.shape[0])
        if not len(boost.values):
            boost = None
    if k <= 0 or users.shape[0] == 0 or vectors.shape[0] == 0:
        return RankedRows(
            np.empty(0, np.intp), np.empty(0, np.float32), np.zeros(users.shape[0] + 1, np.intp)
        )
    quantised = prepared.quantised
    blocks = 0 if quantised is None else quantised.padded // BLOCK
    if quantised is not None and k * _MIN_BLOCKS_PER_K <= blocks and np.isfinite(users).all():
        pairs = _quantised_candidates(quantised, users, vectors, k, in_stock=in_stock, excluded=excluded)
        if boost is not None:
            pairs = _with_boost_pairs(
                pairs, boost, users=users, vectors=vectors, in_stock=in_stock, excluded=excluded
            )
    else:
        margin = _blas_margin(users, prepared.max_norm, boost)
        pairs = _plain_candidates(
            users, vectors, k, in_stock=in_stock, excluded=excluded, margin=margin, boost=boost
        )
    return _rank(*pairs, users.shape[0], k)


def _check_shapes(
    users: NDArray[np.float32], items_shape: tuple[int, ...], in_stock: NDArray[np.bool_] | None
) -> None:
    if users.ndim != 2 or len(items_shape) != 2 or users.shape[1] != items_shape[1]:
        raise ValueError(f"users {users.shape} and items {items_shape} must be 2-D with the same width")
    if in_stock is not None and in_stock.shape != (items_shape[0],):
        raise ValueError(f"in_stock has shape {in_stock.shape}, expected ({items_shape[0]},)")


def _exclusion_pairs(
    exclude: Sequence[Collection[int]] | None, n_users: int, n_items: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    if exclude is None:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    if len(exclude) != n_users:
        raise ValueError(f"{len(exclude)} exclusion sets for {n_users} users")
    rows = [np.fromiter(rows, dtype=np.intp, count=len(rows)) for rows in exclude]
    item_rows = np.concatenate(rows) if rows else np.empty(0, dtype=np.intp)
    if item_rows.size and (item_rows.min() < 0 or item_rows.max() >= n_items):
        raise ValueError(f"exclusions name item rows outside 0..{n_items - 1}")
    user_rows = np.repeat(np.arange(n_users, dtype=np.intp), [len(r) for r in rows])
    return user_rows, item_rows


def _gamma(dim: int) -> float:
    """Relative error bound of a float32 dot product of length `dim`, in any summation order.

    |computed - q·x| <= gamma * sum |q_j x_j| <= gamma * ||q|| * ||x|| (Higham, Accuracy and
    Stability of Numerical Algorithms, 3.1); it covers BLAS and `exact_scores` alike.
    """
    return dim * _U / (1 - dim * _U)


def _underflow(dim: int) -> float:
    """Absolute error a float32 dot product of length `dim` can add by gradual underflow.

    Each of the `dim` products may lose up to half a subnormal step, and the sum carries those
    losses along with at most a (1 + gamma) factor; one whole step per product covers both.
    Negligible for real embeddings, but it keeps the bounds true for vectors near 1e-38.
    """
    return dim * _SUBNORMAL


def _blas_margin(
    users: NDArray[np.float32], max_norm: float, boost: Boost | None = None
) -> NDArray[np.float64]:
    """Per user, how far below the k-th best BLAS score an exact top-k item can score.

    With S = ||q|| * max ||x|| and E = gamma * S + underflow, BLAS and `exact_scores` are each
    within E of the true score. At least k items have BLAS scores >= the k-th best f_k, so the
    exact k-th best is at least f_k - 2E, and an item reaching that has a BLAS score >= f_k - 4E.
    A boost t added in float32 rounds each side by at most u * (S + E + t) more (u the unit
    roundoff; t the user's largest boost), so E grows by that.
    """
    dim = users.shape[1]
    scale = np.linalg.norm(users.astype(np.float64), axis=1) * max_norm
    error = _gamma(dim) * scale + _underflow(dim)
    if boost is not None:
        largest = np.zeros(users.shape[0])
        np.maximum.at(largest, boost.user_rows, boost.values.astype(np.float64))
        error = error + _U * (scale + error + largest)
    margin: NDArray[np.float64] = 4 * error * (1 + 1e-6)
    return margin


def _lower(threshold: NDArray[np.float64]) -> NDArray[np.float32]:
    """A float32 threshold at or below each given one, and above -inf.

    Rounding down keeps every score the float64 threshold keeps; never going below the lowest
    finite float32 drops the -inf of ineligible items in the same comparison.
    """
    rounded = np.nextafter(threshold.astype(np.float32), np.float32(-np.inf))
    lowered: NDArray[np.float32] = np.maximum(rounded, np.finfo(np.float32).min)
    return lowered


def _plain_candidates(
    users: NDArray[np.float32],
    vectors: NDArray[np.float32],
    k: int,
    *,
    in_stock: NDArray[np.bool_] | None,
    excluded: tuple[NDArray[np.intp], NDArray[np.intp]],
    margin: NDArray[np.float64],
    boost: Boost | None = None,
) -> _Pairs:
    """Candidate (user, item) pairs with their exact scores: BLAS scores near each k-th best.

    A boost is added to the BLAS scores before the k-th best is found and to the exact scores
    of the candidates, each in float32 (`margin` allows for that rounding: `_blas_margin`).
    """
    scores = score_matrix(users, vectors, in_stock)
    scores[excluded] = -np.inf
    if boost is not None:
        scores[boost.user_rows, boost.item_rows] += boost.values  # -inf (ineligible) stays -inf
    n_items = scores.shape[1]
    if k < n_items:
        kth = np.partition(scores, n_items - k, axis=1)[:, n_items - k].astype(np.float64)
    else:
        kth = np.full(scores.shape[0], -np.inf)
    pair_users, pair_items = np.nonzero(scores >= _lower(kth - margin)[:, None])
    exact = exact_scores(users, vectors, pair_users, pair_items)
    if boost is not None:
        _add_boost(exact, boost, pair_users, pair_items, stride=n_items)
    return pair_users, pair_items, exact


def _add_boost(
    scores: NDArray[np.float32],
    boost: Boost,
    pair_users: NDArray[np.intp],
    pair_items: NDArray[np.intp],
    *,
    stride: int,
) -> None:
    """Add to each pair's score (float32, in place) its boost value, if the boost has the pair."""
    hit, values = _lookup(
        boost.user_rows.astype(np.int64) * stride + boost.item_rows,
        boost.values,
        pair_users.astype(np.int64) * stride + pair_items,
    )
    scores[hit] += values


def _lookup(
    known_keys: NDArray[np.integer], known_values: NDArray[np.float32], keys: NDArray[np.integer]
) -> tuple[NDArray[np.bool_], NDArray[np.float32]]:
    """Which `keys` are among `known_keys` (distinct), and the known values of those, in order."""
    if not len(known_keys):
        return np.zeros(len(keys), dtype=bool), known_values[:0]
    order = np.argsort(known_keys)
    sorted_keys = known_keys[order]
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    hit: NDArray[np.bool_] = sorted_keys[at] == keys
    return hit, known_values[order][at[hit]]


def _with_boost_pairs(
    pairs: _Pairs,
    boost: Boost,
    *,
    users: NDArray[np.float32],
    vectors: NDArray[np.float32],
    in_stock: NDArray[np.bool_] | None,
    excluded: tuple[NDArray[np.intp], NDArray[np.intp]],
) -> _Pairs:
    """Candidates of the unboosted top k plus every eligible boosted pair, boosted.

    Boosts are >= 0, so an item outside a user's unboosted top k that gains nothing still has at
    least k items ahead of it: the boosted top k lies within these pairs.
    """
    pair_users, pair_items, scores = pairs
    stride = vectors.shape[0]
    keys = pair_users.astype(np.int64) * stride + pair_items
    boost_keys = boost.user_rows.astype(np.int64) * stride + boost.item_rows
    eligible = np.ones(len(boost_keys), dtype=bool) if in_stock is None else in_stock[boost.item_rows]
    excluded_keys = excluded[0].astype(np.int64) * stride + excluded[1]
    eligible &= ~np.isin(boost_keys, excluded_keys) & ~np.isin(boost_keys, keys)
    extra_users, extra_items = boost.user_rows[eligible], boost.item_rows[eligible]
    pair_users = np.concatenate([pair_users, extra_users])
    pair_items = np.concatenate([pair_items, extra_items])
    scores = np.concatenate([scores, exact_scores(users, vectors, extra_users, extra_items)])
    _add_boost(scores, boost, pair_users, pair_items, stride=stride)
    return pair_users, pair_items, scores


def _quantised_candidates(
    quantised: QuantisedItems,
    users: NDArray[np.float32],
    vectors: NDArray[np.float32],
    k: int,
    *,
    in_stock: NDArray[np.bool_] | None,
    excluded: tuple[NDArray[np.intp], NDArray[np.intp]],
) -> _Pairs:
    """Pairs (user, item) that hold every item of each user's exact top k, with exact scores.

    Scores y are in the row units of `ApproximateScores`: an item's exact score lies within
    ``unit * (offset + slope * residual_i)`` of ``unit * y_i``.
    """
    dim = users.shape[1]
    n_users = users.shape[0]
    n_blocks = quantised.padded // BLOCK
    seeds = min(k, n_blocks)
    approx = quantised.score(
        users, in_stock, exact_error=_gamma(dim), exact_underflow=_underflow(dim), seeds=seeds
    )
    # Block b holds items b, b + n_blocks, b + 2 * n_blocks, ...: a strided view. Block maxima and
    # each user's best blocks come from the session, before the exclusions: a block that loses its
    # best item to an exclusion still passes the block test below, and its items are then tested
    # one by one against their excluded scores, so nothing is missed and the work barely grows.
    blocks = approx.scores.reshape(n_users, BLOCK, n_blocks)
    approx.scores[excluded] = -np.inf
    # Seeds: the best remaining item of each of a user's k best blocks, k distinct eligible items
    # whose exact scores bound the exact k-th best from below.
    floor = np.full(n_users, -np.inf)
    seed_keys = np.empty(0, dtype=np.intp)
    seed_scores = np.empty(0, dtype=np.float32)
    if k <= n_blocks:
        seed_users = np.repeat(np.arange(n_users), k)
        seed_blocks = approx.top_blocks.ravel().astype(np.intp)
        seed_values = blocks[seed_users, :, seed_blocks]
        seed_offsets = seed_values.argmax(axis=1)
        seed_items = seed_offsets * n_blocks + seed_blocks
        seed_scores = exact_scores(users, vectors, seed_users, seed_items)
        seed_keys = seed_users * quantised.padded + seed_items
        seed_finite = seed_values[np.arange(len(seed_items)), seed_offsets] > -np.inf
        # A user with no eligible item in one of its k best blocks gets no floor (all candidates).
        lowest = np.where(seed_finite, seed_scores, -np.inf).reshape(n_users, k).min(axis=1)
        floor = lowest.astype(np.float64)
    # Row units from here on; an item may reach the floor only if y_i + e_i >= floor / unit.
    target = floor / approx.unit
    loose = _lower(target - approx.error_offset - approx.error_slope * quantised.max_residual)
    block_users, block_ids = np.nonzero(approx.block_max >= loose[:, None])
    values = blocks[block_users, :, block_ids]
    hits, offsets = np.nonzero(values >= loose[block_users][:, None])
    pair_users = block_users[hits]
    pair_items = offsets * n_blocks + block_ids[hits]
    reach = values[hits, offsets].astype(np.float64)
    reach += approx.error_offset[pair_users]
    reach += approx.error_slope[pair_users] * quantised.residuals[pair_items]
    keep = reach >= target[pair_users]
    pair_users, pair_items = pair_users[keep], pair_items[keep]
    scores = _scores_reusing(
        users, vectors, (pair_users, pair_items), known=(seed_keys, seed_scores), stride=quantised.padded
    )
    return pair_users, pair_items, scores


def _scores_reusing(
    users: NDArray[np.float32],
    vectors: NDArray[np.float32],
    pairs: tuple[NDArray[np.intp], NDArray[np.intp]],
    *,
    known: tuple[NDArray[np.intp], NDArray[np.float32]],
    stride: int,
) -> NDArray[np.float32]:
    """`exact_scores` of the (user, item) pairs, taking those already scored from `known` (keys
    user * stride + item, and their scores): a third of the candidates are usually the seeds."""
    pair_users, pair_items = pairs
    known_keys, known_scores = known
    scores = np.empty(len(pair_users), dtype=np.float32)
    found, found_scores = _lookup(known_keys, known_scores, pair_users * stride + pair_items)
    scores[found] = found_scores
    fresh = ~found
    scores[fresh] = exact_scores(users, vectors, pair_users[fresh], pair_items[fresh])
    return scores


def _rank(
    pair_users: NDArray[np.intp],
    pair_items: NDArray[np.intp],
    scores: NDArray[np.float32],
    n_users: int,
    k: int,
) -> RankedRows:
    """The k best candidates per user by exact score, ties by item index."""
    finite = np.isfinite(scores)
    pair_users, pair_items, scores = pair_users[finite], pair_items[finite], scores[finite]
    order = np.lexsort((pair_items, -scores, pair_users))
    pair_users, pair_items, scores = pair_users[order], pair_items[order], scores[order]
    starts = np.searchsorted(pair_users, np.arange(n_users + 1))
    # Each user's first k: a candidate's place within its user's run is below k.
    keep = np.arange(len(pair_users)) - starts[pair_users] < k
    kept_starts = np.zeros(n_users + 1, dtype=np.intp)
    np.cumsum(np.minimum(np.diff(starts), k), out=kept_starts[1:])
    return RankedRows(
        pair_items[keep].astype(np.intp, copy=False), scores[keep].astype(np.float32, copy=False), kept_starts
    )
