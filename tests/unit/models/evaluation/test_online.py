"""The pure parts of the online evaluation: rows to events, ranks from lists, list comparison."""

from __future__ import annotations

from pathlib import Path

from models.data.amazon import EvalRow, history_window
from models.evaluation.online import (
    ONLINE_TOP_K,
    OnlineEvalReport,
    eval_settings,
    list_differences,
    list_ranks,
    online_rows,
)
from models.evaluation.recommend import Metrics, summarise
from stream.core.batch import group_by_user
from stream.core.events import EventType
from stream.core.settings import load_settings
from stream.core.window import Window, WindowConfig, apply_events


def test_each_row_is_a_user_whose_window_is_the_offline_evaluations() -> None:
    rows = [
        EvalRow("alice", ("a", "b", "c"), "d"),
        EvalRow("alice", ("b", "c", "d"), "e"),
        EvalRow("bob", (), "x"),
    ]
    online = online_rows(rows, "test")
    assert [r.user_id for r in online] == ["test-000000", "test-000001", "test-000002"]
    assert [r.target for r in online] == ["d", "e", "x"]
    assert online[2].events == ()
    events = [e for r in online for e in r.events]
    assert len({e.event_id for e in events}) == len(events)  # unique across rows
    assert all(e.type is EventType.PURCHASE for e in events)
    config = WindowConfig()
    by_user = group_by_user(events)
    for row, source in zip(online[:2], rows[:2], strict=True):
        window = apply_events(Window(), by_user[row.user_id], config).window
        expected = history_window(source.history, config)
        assert [(e.item_id, e.ts_ms, e.type) for e in window.events] == [
            (e.item_id, e.ts_ms, e.type) for e in expected.events
        ]


def test_ranks_come_from_the_lists_and_absent_targets_miss() -> None:
    lists = [["a", "b", "c"], ["x"], None, []]
    ranks = list_ranks(lists, ["c", "y", "a", "a"])
    assert ranks.tolist() == [2, -1, -1, -1]
    metrics = summarise(ranks)
    assert metrics.at(5) == (0.25, 0.25 * 0.5)  # one hit of four at rank 2: 1 / log2(4)
    assert metrics.mrr == 0.25 / 3


def test_list_differences_name_each_kind_of_mismatch() -> None:
    offline = {"u1": [("a", 0.9), ("b", 0.8)], "u2": [("c", 0.5)], "u3": [("d", 0.4)]}
    assert list_differences(dict(offline), offline) == []
    online = {
        "u1": [("b", 0.8), ("a", 0.9)],  # order
        "u2": [("c", 0.5 + 1e-3)],  # score
        "u4": [("e", 0.1)],  # a user offline has no list for
    }
    problems = list_differences(online, offline)
    assert len(problems) == 4
    assert problems[0].startswith("u1: online ['b', 'a']")
    assert "scores differ" in problems[1]
    assert problems[2] == "u3: missing online"
    assert problems[3] == "u4: missing offline"
    assert list_differences({"u2": [("c", 0.5 + 1e-5)]}, {"u2": [("c", 0.5)]}) == []


def test_the_report_is_equal_only_without_differences() -> None:
    metrics = summarise(list_ranks([["a"]], ["a"]))
    other = summarise(list_ranks([["b"]], ["a"]))

    def report(offline_metrics: Metrics, different: int) -> OnlineEvalReport:
        return OnlineEvalReport(
            dataset="d",
            split="test",
            rows=1,
            events=1,
            user_vector="items",
            model_version="m",
            online=metrics,
            offline=offline_metrics,
            users_with_lists=1,
            differences=("u: x",) * different,
            different_users=different,
            drain_s=1.0,
            seconds=2.0,
        )

    assert report(metrics, 0).equal
    assert not report(metrics, 1).equal
    assert not report(other, 0).equal
    text = report(metrics, 0).to_markdown()
    assert "equal: every user's Redis list is the offline one" in text
    assert f"top {ONLINE_TOP_K} in Redis" in text
    assert report(other, 1).to_dict()["equal"] is False


def test_the_evaluation_runs_in_a_namespace_of_its_own(tmp_path: Path) -> None:
    served = load_settings({})
    run = eval_settings(served, tmp_path, "abc")
    assert "eval-abc" in run.events_topic and run.events_topic != served.events_topic
    assert run.dead_letter_topic != served.dead_letter_topic
    assert run.consumer_group != served.consumer_group
    assert not run.redis_key_prefix.startswith(served.redis_key_prefix)
    assert (run.index_dir, run.data_dir, run.top_k) == (tmp_path / "index", tmp_path / "data", ONLINE_TOP_K)
    assert run.model_dir == served.model_dir  # the served model is what is evaluated
