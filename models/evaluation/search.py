"""Offline evaluation of personalised search on an amazon-office style data set.

For each test row (``user_id``, ``history_item_id``: a Python-literal list, oldest first, and
``item_id``: the target) it builds a short query from the target (`search_query`), retrieves and
ranks the catalogue exactly as ``GET /v1/search`` does (`stream.serving.search`), once with the query only
and once blended with the user's live vector, and reports HR@10 and NDCG@10 of the target for both
in the same run, plus a sweep over the blend weight.

The user vector is the one the stream would hold after the row's history: the history becomes
purchase events one second apart (the loader's convention, `stream.ingest.loaders`), a `Window` is built
from them, and the worker's own `ProfileComputer` turns it into the items-mode vector. The recent
search queries play no part (the data set has none).

The query rule (documented in the README): the target's brand, cleaned (HTML entities decoded,
"Visit Amazon's X Page" unwrapped, company suffixes such as Inc. or LLC dropped, at most its
first two words); when the item has no usable brand, the first two content words of its title
(letters only, at least three long, stop words and unit words dropped). Never the full title: a
brand-only query is what makes a query ambiguous enough for the profile to matter.
"""

from __future__ import annotations

import html
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.data.amazon import EvalRow, history_window, read_rows
from models.encoder.onnx_encoder import TextEncoder
from models.evaluation import report as report_files
from models.index.catalog import CatalogItem
from stream.core.errors import SourceError
from stream.core.window import WindowConfig
from stream.profiles.computer import ItemCatalogue, ProfileComputer, ProfileConfig
from stream.serving.search import SearchConfig, blend_order, query_candidates

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

CUTOFF = 10
SWEEP_WEIGHTS = tuple(round(0.1 * step, 1) for step in range(11))
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9'&+.-]*[A-Za-z0-9]|[A-Za-z0-9]")
_CONTENT_RE = re.compile(r"^[A-Za-z]{3,}$")
_VISIT_RE = re.compile(r"^Visit Amazon's (.+) Page$")
_COMPANY_SUFFIXES = frozenset({"inc", "inc.", "llc", "ltd", "ltd.", "co", "co.", "corp", "corp.", "company"})
STOPWORDS = frozenset(
    {
        "and", "the", "for", "with", "per", "pack", "count", "inch", "inches", "size", "set", "pcs",
        "from", "this", "that", "use", "all", "new", "box", "each", "piece", "pieces", "ounce",
        "sheets", "sheet", "color", "colors", "assorted", "black", "blue", "red", "white",
    }
)  # fmt: skip


def _brand_words(brand: str) -> list[str]:
    text = html.unescape(brand).strip()
    visit = _VISIT_RE.match(text)
    if visit:
        text = visit.group(1)
    words = [w for w in _WORD_RE.findall(text) if w.lower() not in _COMPANY_SUFFIXES]
    return words[:2]


def search_query(item: CatalogItem) -> str:
    """The documented short query for an item: its brand, else two content words of its title."""
    brand = _brand_words(item.brand)
    if brand:
        return " ".join(brand)
    words = [w for w in _WORD_RE.findall(item.title) if _CONTENT_RE.match(w) and w.lower() not in STOPWORDS]
    if not words:
        words = _WORD_RE.findall(item.title)[:1]
    return " ".join(words[:2]).lower()


def ranking_metrics(rank: int | None, cutoff: int = CUTOFF) -> tuple[float, float]:
    """(hit, NDCG) of one target at 0-based `rank` (None: not retrieved); one relevant item."""
    if rank is None or rank >= cutoff:
        return 0.0, 0.0
    return 1.0, 1.0 / math.log2(rank + 2)


def target_rank(
    candidate_rows: npt.NDArray[np.intp],
    query_scores: FloatArray,
    profile_scores: FloatArray | None,
    target_row: int,
    weight: float,
) -> int | None:
    """Where the search ranking puts the target (0-based), None when retrieval missed it."""
    hits = np.flatnonzero(candidate_rows == target_row)
    if len(hits) == 0:
        return None
    order = blend_order(query_scores, profile_scores, weight)
    return int(np.flatnonzero(order == hits[0])[0])


@dataclass(frozen=True, slots=True)
class SweepPoint:
    weight: float
    hr: float
    ndcg: float


@dataclass(frozen=True, slots=True)
class SearchEvalReport:
    dataset: str
    split: str
    rows: int  # rows evaluated
    skipped: int  # rows whose target is not in the catalogue
    without_profile: int  # rows whose history gave no vector (ranked query-only in both columns)
    candidates: int
    retrieved: float  # share of targets among the retrieved candidates (the ceiling of HR)
    blend_weight: float  # the configured PROFILESTREAM_SEARCH_BLEND_WEIGHT
    model_version: str
    sweep: tuple[SweepPoint, ...]
    example_queries: tuple[tuple[str, str], ...] = field(default=())  # (target title, query)

    def at(self, weight: float) -> SweepPoint:
        return min(self.sweep, key=lambda p: abs(p.weight - weight))

    @property
    def query_only(self) -> SweepPoint:
        return self.at(0.0)

    @property
    def best(self) -> SweepPoint:
        # The smallest weight among equals: prefer the least personalisation that does as well.
        return max(self.sweep, key=lambda p: (round(p.ndcg, 12), -p.weight))

    def to_dict(self) -> dict[str, Any]:
        def point(p: SweepPoint) -> dict[str, float]:
            return {"weight": p.weight, "hr_at_10": p.hr, "ndcg_at_10": p.ndcg}

        return {
            "task": "search",
            "dataset": self.dataset,
            "split": self.split,
            "rows": self.rows,
            "skipped_rows": self.skipped,
            "rows_without_profile": self.without_profile,
            "candidates": self.candidates,
            "target_retrieved": self.retrieved,
            "model_version": self.model_version,
            "query_only": point(self.query_only),
            "personalised": point(self.at(self.blend_weight)),
            "best": point(self.best),
            "sweep": [point(p) for p in self.sweep],
            "example_queries": [{"title": t, "query": q} for t, q in self.example_queries],
        }

    def to_markdown(self) -> str:
        mine, best, plain = self.at(self.blend_weight), self.best, self.query_only
        lines = [
            f"Personalised search on {self.dataset} ({self.split}, {self.rows} rows, "
            f"{self.candidates} candidates, target retrieved in {self.retrieved:.1%} of rows, "
            f"{self.model_version})",
            "",
            *report_files.table_head(["ranking", "HR@10", "NDCG@10"]),
            f"| query only | {plain.hr:.4f} | {plain.ndcg:.4f} |",
            f"| personalised (blend weight {self.blend_weight:g}) | {mine.hr:.4f} | {mine.ndcg:.4f} |",
            f"| best of the sweep (weight {best.weight:g}) | {best.hr:.4f} | {best.ndcg:.4f} |",
            "",
            *report_files.table_head(["blend weight", *(f"{p.weight:g}" for p in self.sweep)]),
            "| HR@10 | " + " | ".join(f"{p.hr:.4f}" for p in self.sweep) + " |",
            "| NDCG@10 | " + " | ".join(f"{p.ndcg:.4f}" for p in self.sweep) + " |",
        ]
        return "\n".join(lines) + "\n"


def evaluate_search(
    rows: Sequence[EvalRow],
    catalogue: ItemCatalogue,
    items: dict[str, CatalogItem],
    encoder: TextEncoder,
    *,
    window: WindowConfig,
    search: SearchConfig,
    dataset: str = "",
    split: str = "test",
    weights: Sequence[float] = SWEEP_WEIGHTS,
) -> SearchEvalReport:
    """Query-only against personalised search over the whole catalogue, one pass for all weights."""
    usable = [row for row in rows if catalogue.row(row.target) is not None and row.target in items]
    queries = [search_query(items[row.target]) for row in usable]
    distinct = sorted(set(queries))
    query_vectors = dict(zip(distinct, encoder.encode(distinct), strict=True)) if distinct else {}
    computer = ProfileComputer(encoder, catalogue, ProfileConfig(window, top_k=1, user_vector="items"))
    # One profile per row, keyed by position (the same user appears in several rows).
    profiles = computer.compute(
        [(str(n), history_window(row.history, window)) for n, row in enumerate(usable)]
    )
    user_vectors: dict[int, FloatArray] = {int(p.user_id): p.vector for p in profiles}
    weights = sorted({*weights, search.blend_weight, 0.0})
    hits = np.zeros(len(weights))
    gains = np.zeros(len(weights))
    retrieved = 0
    chunk = 512
    for start in range(0, len(usable), chunk):
        batch = range(start, min(start + chunk, len(usable)))
        stacked = np.stack([query_vectors[queries[n]] for n in batch])
        candidates = query_candidates(stacked, catalogue, search.candidates)
        for n, (rows_n, q_scores) in zip(batch, candidates, strict=True):
            target_row = catalogue.row(usable[n].target)
            assert target_row is not None
            vector = user_vectors.get(n)
            p_scores = None if vector is None else catalogue.vectors[rows_n] @ vector
            retrieved += int(np.any(rows_n == target_row))
            for w, weight in enumerate(weights):
                hit, gain = ranking_metrics(target_rank(rows_n, q_scores, p_scores, target_row, weight))
                hits[w] += hit
                gains[w] += gain
    total = max(len(usable), 1)
    return SearchEvalReport(
        dataset=dataset,
        split=split,
        rows=len(usable),
        skipped=len(rows) - len(usable),
        without_profile=len(usable) - len(user_vectors),
        candidates=search.candidates,
        retrieved=retrieved / total,
        blend_weight=search.blend_weight,
        model_version=encoder.model_version,
        sweep=tuple(
            SweepPoint(weight, float(hits[w] / total), float(gains[w] / total))
            for w, weight in enumerate(weights)
        ),
        example_queries=tuple(
            (items[row.target].title, q) for row, q in list(zip(usable, queries, strict=True))[:5]
        ),
    )


def write_report(report: SearchEvalReport, out_dir: Path) -> list[Path]:
    """``search_eval.json``, ``search_eval.md`` and the sweep plot ``search_eval_sweep.png``."""
    return report_files.write_report(
        report, out_dir, "search_eval", plot=plot_sweep, plot_name="search_eval_sweep.png"
    )


def plot_sweep(report: SearchEvalReport, path: Path) -> None:
    """HR@10 and NDCG@10 against the blend weight, the configured weight marked, as a PNG."""
    weights = [p.weight for p in report.sweep]
    with report_files.saved_figure(path) as axis:
        axis.plot(weights, [p.hr for p in report.sweep], marker="o", label="HR@10")
        axis.plot(weights, [p.ndcg for p in report.sweep], marker="s", label="NDCG@10")
        axis.axvline(report.blend_weight, color="grey", linestyle=":", label="configured weight")
        axis.set_xlabel("blend weight (0 = query only, 1 = profile only among the candidates)")
        axis.set_ylabel("metric")
        axis.set_title(f"Personalised search, {report.dataset} {report.split} ({report.rows} rows)")
        axis.grid(alpha=0.3)
        axis.legend()


def run_search_eval(
    dataset_dir: Path,
    encoder: TextEncoder,
    *,
    window: WindowConfig,
    search: SearchConfig,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 64,
) -> SearchEvalReport:
    """Read ``items.json`` and ``{split}.csv`` from `dataset_dir`, encode the catalogue, evaluate."""
    from models.index.catalog import read_amazon_items
    from models.index.item_index import build_index
    from stream.profiles.catalogue import IndexCatalogue

    items_path = dataset_dir / "items.json"
    if not items_path.is_file():
        raise SourceError(f"{items_path}: missing; an amazon-office directory holds items.json and test.csv")
    items = {item.item_id: item for item in read_amazon_items(items_path)}
    rows = read_rows(dataset_dir / f"{split}.csv", limit)
    log.info("encoding %d catalogue items for the search evaluation", len(items))
    index = build_index(items.values(), encoder, batch_size=batch_size)
    catalogue = IndexCatalogue(index, {item_id: item.title for item_id, item in items.items()})
    return evaluate_search(
        rows, catalogue, items, encoder, window=window, search=search, dataset=dataset_dir.name, split=split
    )
