from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from models.data.amazon import EvalRow, history_window, parse_history, read_rows
from models.evaluation.search import (
    SweepPoint,
    evaluate_search,
    ranking_metrics,
    search_query,
    target_rank,
    write_report,
)
from models.index.catalog import CatalogItem
from stream.core.errors import SourceError
from stream.core.window import WindowConfig
from stream.serving.search import SearchConfig
from tests.support.fakes import FakeCatalogue


@pytest.mark.parametrize(
    ("brand", "title", "query"),
    [
        ("HP", "HP 74 Black & 75 Tri-color Original Ink Cartridges, 2 Cartridges", "HP"),
        ("Paper Mate", "Paper Mate Flair Felt Tip Pens, Medium Point", "Paper Mate"),
        ("Visit Amazon's Knock Knock Page", "Knock Knock Nifty Notepad", "Knock Knock"),
        ("Cavallini Papers &amp; Co., Inc.", "Cavallini Decorative Paper", "Cavallini Papers"),
        ("Alliance Rubber Company Inc.", "Rubber bands", "Alliance Rubber"),
        (".Pilot", "Pilot G2 pens", "Pilot"),
        ("", "The Smart Pack of 12 Gel Pens, 0.7 mm, Assorted", "smart gel"),
        ("  ", "A4", "a4"),
    ],
)
def test_the_query_is_the_brand_or_two_content_words_never_the_title(
    brand: str, title: str, query: str
) -> None:
    made = search_query(CatalogItem("x", title, brand=brand))
    assert made == query
    assert made.lower() != title.lower() or len(title.split()) == 1


def test_history_becomes_a_window_of_purchases_in_order() -> None:
    window = history_window(["3", "1", "3"], WindowConfig())
    assert [e.item_id for e in window.events] == ["3", "1", "3"]
    assert [e.type.value for e in window.events] == ["purchase"] * 3
    assert [e.ts_ms for e in window.events] == sorted(e.ts_ms for e in window.events)
    assert len(history_window([str(n) for n in range(80)], WindowConfig(max_events=50)).events) == 50


def test_history_lists_are_parsed_and_bad_ones_named() -> None:
    assert parse_history("[384, 289, 0]") == ("384", "289", "0")
    assert parse_history(" ") == ()
    with pytest.raises(SourceError, match="history_item_id"):
        parse_history("[1, 2")


def test_read_rows_honours_the_limit_and_names_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "test.csv"
    path.write_text('user_id,history_item_id,item_id\nA,"[1, 2]",3\nB,[],4\nC,[5],6\n')
    assert read_rows(path, limit=2) == [EvalRow("A", ("1", "2"), "3"), EvalRow("B", (), "4")]
    with pytest.raises(SourceError, match="missing"):
        read_rows(tmp_path / "valid.csv")


def test_metrics_count_one_relevant_item_in_the_top_ten() -> None:
    assert ranking_metrics(0) == (1.0, 1.0)
    hit, gain = ranking_metrics(2)
    assert hit == 1.0
    assert gain == pytest.approx(1 / math.log2(4))
    assert ranking_metrics(10) == (0.0, 0.0)
    assert ranking_metrics(None) == (0.0, 0.0)


def test_target_rank_follows_the_search_blend() -> None:
    rows = np.asarray([7, 3, 9], dtype=np.intp)
    q = np.asarray([0.9, 0.8, 0.7], dtype=np.float32)
    p = np.asarray([0.0, 0.0, 1.0], dtype=np.float32)
    assert target_rank(rows, q, p, target_row=9, weight=0.0) == 2
    assert target_rank(rows, q, p, target_row=9, weight=0.5) == 0
    assert target_rank(rows, q, None, target_row=9, weight=0.5) == 2
    assert target_rank(rows, q, p, target_row=4, weight=0.5) is None


BRANDS = ("acme", "papyrus", "tidy")
PRODUCTS = ("stapler", "pens", "lamp", "notebook", "folder", "tape")


def test_personalisation_beats_query_only_when_histories_follow_one_product_line(tmp_path: Path) -> None:
    """Users buy one product in every brand; the brand query is ambiguous, the history is not."""
    titles = {f"{b}-{p}": f"{b} {p}" for b in BRANDS for p in PRODUCTS}
    items = {i: CatalogItem(i, t, brand=t.split()[0]) for i, t in titles.items()}
    catalogue = FakeCatalogue(titles)
    rows = [
        EvalRow(f"u{n}", tuple(f"{b}-{p}" for b in BRANDS if b != brand), f"{brand}-{p}")
        for n, (brand, p) in enumerate((b, p) for b in BRANDS for p in PRODUCTS)
    ]
    rows.append(EvalRow("ghost", (), "not-in-catalogue"))
    report = evaluate_search(
        rows,
        catalogue,
        items,
        catalogue.encoder,
        window=WindowConfig(),
        search=SearchConfig(blend_weight=0.5, candidates=len(titles)),
        dataset="fake",
        weights=(0.0, 0.5, 1.0),
    )
    assert (report.rows, report.skipped, report.without_profile) == (18, 1, 0)
    assert [p.weight for p in report.sweep] == [0.0, 0.5, 1.0]
    assert report.retrieved == 1.0
    assert report.query_only.hr == 1.0  # six items per brand: all in the top ten
    assert report.at(0.5).ndcg > report.query_only.ndcg
    assert report.best.weight > 0.0
    doc = report.to_dict()
    assert doc["personalised"]["weight"] == 0.5
    assert doc["query_only"] == {"weight": 0.0, "hr_at_10": 1.0, "ndcg_at_10": report.query_only.ndcg}

    paths = write_report(report, tmp_path / "out")
    assert [p.name for p in paths] == ["search_eval.json", "search_eval.md", "search_eval_sweep.png"]
    assert json.loads(paths[0].read_text())["rows"] == 18
    assert "| query only |" in paths[1].read_text()
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_best_weight_prefers_the_smallest_among_equals() -> None:
    from models.evaluation.search import SearchEvalReport

    sweep = (SweepPoint(0.0, 0.1, 0.1), SweepPoint(0.2, 0.2, 0.3), SweepPoint(0.4, 0.2, 0.3))
    report = SearchEvalReport("d", "test", 1, 0, 0, 10, 1.0, 0.2, "m", sweep)
    assert report.best.weight == 0.2
    assert report.at(0.21).weight == 0.2
