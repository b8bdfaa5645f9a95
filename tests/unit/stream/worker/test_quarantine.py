"""Quarantine: a record that fails alone is isolated by halving and dead-lettered; the rest runs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import redis.exceptions

from stream.core.errors import ServiceUnavailable
from stream.worker.quarantine import is_transient, process_isolating


class Processor:
    def __init__(self, poison: set[int], error: Exception | None = None) -> None:
        self.poison = poison
        self.error = error
        self.done: list[int] = []
        self.calls = 0

    async def __call__(self, part: Sequence[int]) -> None:
        self.calls += 1
        if self.poison & set(part):
            raise self.error or ValueError(f"bad record in {list(part)}")
        self.done.extend(part)


def test_one_poison_record_is_quarantined_and_every_other_record_processed_in_order() -> None:
    process = Processor({13})
    poisoned = asyncio.run(process_isolating(list(range(40)), process, max_attempts=3))
    assert [record for record, _ in poisoned] == [13]
    assert "bad record in [13]" in str(poisoned[0][1])
    assert process.done == [n for n in range(40) if n != 13]


def test_a_batch_of_poison_records_only_is_quarantined_whole() -> None:
    process = Processor({0, 1})
    poisoned = asyncio.run(process_isolating([0, 1], process, max_attempts=2))
    assert [record for record, _ in poisoned] == [0, 1]


def test_a_record_that_succeeds_on_a_later_attempt_is_not_quarantined() -> None:
    failures = iter([True, True, False])

    async def flaky(part: Sequence[int]) -> None:
        if next(failures, False):
            raise ValueError("flaky")

    assert asyncio.run(process_isolating([7], flaky, max_attempts=3)) == []


@pytest.mark.parametrize(
    "error",
    [
        ServiceUnavailable("redis down"),
        ConnectionRefusedError(),
        redis.exceptions.ConnectionError("gone"),
        redis.exceptions.TimeoutError("slow"),
    ],
)
def test_a_peer_failure_is_raised_at_once_for_redelivery_never_quarantined(error: Exception) -> None:
    process = Processor({3}, error)
    with pytest.raises(type(error)):
        asyncio.run(process_isolating(list(range(8)), process, max_attempts=3))
    assert process.calls == 1


def test_errors_raised_from_a_peer_failure_count_as_transient() -> None:
    try:
        try:
            raise redis.exceptions.ConnectionError("reset")
        except redis.exceptions.ConnectionError as exc:
            raise RuntimeError("write failed") from exc
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(KeyError("x"))


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        redis.exceptions.MasterDownError("MASTERDOWN"),
        redis.exceptions.TryAgainError("TRYAGAIN"),
        redis.exceptions.MovedError("3999 127.0.0.1:29501"),
        redis.exceptions.SlotNotCoveredError("slot 3999 not covered"),
        redis.exceptions.ClusterError("TTL exhausted"),
        redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
    ],
)
def test_a_redis_cluster_failover_is_a_peer_failure(error: Exception) -> None:
    """During a failover a forget's identity-link read may meet these, and a full Redis refuses
    every write: redeliver, never quarantine."""
    assert is_transient(error)
    assert not is_transient(redis.exceptions.ResponseError("WRONGTYPE"))
