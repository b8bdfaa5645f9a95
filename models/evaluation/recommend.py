"""Full-ranking next-item evaluation (`profilestream evaluate DATASET`, task ``recommend``).

For every row of the evaluated split (``test`` by default) each method scores the WHOLE catalogue
given the row's history, and the target's rank gives HR@K and NDCG@K (K = 5, 10, 20; one target
per row, so HR@K = Recall@K) and MRR, averaged over all rows. Nothing is excluded: not the
history's items (repeat purchases are targets too) and not rows whose target is missing from the
catalogue (those count as misses), exactly as in the data folder's published protocol.

Methods, all in one run so that they see the same rows:

- ``popularity`` and ``item-kNN`` (`models.evaluation.baselines`), fitted only on
  `models.data.amazon.allowed_sequences` (never a target of the evaluated split);
- for each encoder given (the zero-shot export, a fine-tuned one): the stream's own user vectors,
  computed by the worker's `ProfileComputer` from the window the stream would hold after the
  history (purchases one second apart, `models.evaluation.search.history_window`): ``text`` (the profile
  text through the user tower), ``items`` (decayed mean of the history's item vectors),
  ``hybrid`` (their normalised mix) and ``last item`` (the newest history item's vector). Item
  vectors are `models.index.item_index.build_index`'s, i.e. the item text template the index uses.
- with a popularity weight, each of those modes again as ``<mode> + prior``: the same vectors
  ranked by cosine plus `stream.core.prior`'s popularity prior, the counts being the popularity
  baseline's (allowed interactions only).

Ties are broken by catalogue position, as in `models.index.topk`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs installed

from models.data.amazon import Dataset, EvalRow, allowed_sequences, history_window, interactions, load_dataset
from models.encoder.onnx_encoder import TextEncoder
from models.evaluation import report as report_files
from models.evaluation import stats
from models.evaluation.baselines import fit_item_knn, popularity_scores
from models.evaluation.mmr import SWEEP_TITLES, MmrPoint, mmr_sweep, plot_sweep, sweep_table
from models.evaluation.search import ranking_metrics
from stream.core.errors import ConfigError, SourceError
from stream.core.prior import has_prior, popularity_prior
from stream.core.window import Window, WindowConfig
from stream.profiles.computer import ItemCatalogue, ProfileComputer, ProfileConfig, UserTower, UserVectorMode

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]
K_VALUES = (5, 10, 20)
ENCODER_MODES: tuple[str, ...] = ("text", "items", "hybrid", "last item")
# Rows scored per matrix product: 512 x 3,459 float32 is 7 MB; bounded for large catalogues too.
SCORE_CHUNK = 512


def target_ranks(scores: FloatArray, targets: IntArray) -> IntArray:
    """0-based rank of each row's target among all columns (-1 where the target is unknown).

    Higher scores rank first; equal scores go by column, lower first (as `models.index.topk` does).
    """
    ranks = np.full(len(targets), -1, dtype=np.intp)
    known = np.flatnonzero(targets >= 0)
    if len(known) == 0:
        return ranks
    sub = scores[known]
    target_scores = sub[np.arange(len(known)), targets[known]][:, None]
    columns = np.arange(scores.shape[1])[None, :]
    ahead = (sub > target_scores) | ((sub == target_scores) & (columns < targets[known][:, None]))
    ranks[known] = ahead.sum(axis=1)
    return ranks


@dataclass(frozen=True, slots=True)
class Metrics:
    hr: tuple[float, ...]  # per K in `ks`
    ndcg: tuple[float, ...]
    mrr: float
    ks: tuple[int, ...] = K_VALUES

    def at(self, k: int) -> tuple[float, float]:
        n = self.ks.index(k)
        return self.hr[n], self.ndcg[n]

    def by_k(self) -> dict[str, float]:
        """``hr_at_{k}`` and ``ndcg_at_{k}`` for each K, as the JSON reports name them."""
        values: dict[str, float] = {}
        for k, hr, ndcg in zip(self.ks, self.hr, self.ndcg, strict=True):
            values[f"hr_at_{k}"] = hr
            values[f"ndcg_at_{k}"] = ndcg
        return values

    def cells(self) -> str:
        """HR@K for each K, then NDCG@K, then MRR, as markdown table cells to 4 decimals."""
        return " | ".join(f"{v:.4f}" for v in (*self.hr, *self.ndcg, self.mrr))


def metric_titles(ks: Sequence[int] = K_VALUES, mrr: str = "MRR") -> list[str]:
    """Column titles matching `Metrics.cells`: HR@K per K, NDCG@K per K, then `mrr`."""
    return [*(f"HR@{k}" for k in ks), *(f"NDCG@{k}" for k in ks), mrr]


def summarise(ranks: IntArray, ks: Sequence[int] = K_VALUES) -> Metrics:
    """HR@K, NDCG@K and MRR averaged over rows; a rank of -1 (unknown target) is a miss."""
    total = max(len(ranks), 1)
    hr, ndcg = [], []
    for k in ks:
        values = [ranking_metrics(None if r < 0 else int(r), k) for r in ranks]
        hr.append(sum(v[0] for v in values) / total)
        ndcg.append(sum(v[1] for v in values) / total)
    mrr = float(sum(1.0 / (int(r) + 1) for r in ranks if r >= 0) / total)
    return Metrics(tuple(hr), tuple(ndcg), mrr, tuple(ks))


@dataclass(frozen=True, slots=True)
class MethodResult:
    name: str
    group: str  # "baseline", or the encoder's label ("zero-shot", "fine-tuned")
    model_version: str
    metrics: Metrics
    seconds: float
    fallback_rows: int = 0  # rows without a user vector, ranked by popularity instead
    # Per row: the target's 0-based rank and the top 10 catalogue rows (not written to JSON).
    ranks: IntArray | None = field(default=None, repr=False, compare=False)
    top: IntArray | None = field(default=None, repr=False, compare=False)
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # 95 % bootstrap
    diversity: stats.Diversity | None = None
    mmr: tuple[MmrPoint, ...] = ()  # the MMR sweep of the served ranking (`models.evaluation.mmr`)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "model_version": self.model_version,
            "mrr": self.metrics.mrr,
            "seconds": round(self.seconds, 1),
            "fallback_rows": self.fallback_rows,
            **self.metrics.by_k(),
            "ci95": {name: [round(low, 4), round(high, 4)] for name, (low, high) in self.intervals.items()},
            **(self.diversity.to_dict() if self.diversity else {}),
            **({"mmr_sweep": [point.to_dict() for point in self.mmr]} if self.mmr else {}),
        }

    @property
    def label(self) -> str:
        return self.name if self.group == "baseline" else f"{self.group}: {self.name}"


@dataclass(frozen=True, slots=True)
class RecEvalReport:
    dataset: str
    split: str
    rows: int
    catalogue: int
    unknown_targets: int  # rows whose target is not in the catalogue (misses for every method)
    fit_interactions: int  # allowed interactions the baselines were fitted on
    hybrid_weight: float
    methods: tuple[MethodResult, ...]
    seconds: float
    notes: tuple[str, ...] = field(default=())
    popularity_weight: float = 0.0  # of the "+ prior" rankings (stream.core.prior)
    exclude_purchased: bool = False  # the history's purchases never ranked, as the stream serves

    @property
    def excluded(self) -> str:
        return (
            "the history's purchases excluded (as served)" if self.exclude_purchased else "nothing excluded"
        )

    def method(self, name: str) -> MethodResult:
        for method in self.methods:
            if method.name == name:
                return method
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": "recommend",
            "dataset": self.dataset,
            "split": self.split,
            "rows": self.rows,
            "catalogue_items": self.catalogue,
            "unknown_targets": self.unknown_targets,
            "fit_interactions": self.fit_interactions,
            "hybrid_text_weight": self.hybrid_weight,
            "popularity_weight": self.popularity_weight,
            "protocol": f"full ranking of the whole catalogue, {self.excluded}; ties by catalogue order",
            "seconds": round(self.seconds, 1),
            "methods": [m.to_dict() for m in self.methods],
            "notes": list(self.notes),
        }

    def to_markdown(self) -> str:
        header = [
            "method",
            *metric_titles(),
            "NDCG@10 95 % CI",
            "HR@10 95 % CI",
            "ILS@10",
            "brands@10",
            "coverage@10",
            "pop. rank@10",
            "s",
        ]
        lines = [
            f"Next-item recommendation on {self.dataset} ({self.split}, {self.rows} rows, full ranking "
            f"of {self.catalogue} items, {self.excluded}; {self.unknown_targets} targets not in the "
            f"catalogue; baselines fitted on {self.fit_interactions} allowed interactions)",
            "",
            *report_files.table_head(header),
        ]
        for m in self.methods:
            label = m.name if m.group == "baseline" else f"{m.group}: {m.name}"
            weights = []
            if m.name.startswith("hybrid"):
                weights.append(f"text weight {self.hybrid_weight:g}")
            if "+ prior" in m.name:
                weights.append(f"prior weight {self.popularity_weight:g}")
            if weights:
                label += f" ({', '.join(weights)})"
            lines.append(f"| {label} | {m.metrics.cells()} | {_extra_cells(m)} | {m.seconds:.0f} |")
        lines.extend(f"\n{note}" for note in self.notes)
        sweeps = [m for m in self.methods if m.mmr]
        if sweeps:
            lines += [
                "",
                "MMR sweep (the served score, re-ranked as the worker does, top 20 from a pool of 80):",
                "",
            ]
            lines += report_files.table_head(SWEEP_TITLES)
            for m in sweeps:
                lines += sweep_table(m.label, m.mmr)
        if any(m.diversity for m in self.methods):
            lines.append(
                "\nCI: 95 % bootstrap interval over rows (the same resamples for every method). "
                "ILS@10: mean pairwise cosine of the top 10's item vectors (lower = more diverse); "
                "brands@10: distinct brands in the top 10; coverage@10: share of the catalogue in "
                "any top 10; pop. rank@10: mean popularity rank of the top 10 (1 = most popular; "
                "higher = more novel)."
            )
        return "\n".join(lines) + "\n"


def _extra_cells(m: MethodResult) -> str:
    def interval(name: str) -> str:
        low_high = m.intervals.get(name)
        return f"{low_high[0]:.4f}-{low_high[1]:.4f}" if low_high else ""

    d = m.diversity
    diversity = (
        [
            f"{d.intra_list_similarity:.3f}",
            f"{d.distinct_brands:.2f}",
            f"{d.coverage:.3f}",
            f"{d.mean_popularity_rank:.0f}",
        ]
        if d
        else ["", "", "", ""]
    )
    return " | ".join([interval("ndcg@10"), interval("hr@10"), *diversity])


class _CachedEncoder:
    """Remembers vectors by text, so one encoding of the profile texts serves every mode."""

    def __init__(self, encoder: TextEncoder) -> None:
        self._encoder = encoder
        self.vectors: dict[str, FloatArray] = {}

    @property
    def dim(self) -> int:
        return self._encoder.dim

    @property
    def model_version(self) -> str:
        return self._encoder.model_version

    def encode(self, texts: Sequence[str]) -> FloatArray:
        missing = sorted({t for t in texts if t not in self.vectors})
        if missing:
            self.vectors.update(zip(missing, self._encoder.encode(missing), strict=True))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for n, text in enumerate(texts):
            out[n] = self.vectors[text]
        return out

    def warm(self, texts: Sequence[str], batch_size: int, desc: str) -> None:
        todo = sorted({t for t in texts if t and t not in self.vectors})
        with tqdm(total=len(todo), desc=desc, unit="text", disable=not todo) as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                self.encode(batch)
                bar.update(len(batch))


def _catalogue(dataset: Dataset, encoder: TextEncoder, batch_size: int) -> ItemCatalogue:
    from models.index.item_index import build_index
    from stream.profiles.catalogue import IndexCatalogue

    index = build_index(dataset.items.values(), encoder, batch_size=batch_size)
    if tuple(index.ids) != tuple(dataset.items):
        raise SourceError(f"item index of {dataset.name} does not keep items.json order; cannot align rows")
    return IndexCatalogue(index, {item_id: item.title for item_id, item in dataset.items.items()})


def _exclude(scores: FloatArray, excluded: Sequence[IntArray] | None, start: int) -> None:
    """Score each row's `excluded` catalogue rows (row `start + n` of the split for scores row n)
    -inf in place: never in a top K, and a target among them is a miss."""
    if excluded is None:
        return
    for n in range(len(scores)):
        rows = excluded[start + n]
        if len(rows):
            scores[n, rows] = -np.inf


def _rank_rows(
    user_vectors: FloatArray,
    has_vector: npt.NDArray[np.bool_],
    item_vectors: FloatArray,
    fallback: FloatArray,
    targets: IntArray,
    *,
    prior: FloatArray | None = None,
    added: Sequence[tuple[npt.NDArray[np.int64], FloatArray] | None] | None = None,
    excluded: Sequence[IntArray] | None = None,
) -> tuple[IntArray, IntArray]:
    """Each row's target rank and its top 10 (`stats.top_rows`) under the given vectors; `added`:
    per row, sparse scores (rows, values) added on top (the tower's co-occurrence term);
    `excluded`: per row, catalogue rows never ranked (`_exclude`)."""
    ranks = np.empty(len(targets), dtype=np.intp)
    top = np.empty((len(targets), min(stats.DIVERSITY_K, len(item_vectors))), dtype=np.intp)
    for start in range(0, len(targets), SCORE_CHUNK):
        stop = min(start + SCORE_CHUNK, len(targets))
        scores = user_vectors[start:stop] @ item_vectors.T
        if prior is not None:
            scores += prior
        if added is not None:
            for n, term in enumerate(added[start:stop]):
                if term is not None:
                    scores[n, term[0]] += term[1]
        scores[~has_vector[start:stop]] = fallback
        _exclude(scores, excluded, start)
        ranks[start:stop] = target_ranks(scores, targets[start:stop])
        top[start:stop] = stats.top_rows(scores)
    return ranks, top


def encoder_methods(
    label: str,
    encoder: TextEncoder,
    dataset: Dataset,
    rows: Sequence[EvalRow],
    *,
    windows: Sequence[Window],
    targets: IntArray,
    popularity: FloatArray,
    window: WindowConfig,
    hybrid_weight: float,
    max_profile_chars: int,
    batch_size: int,
    modes: Sequence[str] = ENCODER_MODES,
    prior: FloatArray | None = None,
    item_encoder: TextEncoder | None = None,
    tower: UserTower | None = None,
    catalogues: dict[str, ItemCatalogue] | None = None,
    mmr_lambdas: Sequence[float] = (),
    excluded: Sequence[IntArray] | None = None,
) -> list[MethodResult]:
    """The stream's user vectors of each mode against the encoder's item vectors; with a `prior`
    (`stream.core.prior`), each mode is ranked a second time with it, as ``<mode> + prior``. An
    `item_encoder` (a separately trained item tower) encodes the catalogue instead of `encoder`.
    Mode ``sequence`` needs the `tower` (its user vectors from the encoder's item vectors).
    `catalogues` keeps encoded catalogues by encoder version, so each encoder encodes it once.
    With `mmr_lambdas`, the served ranking of each mode (with the prior when there is one) is also
    re-ranked by MMR at each lambda (`models.evaluation.mmr`)."""
    started = time.perf_counter()
    catalogues = {} if catalogues is None else catalogues
    item_side = item_encoder or encoder
    if item_side.model_version not in catalogues:
        catalogues[item_side.model_version] = _catalogue(dataset, item_side, batch_size)
    catalogue = catalogues[item_side.model_version]
    cached = _CachedEncoder(encoder)
    model_version = encoder.model_version if tower is None else f"{encoder.model_version}+{tower.version}"
    shared_s = time.perf_counter() - started
    results: list[MethodResult] = []
    for mode in modes:
        mode_started = time.perf_counter()
        vectors = np.zeros((len(rows), encoder.dim), dtype=np.float32)
        has = np.zeros(len(rows), dtype=bool)
        # Every mode through the stream's own ProfileComputer (`last item` too).
        config = ProfileConfig(
            window,
            top_k=1,
            max_profile_chars=max_profile_chars,
            user_vector=_mode(mode),
            text_weight=hybrid_weight,
        )
        computer = ProfileComputer(cached, catalogue, config, tower)
        # What the mode ranks against: the catalogue's vectors, or a tower's own (item residuals).
        item_matrix = computer.catalogue.vectors
        if mode in ("text", "hybrid"):
            texts = [computer.profile_text(w) for w in windows]
            cached.warm(texts, batch_size, f"{label}: profile texts")
        starts = range(0, len(rows), SCORE_CHUNK)
        for start in tqdm(starts, desc=f"{label}: {mode} vectors", unit="chunk"):
            chunk = [(str(n), windows[n]) for n in range(start, min(start + SCORE_CHUNK, len(rows)))]
            for profile in computer.compute(chunk):
                vectors[int(profile.user_id)], has[int(profile.user_id)] = profile.vector, True
        variants: list[tuple[str, FloatArray | None]] = [(mode, None)]
        if prior is not None and has_prior(prior):
            variants.append((f"{mode} + prior", prior))
        # A tower with co-occurrence lists serves its score plus their term (`ProfileComputer`):
        # ranked a last time with it, each row's term from the computer itself.
        terms = [computer.cooccurrence(w) for w in windows] if computer.has_boost else None
        if terms is not None:
            added_terms = " + kNN" * (computer.neighbours is not None) + " + sessions" * (
                computer.sessions is not None
            )
            variants.append((f"{variants[-1][0]}{added_terms}", variants[-1][1]))
        for name, added in variants:
            ranked_at = time.perf_counter()
            fused = terms if name.endswith(("+ kNN", "+ sessions")) else None
            ranks, top = _rank_rows(
                vectors, has, item_matrix, popularity, targets, prior=added, added=fused, excluded=excluded
            )
            # The catalogue's encoding is shared by the modes, each carrying an equal share of it;
            # the user vectors are shared by a mode's two rankings and counted in the first.
            seconds = time.perf_counter() - (mode_started if added is None else ranked_at)
            if added is None:
                seconds += shared_s / len(modes)
            # MMR sweeps the served cosine (+ prior) ranking; the fused one is not swept.
            served = (added is not None or len(variants) == 1) and fused is None
            sweep: list[MmrPoint] = []
            if mmr_lambdas and served:
                sweep = mmr_sweep(
                    np.where(has[:, None], vectors, 0.0).astype(np.float32),
                    item_matrix,
                    targets,
                    prior=added,
                    diversity_vectors=catalogue.vectors,
                    brand_ids=stats.brand_ids([item.brand for item in dataset.items.values()]),
                    popularity_rank=stats.popularity_ranks(popularity),
                    lambdas=mmr_lambdas,
                )
            results.append(
                MethodResult(
                    name,
                    label,
                    model_version,
                    summarise(ranks),
                    seconds,
                    int((~has).sum()),
                    ranks=ranks,
                    top=top,
                    mmr=tuple(sweep),
                )
            )
            log.info("%s %s: NDCG@10 %.4f", label, name, results[-1].metrics.at(10)[1])
    return results


def _mode(mode: str) -> UserVectorMode:
    if mode == "text":
        return "text"
    if mode == "hybrid":
        return "hybrid"
    if mode == "sequence":
        return "sequence"
    if mode == "last item":
        return "last_item"
    return "items"


def evaluate_recommendations(
    dataset: Dataset,
    encoders: Sequence[tuple[str, TextEncoder]],
    *,
    window: WindowConfig,
    split: str = "test",
    hybrid_weight: float = 0.5,
    max_profile_chars: int = 2048,
    batch_size: int = 64,
    modes: Sequence[str] = ENCODER_MODES,
    popularity_weight: float = 0.0,
    item_encoders: Mapping[str, TextEncoder] | None = None,
    towers: Sequence[tuple[str, UserTower, TextEncoder]] = (),
    catalogues: Mapping[str, ItemCatalogue] | None = None,
    mmr_lambdas: Sequence[float] = (),
    exclude_purchased: bool = False,
) -> RecEvalReport:
    """Baselines and every encoder's user vectors on `split`, one full ranking per row and method.

    `exclude_purchased`: every method ranks without the items of the row's history (all of them
    purchases in this data set), as the stream serves (`ProfileComputer` never recommends an item
    the window holds a purchase of); a target among them is a miss. The published protocol, and
    the default, excludes nothing. Not with `mmr_lambdas` (ConfigError): the sweep ranks alone.

    `catalogues`: item catalogues already encoded, by encoder version (items.json order), reused
    instead of encoding the items again.

    `item_encoders` maps an encoder's label to a separate item tower for it (else it encodes both).
    `towers`: (label, sequence tower, the encoder of the item vectors it reads), each ranked as
    mode ``sequence`` (and ``sequence + prior``).

    With a `popularity_weight`, each encoder mode is also ranked with the popularity prior of
    `stream.core.prior`, the popularity being the baseline's counts (allowed interactions only).
    """
    started = time.perf_counter()
    if exclude_purchased and mmr_lambdas:
        raise ConfigError(
            "the MMR sweep does not exclude the history's purchases: run --mmr-sweep and "
            "--exclude-purchased in two evaluations"
        )
    rows = dataset.rows.get(split)
    if not rows:
        raise SourceError(f"{dataset.name}: no rows in {split}.csv to evaluate; check the file")
    ids = list(dataset.items)
    positions = {item_id: n for n, item_id in enumerate(ids)}
    targets = np.asarray([positions.get(row.target, -1) for row in rows], dtype=np.intp)
    sequences = allowed_sequences(dataset, split)
    seen = interactions(sequences)
    methods: list[MethodResult] = []

    def timed(name: str, score: Callable[[int], FloatArray]) -> None:
        begun = time.perf_counter()
        ranks = np.empty(len(rows), dtype=np.intp)
        top = np.empty((len(rows), min(stats.DIVERSITY_K, len(ids))), dtype=np.intp)
        for start in range(0, len(rows), SCORE_CHUNK):
            stop = min(start + SCORE_CHUNK, len(rows))
            scores = np.stack([score(n) for n in range(start, stop)])
            _exclude(scores, excluded, start)
            ranks[start:stop] = target_ranks(scores, targets[start:stop])
            top[start:stop] = stats.top_rows(scores)
        seconds = time.perf_counter() - begun
        methods.append(MethodResult(name, "baseline", "", summarise(ranks), seconds, ranks=ranks, top=top))

    histories = [[positions[i] for i in row.history if i in positions] for row in rows]
    excluded = [np.asarray(h, dtype=np.intp) for h in histories] if exclude_purchased else None
    popularity = popularity_scores(seen, positions, len(ids))
    timed("popularity", lambda n: popularity)
    user_items: dict[str, list[str]] = {}
    for user, item in seen:
        user_items.setdefault(user, []).append(item)
    knn = fit_item_knn(user_items, positions, len(ids))
    timed("item-kNN", lambda n: knn.scores(histories[n]))
    windows = [history_window(row.history, window) for row in rows]
    encoded: dict[str, ItemCatalogue] = dict(catalogues or {})
    # Each encoder ranks its modes; each sequence tower ranks mode "sequence" over its encoder's items.
    runs: list[tuple[str, TextEncoder, tuple[str, ...], TextEncoder | None, UserTower | None]] = [
        (label, encoder, tuple(modes), (item_encoders or {}).get(label), None) for label, encoder in encoders
    ]
    runs += [(label, tower_encoder, ("sequence",), None, tower) for label, tower, tower_encoder in towers]
    prior = popularity_prior(popularity, popularity_weight) if runs else None
    for label, encoder, run_modes, item_encoder, tower in runs:
        methods.extend(
            encoder_methods(
                label,
                encoder,
                dataset,
                rows,
                windows=windows,
                targets=targets,
                popularity=popularity,
                window=window,
                hybrid_weight=hybrid_weight,
                max_profile_chars=max_profile_chars,
                batch_size=batch_size,
                modes=run_modes,
                prior=prior,
                item_encoder=item_encoder,
                tower=tower,
                catalogues=encoded,
                mmr_lambdas=mmr_lambdas,
                excluded=excluded,
            )
        )
    vectors = next(iter(encoded.values())).vectors if encoded else None
    methods, notes = _uncertainty_and_diversity(methods, dataset, popularity, vectors)
    return RecEvalReport(
        notes=notes,
        dataset=dataset.name,
        split=split,
        rows=len(rows),
        catalogue=len(ids),
        unknown_targets=int((targets < 0).sum()),
        fit_interactions=len(seen),
        hybrid_weight=hybrid_weight,
        methods=tuple(methods),
        seconds=time.perf_counter() - started,
        popularity_weight=popularity_weight,
        exclude_purchased=exclude_purchased,
    )


def _uncertainty_and_diversity(
    methods: Sequence[MethodResult],
    dataset: Dataset,
    popularity: FloatArray,
    item_vectors: FloatArray | None,
) -> tuple[list[MethodResult], tuple[str, ...]]:
    """Each method with its 95 % bootstrap intervals (the same resamples for all) and diversity of
    its top 10 (item similarity by `item_vectors`, the first encoder's; none without an encoder),
    and a note comparing the best encoder method with the best baseline, paired, by NDCG@10."""
    if not methods or methods[0].ranks is None:
        return list(methods), ()
    indices = stats.resample_indices(len(methods[0].ranks))
    brands = stats.brand_ids([item.brand for item in dataset.items.values()])
    popularity_rank = stats.popularity_ranks(popularity)
    dim = item_vectors.shape[1] if item_vectors is not None else 1
    vectors = item_vectors if item_vectors is not None else np.zeros((len(popularity), dim), np.float32)
    result: list[MethodResult] = []
    per_row: dict[str, dict[str, npt.NDArray[np.float64]]] = {}
    for method in methods:
        assert method.ranks is not None and method.top is not None
        values = stats.per_row(method.ranks, method.metrics.ks)
        per_row[method.label] = values
        div = stats.diversity(method.top, vectors, brands, popularity_rank)
        if item_vectors is None:
            div = replace(div, intra_list_similarity=float("nan"))
        result.append(replace(method, intervals=stats.bootstrap_intervals(values, indices), diversity=div))
    baselines = [m for m in result if m.group == "baseline"]
    models = [m for m in result if m.group != "baseline"]
    notes: list[str] = []
    if baselines and models:
        best_baseline = max(baselines, key=lambda m: m.metrics.at(10)[1])
        best = max(models, key=lambda m: m.metrics.at(10)[1])
        paired = stats.paired_difference(
            "NDCG@10",
            (best.label, per_row[best.label]["ndcg@10"]),
            (best_baseline.label, per_row[best_baseline.label]["ndcg@10"]),
            indices,
        )
        notes.append(paired.sentence())
    return result, tuple(notes)


def run_rec_eval(
    dataset_dir: Path,
    encoders: Sequence[tuple[str, TextEncoder]],
    *,
    window: WindowConfig,
    split: str = "test",
    limit: int | None = None,
    hybrid_weight: float = 0.5,
    max_profile_chars: int = 2048,
    batch_size: int = 64,
    popularity_weight: float = 0.0,
    item_encoders: Mapping[str, TextEncoder] | None = None,
    towers: Sequence[tuple[str, UserTower, TextEncoder]] = (),
    catalogues: Mapping[str, ItemCatalogue] | None = None,
    mmr_lambdas: Sequence[float] = (),
    modes: Sequence[str] = ENCODER_MODES,
    exclude_purchased: bool = False,
) -> RecEvalReport:
    """Read the folder (items.json, valid.csv, test.csv) and evaluate; `limit` keeps the first
    rows of the evaluated split only (the baselines are still fitted on everything allowed).
    `catalogues`: item vectors already computed, by encoder version (see `saved_catalogue`)."""
    dataset = load_dataset(dataset_dir)
    if limit is not None:
        dataset.rows[split] = dataset.rows[split][:limit]
    return evaluate_recommendations(
        dataset,
        encoders,
        window=window,
        split=split,
        hybrid_weight=hybrid_weight,
        max_profile_chars=max_profile_chars,
        batch_size=batch_size,
        popularity_weight=popularity_weight,
        item_encoders=item_encoders,
        towers=towers,
        catalogues=catalogues,
        mmr_lambdas=mmr_lambdas,
        modes=modes,
        exclude_purchased=exclude_purchased,
    )


def saved_catalogue(dataset_dir: Path, index_dir: Path, encoder_version: str) -> ItemCatalogue:
    """A saved item index (`profilestream index` of the folder's items.json by the encoder
    `encoder_version`) as the evaluation's catalogue, instead of encoding the items again; refused
    unless it holds exactly the folder's items in items.json order."""
    from models.index.item_index import load_index
    from stream.profiles.catalogue import IndexCatalogue

    dataset = load_dataset(dataset_dir, splits=())
    index = load_index(index_dir, encoder_version)
    if tuple(index.ids) != tuple(dataset.items):
        raise SourceError(
            f"item index {index_dir} does not hold {dataset_dir}/items.json's items in file order; "
            f"rebuild it: PROFILESTREAM_INDEX_DIR={index_dir} profilestream index {dataset_dir}/items.json "
            "--rebuild"
        )
    return IndexCatalogue(index, {item_id: item.title for item_id, item in dataset.items.items()})


def write_report(report: RecEvalReport, out_dir: Path, mmr_plot: Path | None = None) -> list[Path]:
    """``rec_eval.json``, ``rec_eval.md`` and the bar chart ``rec_eval.png``; with an MMR sweep,
    its accuracy-against-diversity plot at `mmr_plot` (default ``rec_eval_mmr.png`` beside them)."""
    paths = report_files.write_report(report, out_dir, "rec_eval", plot=plot_report)
    sweeps = [(m.label, m.mmr) for m in report.methods if m.mmr]
    if sweeps:
        path = mmr_plot or out_dir / "rec_eval_mmr.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        title = (
            f"MMR on {report.dataset} {report.split} ({report.rows} rows): NDCG@10 against intra-list "
            "similarity, points labelled with lambda"
        )
        plot_sweep(sweeps, path, title)
        paths.append(path)
    return paths


def plot_report(report: RecEvalReport, path: Path) -> None:
    """NDCG@5/10/20 bars and HR@10 markers per method, as a PNG at `path`."""
    labels = [m.name if m.group == "baseline" else f"{m.group}\n{m.name}" for m in report.methods]
    positions = np.arange(len(labels))
    width = 0.8 / len(K_VALUES)
    with report_files.saved_figure(path, width_in=max(6.4, 0.9 * len(labels)), height_in=4.2) as axis:
        for n, k in enumerate(K_VALUES):
            axis.bar(
                positions + (n - 1) * width,
                [m.metrics.at(k)[1] for m in report.methods],
                width,
                label=f"NDCG@{k}",
            )
        axis.plot(positions, [m.metrics.at(10)[0] for m in report.methods], "k^", label="HR@10")
        axis.set_xticks(positions, labels, fontsize=7)
        axis.set_ylabel("metric")
        axis.set_title(f"Next-item full ranking, {report.dataset} {report.split} ({report.rows} rows)")
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=8)
