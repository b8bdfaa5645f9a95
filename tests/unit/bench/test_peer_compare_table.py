"""The peer benchmark's table with several runs per cell (bench/peer_compare.py `--repeats`)."""

from __future__ import annotations

from bench.peer_compare import median_runs, table


def run(name: str, rate: int, achieved: float, p99: float | str, n: int) -> dict[str, object]:
    return {
        "implementation": name,
        "offered_events_per_s": rate,
        "achieved_events_per_s": achieved,
        "drained": True,
        "freshness_p50_ms": 100.0,
        "freshness_p99_ms": p99,
        "cpu_ms_per_event": 0.2,
        "run": n,
    }


def test_a_cell_run_three_times_shows_its_median_run_and_the_range() -> None:
    results = [
        run("worker", 4000, 3878.1, 588.2, 1),
        run("worker", 4000, 3690.9, 1960.5, 2),
        run("worker", 4000, 3765.0, 700.0, 3),
        run("quix", 4000, 3768.7, 206.7, 1),
        run("quix", 4000, 3767.2, 237.9, 2),
        run("quix", 4000, 3769.0, 210.0, 3),
    ]
    rows = table(results).splitlines()[2:]
    # The median run by achieved events/s: its own p99, not a median of p99s from other runs.
    assert rows[0] == (
        "| worker | 4,000 | 3,765.0 (3,690.9 to 3,878.1) | 100.0 | 700.0 (588.2 to 1,960.5) | 0.2 | - | - |"
    )
    assert rows[1].startswith(
        "| quix | 4,000 | 3,768.7 (3,767.2 to 3,769.0) | 100.0 | 206.7 (206.7 to 237.9) |"
    )
    assert [len(runs) for _, runs in median_runs(results)] == [3, 3]


def test_one_run_per_cell_reads_as_before_and_a_p99_beyond_the_buckets_shows_as_such() -> None:
    assert table([run("worker", 1000, 989.5, 290.9, 1)]).splitlines()[2] == (
        "| worker | 1,000 | 989.5 | 100.0 | 290.9 | 0.2 | - | - |"
    )
    rows = table([run("worker", 4000, 1700.0, ">60000", 1), run("worker", 4000, 1800.0, 9000.0, 2)])
    assert rows.splitlines()[2].startswith(
        "| worker | 4,000 | 1,700.0 (1,700.0 to 1,800.0) | 100.0 | >60000 (9,000.0 to >60,000) |"
    )
