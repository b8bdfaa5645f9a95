from __future__ import annotations

from stream.core.events import Event, EventType
from stream.core.settings import load_settings
from stream.core.window import WindowConfig
from stream.profiles.computer import ProfileComputer, ProfileConfig
from stream.profiles.offline import offline_payloads
from tests.support.fakes import BagOfWordsEncoder, FakeCatalogue

TITLES = {
    "stapler": "red metal stapler",
    "staples": "staples for red metal stapler",
    "stapler2": "blue metal stapler",
    "pens": "gel pens black",
    "pens2": "gel pens blue",
    "lamp": "desk lamp led",
    "paper": "printer paper a4",
}
T0 = 1_700_000_000_000


def ev(n: int, user: str, kind: EventType, item: str | None = None, query: str | None = None) -> Event:
    return Event(f"e{n}", user, kind, T0 + n * 1000, item_id=item, query=query)


def computer(catalogue: FakeCatalogue, top_k: int = 3, mmr_lambda: float = 1.0) -> ProfileComputer:
    """The text user tower: profile texts go through the (fake) encoder."""
    config = ProfileConfig(WindowConfig(), top_k=top_k, mmr_lambda=mmr_lambda, user_vector="text")
    return ProfileComputer(BagOfWordsEncoder(), catalogue, config)


def test_recommends_similar_items_excluding_purchased_and_out_of_stock() -> None:
    catalogue = FakeCatalogue(TITLES, out_of_stock={"stapler2"})
    events = [ev(1, "u", EventType.VIEW, "stapler"), ev(2, "u", EventType.PURCHASE, "staples")]
    payload = offline_payloads(events, computer(catalogue))["u"]
    ids = [i["item_id"] for i in payload["items"]]
    assert ids[0] == "stapler"
    assert "staples" not in ids
    assert "stapler2" not in ids
    scores = [i["score"] for i in payload["items"]]
    assert scores == sorted(scores, reverse=True)
    assert payload["window_newest_event_id"] == "e2"
    assert payload["model_version"] == "bow-test"


def test_repeat_purchases_may_be_recommended_when_the_setting_allows() -> None:
    """PROFILESTREAM_EXCLUDE_PURCHASED=false: a bought item (toner, pens) may come back."""
    events = [ev(1, "u", EventType.VIEW, "stapler"), ev(2, "u", EventType.PURCHASE, "staples")]
    config = ProfileConfig(WindowConfig(), top_k=6, user_vector="text", exclude_purchased=False)
    payload = offline_payloads(events, ProfileComputer(BagOfWordsEncoder(), FakeCatalogue(TITLES), config))[
        "u"
    ]
    assert "staples" in [i["item_id"] for i in payload["items"]]
    settings = load_settings({"PROFILESTREAM_EXCLUDE_PURCHASED": "false"})
    assert ProfileConfig.from_settings(settings).exclude_purchased is False
    assert ProfileConfig.from_settings(load_settings({})).exclude_purchased is True


def test_each_item_carries_the_most_similar_window_event_as_reason() -> None:
    events = [ev(1, "u", EventType.VIEW, "lamp"), ev(2, "u", EventType.SEARCH, query="gel pens")]
    payload = offline_payloads(events, computer(FakeCatalogue(TITLES), top_k=4))["u"]
    reasons = {i["item_id"]: i["reason"] for i in payload["items"]}
    assert reasons["lamp"] == "because you viewed desk lamp led"
    assert reasons["pens"] == "because you searched 'gel pens'"


def test_mmr_diversifies_near_duplicates() -> None:
    events = [ev(1, "u", EventType.VIEW, "pens"), ev(2, "u", EventType.VIEW, "pens2")]
    plain = offline_payloads(events, computer(FakeCatalogue(TITLES), top_k=2))["u"]
    diverse = offline_payloads(events, computer(FakeCatalogue(TITLES), top_k=2, mmr_lambda=0.3))["u"]
    assert {i["item_id"] for i in plain["items"]} == {"pens", "pens2"}
    assert len({i["item_id"] for i in diverse["items"]} & {"pens", "pens2"}) == 1


def test_users_are_encoded_in_one_call_and_unknown_only_users_get_no_profile() -> None:
    comp = computer(FakeCatalogue(TITLES))
    events = [
        ev(1, "a", EventType.VIEW, "lamp"),
        ev(2, "b", EventType.VIEW, "paper"),
        ev(3, "c", EventType.VIEW, "not-in-catalogue"),
    ]
    payloads = offline_payloads(events, comp)
    assert sorted(payloads) == ["a", "b"]
    assert len(comp.encoder.calls) == 1  # type: ignore[attr-defined]


def test_items_mode_needs_no_per_user_encoding_and_hybrid_mixes() -> None:
    events = [ev(1, "u", EventType.VIEW, "lamp"), ev(2, "u", EventType.SEARCH, query="gel pens")]
    catalogue = FakeCatalogue(TITLES)
    config = ProfileConfig(WindowConfig(), top_k=3, user_vector="items")
    comp = ProfileComputer(BagOfWordsEncoder(), catalogue, config)
    payload = offline_payloads(events, comp)["u"]
    assert comp.encoder.calls == [["gel pens"]]  # type: ignore[attr-defined]
    assert {i["item_id"] for i in payload["items"]} >= {"lamp", "pens"}
    hybrid = ProfileComputer(
        BagOfWordsEncoder(), catalogue, ProfileConfig(WindowConfig(), top_k=3, user_vector="hybrid")
    )
    assert offline_payloads(events, hybrid)["u"]["items"]


def test_items_mode_encodes_each_query_once_across_batches_with_the_same_result() -> None:
    config = ProfileConfig(WindowConfig(), top_k=3, user_vector="items")
    encoder = BagOfWordsEncoder()
    cached = ProfileComputer(encoder, FakeCatalogue(TITLES), config)
    first = [ev(1, "a", EventType.SEARCH, query="gel pens"), ev(2, "a", EventType.VIEW, "lamp")]
    second = [ev(3, "b", EventType.SEARCH, query="gel pens"), ev(4, "b", EventType.SEARCH, query="stapler")]
    offline_payloads(first, cached)
    again = offline_payloads(second, cached)
    assert encoder.calls == [["gel pens"], ["stapler"]]
    # A computer that never saw "gel pens" before gives the same recommendations.
    fresh = offline_payloads(second, ProfileComputer(BagOfWordsEncoder(), FakeCatalogue(TITLES), config))
    assert again == fresh


def test_items_mode_leaves_out_users_with_nothing_indexed() -> None:
    config = ProfileConfig(WindowConfig(), top_k=3, user_vector="items")
    events = [ev(1, "ghost", EventType.VIEW, "not-in-catalogue"), ev(2, "u", EventType.VIEW, "lamp")]
    payloads = offline_payloads(events, ProfileComputer(BagOfWordsEncoder(), FakeCatalogue(TITLES), config))
    assert set(payloads) == {"u"}
