"""A record on another partition than murmur2(key) gives is found and given its user's partition."""

from __future__ import annotations

import zlib

import pytest

from stream.kafka.bulk_sender import default_partition
from stream.worker.reroute import split_misrouted

USERS = [f"user-{i}" for i in range(40)]


@pytest.mark.parametrize("partitions", [2, 4, 8, 12])
def test_crc32_placed_records_are_moved_to_their_murmur2_partition(partitions: int) -> None:
    # librdkafka's default partitioner (consistent_random): CRC32 of the key.
    records = [(u.encode(), zlib.crc32(u.encode()) % partitions) for u in USERS]
    kept, moved = split_misrouted(records, partitions, key_of=lambda r: r[0], partition_of=lambda r: r[1])
    all_partitions = list(range(partitions))
    assert moved, "CRC32 and murmur2 agree on every one of 40 keys: the test proves nothing"
    for record, target in moved:
        assert target == default_partition(record[0], all_partitions) != record[1]
    for record in kept:
        assert default_partition(record[0], all_partitions) == record[1]
    assert len(kept) + len(moved) == len(records)


@pytest.mark.parametrize("partitions", [1, 3, 4])
def test_murmur2_placed_and_keyless_records_stay(partitions: int) -> None:
    all_partitions = list(range(partitions))
    records: list[tuple[bytes | None, int]] = [
        (u.encode(), default_partition(u.encode(), all_partitions)) for u in USERS
    ]
    records += [(None, p) for p in all_partitions]
    kept, moved = split_misrouted(records, partitions, key_of=lambda r: r[0], partition_of=lambda r: r[1])
    assert kept == records and moved == []
