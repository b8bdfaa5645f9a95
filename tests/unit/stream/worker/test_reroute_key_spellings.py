"""A record keyed by another spelling of its user id (NFD, "4242.0") is processed on that id's
partition: sent there keyed by the id's own spelling when it is elsewhere, kept when it is there;
and the worker's clamped receive times are counted."""

from __future__ import annotations

import asyncio
import time
import unicodedata
from types import SimpleNamespace
from typing import Any

from stream.core.batch import BatchOutcome
from stream.core.decode import DecodedBatch
from stream.core.events import EventType
from stream.core.window import Window, WindowEvent
from stream.kafka.bulk_sender import default_partition
from stream.profiles.computer import Timings
from stream.worker.app import _observe, store_windows
from stream.worker.decode_ahead import record_timestamp_ms
from stream.worker.metrics import WorkerMetrics
from stream.worker.reroute import keep_own

PARTITIONS = 12
ALL = list(range(PARTITIONS))
NFC_IDS = [f"Jos\u00e9-{i}" for i in range(40)]


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def record(key: bytes | None, partition: int, offset: int = 0) -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(
            key=key, value=b"{}", partition=partition, topic="events", offset=offset, headers=[]
        )
    )


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **kwargs: Any) -> asyncio.Future[None]:
        self.sent.append(kwargs)
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


def test_a_record_keyed_by_another_spelling_goes_to_the_ids_partition_keyed_by_its_spelling() -> None:
    # As the Java client places them: murmur2 of the bytes of the key as the producer spelt it.
    batch = [
        record(nfd(u).encode(), default_partition(nfd(u).encode(), ALL), n) for n, u in enumerate(NFC_IDS)
    ]
    batch += [record(b"4242.0", default_partition(b"4242.0", ALL), 99)]
    topic, metrics = FakeTopic(), WorkerMetrics()
    kept = asyncio.run(keep_own(topic, batch, PARTITIONS, metrics))
    ids = [*NFC_IDS, "4242"]
    homes = {u.encode(): default_partition(u.encode(), ALL) for u in ids}
    assert topic.sent, "murmur2 of NFD and NFC agree on all 40 keys: the test proves nothing"
    for sent in topic.sent:
        assert sent["key"] in homes
        assert sent["partition"] == homes[sent["key"]]
    assert b"4242" in [s["key"] for s in topic.sent]
    # The ones already on their id's partition stay here, with the key as written.
    for e in kept:
        assert e.message.key is not None
        key = unicodedata.normalize("NFC", e.message.key.decode()).encode()
        assert homes[key] == e.message.partition
    assert len(kept) + len(topic.sent) == len(batch)
    assert metrics.registry.get_sample_value("profilestream_rekeyed_records_total") == len(topic.sent)
    assert metrics.registry.get_sample_value("profilestream_misrouted_records_total") == 0


def test_records_keyed_by_the_ids_own_spelling_on_its_partition_stay_and_nothing_is_sent() -> None:
    batch = [record(u.encode(), default_partition(u.encode(), ALL)) for u in NFC_IDS]
    batch += [record(b'"quoted"', default_partition(b'"quoted"', ALL)), record(None, 3)]
    topic, metrics = FakeTopic(), WorkerMetrics()
    assert asyncio.run(keep_own(topic, batch, PARTITIONS, metrics)) == batch
    assert topic.sent == []


def test_a_window_of_a_record_kept_with_another_key_spelling_is_stored() -> None:
    # The changelog write finds the batch's record by the user id the key names: an NFD-keyed
    # record on its id's partition raised KeyError here, and the batch was quarantined.
    user = NFC_IDS[0]
    batch = [record(nfd(user).encode(), default_partition(user.encode(), ALL))]
    window = Window(events=(WindowEvent("e1", EventType.VIEW, 1),))
    stored: list[tuple[bytes, Any]] = []
    changelog: Any = SimpleNamespace(set=lambda key, value, event: stored.append((key, event)))
    cache: Any = SimpleNamespace(encode=lambda key, w: b"w")
    store_windows(changelog, cache, {user: window}, {}, batch)
    assert stored == [(user.encode(), batch[0])]


def test_observe_counts_clamped_receive_times_and_reads_faust_timestamps_in_ms() -> None:
    metrics = WorkerMetrics()
    _observe(
        metrics,
        batch=[],
        decoded=DecodedBatch(clamped_received=3),
        outcome=BatchOutcome(changed=[], forgets=[], popularity={}, late=0, duplicates=0),
        profiles=0,
        timings=Timings(encode_ms=0.0, rank_ms=0.0),
        started_s=time.perf_counter(),
    )
    assert metrics.registry.get_sample_value("profilestream_clamped_received_total") == 3
    stamped: Any = SimpleNamespace(message=SimpleNamespace(timestamp=1_764_000_000.123))
    unstamped: Any = SimpleNamespace(message=SimpleNamespace(timestamp=None))
    assert record_timestamp_ms(stamped) == 1_764_000_000_123
    assert record_timestamp_ms(unstamped) is None
