from __future__ import annotations

import asyncio

import numpy as np
import pytest

from stream.core.events import MAX_QUERY_CHARS, Event, EventType
from stream.core.window import Window, WindowConfig, apply_events
from stream.profiles.computer import ProfileComputer, ProfileConfig
from stream.profiles.query_cache import QueryVectorCache
from stream.serving.search import (
    ActivityEntry,
    SearchConfig,
    SearchResult,
    UserSignals,
    blend_order,
    check_k,
    check_user_id,
    clean_query,
    parse_activity,
    recent_queries,
)
from stream.serving.search_service import SearchService
from tests.support.fakes import DIM, BagOfWordsEncoder, FakeCatalogue

BRANDS = ("acme", "papyrus", "tidy")
PRODUCTS = ("stapler", "gel pens", "desk lamp", "notebook", "label maker")
TITLES = {f"{b}-{p.replace(' ', '-')}": f"{b} {p}" for b in BRANDS for p in PRODUCTS}
T0 = 1_700_000_000_000


class FakeSignals:
    """`SignalSource` over a dict: what the worker would have written to Redis."""

    def __init__(self, users: dict[str, UserSignals]) -> None:
        self.users = users

    async def read(self, user_id: str) -> UserSignals | None:
        return self.users.get(user_id)


def live_vector(catalogue: FakeCatalogue, events: list[Event]) -> np.ndarray:
    """The items-mode user vector the worker stores under {prefix}:emb:{user}."""
    config = ProfileConfig(WindowConfig(), user_vector="items")
    window = apply_events(Window(), events, config.window).window
    [profile] = ProfileComputer(catalogue.encoder, catalogue, config).compute([("u", window)])
    return profile.vector


def views(user: str, items: list[str]) -> list[Event]:
    return [Event(f"{user}-{n}", user, EventType.VIEW, T0 + n * 1000, item_id=i) for n, i in enumerate(items)]


def entries(events: list[Event]) -> tuple[ActivityEntry, ...]:
    return tuple(ActivityEntry(e.event_id, e.type, e.ts_ms, e.item_id, e.query) for e in events)


def service(
    catalogue: FakeCatalogue,
    users: dict[str, UserSignals],
    weight: float = 0.5,
    candidates: int | None = None,
) -> SearchService:
    pool = candidates or len(catalogue.ids)
    config = SearchConfig(blend_weight=weight, recent_query_weight=0.3, candidates=pool)
    return SearchService(catalogue.encoder, catalogue, FakeSignals(users), config, cache_size=100)


def search(svc: SearchService, query: str, user: str | None, k: int = 5) -> SearchResult:
    return asyncio.run(svc.search(query, user, k))


def brand_fan(catalogue: FakeCatalogue, brand: str) -> UserSignals:
    events = views(
        f"fan-{brand}", [f"{brand}-{p}" for p in ("gel-pens", "desk-lamp", "notebook", "label-maker")]
    )
    return UserSignals(live_vector(catalogue, events), entries(events))


def test_a_window_full_of_one_brand_lifts_that_brands_items_for_an_ambiguous_query() -> None:
    catalogue = FakeCatalogue(TITLES)
    users = {f"fan-{b}": brand_fan(catalogue, b) for b in BRANDS}
    # Three candidates: the re-ranking can only reorder what the query retrieved.
    svc = service(catalogue, users, candidates=3)
    plain = [hit.item_id for hit in search(svc, "stapler", None, k=3).items]
    assert sorted(plain) == ["acme-stapler", "papyrus-stapler", "tidy-stapler"]
    for brand in BRANDS:
        result = search(svc, "stapler", f"fan-{brand}", k=3)
        assert result.personalised
        assert result.why == "live profile"
        assert result.items[0].item_id == f"{brand}-stapler"
        # The profile lifts the brand's stapler; it does not bring in items the query did not find.
        assert sorted(hit.item_id for hit in result.items) == sorted(plain)


def test_each_hit_explains_itself_by_both_scores_and_the_nearest_recent_event() -> None:
    catalogue = FakeCatalogue(TITLES)
    svc = service(catalogue, {"fan": brand_fan(catalogue, "papyrus")})
    result = search(svc, "stapler", "fan", k=3)
    top = result.items[0]
    assert top.item_id == "papyrus-stapler"
    assert top.profile_score is not None
    assert top.score == pytest.approx(0.5 * top.query_score + 0.5 * top.profile_score, abs=1e-6)
    assert top.reason is not None
    assert top.reason.startswith("because you viewed papyrus")
    assert result.to_dict()["items"][0]["reason"] == top.reason
    assert [h.score for h in result.items] == sorted((h.score for h in result.items), reverse=True)


def test_users_without_a_profile_get_exactly_the_query_only_ranking() -> None:
    catalogue = FakeCatalogue(TITLES)
    svc = service(catalogue, {"fan": brand_fan(catalogue, "acme")})
    query_only = service(catalogue, {"fan": brand_fan(catalogue, "acme")}, weight=0.0)
    anonymous = search(svc, "desk lamp", None, k=10)
    unknown = search(svc, "desk lamp", "stranger", k=10)
    weightless = search(query_only, "desk lamp", "fan", k=10)
    assert (anonymous.personalised, anonymous.why) == (False, "no user_id")
    assert (unknown.personalised, unknown.why) == (False, "unknown user")
    assert unknown.items == anonymous.items
    assert [h.item_id for h in weightless.items] == [h.item_id for h in unknown.items]
    assert all(h.profile_score is None and h.reason is None for h in unknown.items)
    assert [h.score for h in unknown.items] == [h.query_score for h in unknown.items]


def test_forgotten_users_get_the_query_ranking_and_pre_forget_activity_is_ignored() -> None:
    catalogue = FakeCatalogue(TITLES)
    old = Event("s1", "gone", EventType.SEARCH, T0, query="papyrus")
    forgotten = UserSignals(None, entries([old]), forgotten_ts_ms=T0 + 1)
    svc = service(catalogue, {"gone": forgotten})
    result = search(svc, "stapler", "gone")
    assert (result.personalised, result.why) == (False, "forgotten user")
    assert result.items == search(svc, "stapler", None).items


def test_recent_searches_personalise_before_the_live_vector_catches_up() -> None:
    catalogue = FakeCatalogue(TITLES)
    searched = Event("s1", "u", EventType.SEARCH, T0, query="tidy")
    svc = service(catalogue, {"u": UserSignals(None, entries([searched]))})
    result = search(svc, "stapler", "u", k=3)
    assert (result.personalised, result.why) == (True, "recent searches")
    assert result.items[0].item_id == "tidy-stapler"
    assert result.items[0].reason == "because you searched 'tidy'"


def test_recent_searches_pull_a_live_profile_towards_them() -> None:
    catalogue = FakeCatalogue(TITLES)
    fan = brand_fan(catalogue, "acme")
    before = search(service(catalogue, {"u": fan}), "stapler", "u", k=3)
    searched = Event("s1", "u", EventType.SEARCH, T0 + 10_000, query="tidy tidy tidy")
    after_signals = UserSignals(fan.vector, (*fan.activity, *entries([searched])))
    after = search(service(catalogue, {"u": after_signals}), "stapler", "u", k=3)
    assert after.why == "live profile and recent searches"
    tidy_before = next(h.profile_score for h in before.items if h.item_id == "tidy-stapler")
    tidy_after = next(h.profile_score for h in after.items if h.item_id == "tidy-stapler")
    assert tidy_before is not None and tidy_after is not None
    assert tidy_after > tidy_before


def test_a_stored_vector_of_another_width_is_not_blended() -> None:
    catalogue = FakeCatalogue(TITLES)
    stale = UserSignals(np.ones(DIM * 2, dtype=np.float32) / np.sqrt(DIM * 2))
    result = search(service(catalogue, {"u": stale}), "stapler", "u")
    assert not result.personalised
    assert result.why.startswith("stored profile could not be read") and "another model" in result.why


def test_out_of_stock_items_never_appear() -> None:
    catalogue = FakeCatalogue(TITLES, out_of_stock={"papyrus-stapler"})
    svc = service(catalogue, {"fan": brand_fan(catalogue, "papyrus")})
    assert "papyrus-stapler" not in [h.item_id for h in search(svc, "stapler", "fan", k=15).items]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "empty"),
        ("   \t ", "empty"),
        ("\u200b\ufeff", "invisible"),
        ("\u3000\u00a0\u2060", "invisible"),
        ("a\x00b", "control"),
        (42, "string"),
        (None, "string"),
    ],
)
def test_malformed_queries_are_refused_naming_the_field(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        clean_query(value)
    assert str(info.value).startswith("q ")


def test_queries_are_stripped_and_k_and_user_id_checked() -> None:
    assert clean_query("  gel pens ") == "gel pens"
    assert clean_query(" " + "x" * (MAX_QUERY_CHARS + 40)) == "x" * MAX_QUERY_CHARS
    assert check_k(10) == 10
    assert check_user_id(None) is None
    for bad_k in (0, 101, True, "5", 2.0):
        with pytest.raises(ValueError, match=r"^k must"):
            check_k(bad_k)
    for bad_user in ("", "x" * 129, 7):
        with pytest.raises(ValueError, match=r"^user_id must"):
            check_user_id(bad_user)
    svc = service(FakeCatalogue(TITLES), {})
    with pytest.raises(ValueError, match=r"^q "):
        search(svc, " ", None)


def test_blend_order_keeps_query_order_without_profile_and_breaks_ties_by_position() -> None:
    q = np.asarray([0.9, 0.8, 0.8, 0.1], dtype=np.float32)
    assert blend_order(q, None, 0.5).tolist() == [0, 1, 2, 3]
    assert blend_order(q, np.ones(4, dtype=np.float32), 0.0).tolist() == [0, 1, 2, 3]
    p = np.asarray([0.0, 0.0, 0.0, 1.0], dtype=np.float32)
    assert blend_order(q, p, 0.2).tolist() == [0, 1, 2, 3]
    assert blend_order(q, p, 0.9).tolist() == [3, 0, 1, 2]


def test_recent_queries_are_distinct_newest_first_and_activity_parsing_is_lenient() -> None:
    docs: list[dict[str, object]] = [
        {"event_id": "a", "type": "search", "ts_ms": 1, "query": "pens"},
        {"event_id": "b", "type": "view", "ts_ms": 2, "item_id": "x"},
        {"event_id": "c", "type": "search", "ts_ms": 3, "query": "lamp"},
        {"event_id": "d", "type": "search", "ts_ms": 4, "query": " pens "},
        {"event_id": "e", "type": "bogus", "ts_ms": 5},
        {"type": "view"},
    ]
    parsed = parse_activity(docs)
    assert [e.event_id for e in parsed] == ["a", "b", "c", "d"]
    assert recent_queries(parsed) == ["pens", "lamp"]
    assert recent_queries(parsed, limit=1) == ["pens"]


def test_query_cache_encodes_each_query_once_and_evicts_the_least_recent() -> None:
    encoder = BagOfWordsEncoder()
    cache = QueryVectorCache(encoder, capacity=2)
    first = cache.encode(["a", "b"])
    cache.encode(["a"])  # "a" becomes the most recent, so "b" goes first
    cache.encode(["c"])
    assert len(cache) == 2
    cache.encode(["a", "b"])
    assert encoder.calls == [["a", "b"], ["c"], ["b"]]
    np.testing.assert_array_equal(cache.encode(["a"])["a"], first["a"])
    assert (cache.hits, cache.misses) == (3, 4)


def test_concurrent_searches_share_one_encoder_batch() -> None:
    catalogue = FakeCatalogue(TITLES)
    svc = service(catalogue, {})
    encoder = catalogue.encoder
    encoder.calls.clear()

    async def many() -> list[SearchResult]:
        return list(
            await asyncio.gather(*(svc.search(q, None, 3) for q in ("stapler", "lamp", "pens", "lamp")))
        )

    results = asyncio.run(many())
    assert len(encoder.calls) == 1
    assert sorted(encoder.calls[0]) == ["lamp", "pens", "stapler"]
    assert results[1].items == results[3].items
    assert results[0].items == search(svc, "stapler", None, 3).items
    assert len(encoder.calls) == 1  # the repeat came from the cache
    assert svc.queries.batches == 1


def test_an_encoder_failure_reaches_every_waiting_search() -> None:
    catalogue = FakeCatalogue(TITLES)
    svc = service(catalogue, {})

    def broken(texts: object) -> np.ndarray:
        raise RuntimeError("encoder down")

    svc.cache.encode_new = broken  # type: ignore[method-assign]

    async def two() -> list[object]:
        return list(
            await asyncio.gather(svc.search("a", None), svc.search("b", None), return_exceptions=True)
        )

    assert [str(r) for r in asyncio.run(two())] == ["encoder down", "encoder down"]
