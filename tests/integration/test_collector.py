"""The real collector (uvicorn on a free port) in front of the real Kafka of the test instance."""

from __future__ import annotations

import gzip
import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from kafka import KafkaConsumer, TopicPartition
from schemathesis import GenerationMode

from stream.core.events import MAX_QUERY_CHARS
from stream.core.settings import Settings
from stream.ingest.collector import create_collector_app
from stream.ingest.gateway import CollectorConfig
from stream.kafka.topics import ensure_topics
from tests.integration.conftest import free_port
from tests.support.servers import serving_in_thread

pytestmark = pytest.mark.integration


@contextmanager
def running_collector(settings: Settings, **config_options: Any) -> Iterator[str]:
    """Serve the collector app with uvicorn in a thread on a free port; yields its base URL."""
    port = free_port()
    config = CollectorConfig(port=port, **config_options)
    app = create_collector_app(settings, config=config)
    with serving_in_thread(app, port, "the collector", 30) as url:
        yield url


def consume_all(settings: Settings, topic: str) -> list[tuple[bytes | None, dict[str, Any], int]]:
    """Every record of `topic` up to its current end: (key, decoded value, partition)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers, group_id=None, enable_auto_commit=False
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[tuple[bytes | None, dict[str, Any], int]] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, "records did not arrive within 60 s"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records.extend((r.key, json.loads(r.value), tp.partition) for r in batch)
        return records
    finally:
        consumer.close()


def event(n: int, user: str = "u1", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": f"c-{n}",
        "user_id": user,
        "type": "view",
        "item_id": f"sku-{n}",
        "ts_ms": int(time.time() * 1000) - 1000,
    }
    doc.update(changes)
    return doc


def test_a_good_batch_lands_in_the_topic_keyed_and_in_order(isolated: Settings) -> None:
    ensure_topics(isolated)
    batch = [event(n, user=f"u{n % 4}") for n in range(40)]
    with running_collector(isolated) as base:
        assert httpx.get(f"{base}/readyz", timeout=30).status_code == 200
        response = httpx.post(f"{base}/v1/events", json=batch, timeout=30)
        assert response.status_code == 202, response.text
        assert response.json() == {
            "accepted": 40,
            "rejected": [],
            "truncated": 0,
            "clamped": 0,
            "clamped_events": [],
        }
    records = consume_all(isolated, isolated.events_topic)
    assert sorted(r[1]["event_id"] for r in records) == sorted(e["event_id"] for e in batch)
    for key, value, _ in records:
        assert key == value["user_id"].encode()
    for user in {e["user_id"] for e in batch}:
        sent = [e["event_id"] for e in batch if e["user_id"] == user]
        assert [v["event_id"] for k, v, _ in records if v["user_id"] == user] == sent
        assert len({p for _, v, p in records if v["user_id"] == user}) == 1


def test_malformed_input_gets_a_4xx_naming_the_field_and_nothing_lands(isolated: Settings) -> None:
    ensure_topics(isolated)
    cases: list[tuple[bytes, str, int, str]] = [
        (b"{oops", "application/json", 400, "$"),
        (json.dumps(event(1, ts_ms="soon")).encode(), "application/json", 422, "ts_ms"),
        (
            json.dumps([event(1, type="like"), event(2, user_id="\u200b")]).encode(),
            "application/json",
            422,
            "type",
        ),
        (json.dumps(event(1)).encode(), "application/json", 400, "$"),  # labelled gzip below
        (gzip.compress(b"[" + b" " * 3_000_000 + b"]"), "application/json", 413, "$"),  # gzip bomb
        (json.dumps(event(1)).encode(), "application/json", 415, "Content-Encoding"),  # br below
        (json.dumps(event(1, item_id=None)).encode(), "application/json", 422, "item_id"),
        (json.dumps(event(1, price=3)).encode(), "application/json", 422, "price"),
        (b"x" * 2_000_000, "application/json", 413, "$"),
        (json.dumps(event(1)).encode(), "application/xml", 415, "$"),
    ]
    encodings = {3: "gzip", 4: "gzip", 5: "br"}
    with running_collector(isolated) as base:
        for n, (body, content_type, status, field_name) in enumerate(cases):
            headers = {"content-type": content_type}
            if n in encodings:
                headers["content-encoding"] = encodings[n]
            response = httpx.post(f"{base}/v1/events", content=body, headers=headers, timeout=30)
            assert response.status_code == status, (body[:80], response.text)
            assert field_name in [e["field"] for e in response.json()["errors"]], response.text
    assert consume_all(isolated, isolated.events_topic) == []


def test_a_gzip_batch_from_a_fast_clock_lands_partially_stamped_and_corrected(isolated: Settings) -> None:
    """Field cases f01 (gzip), f03 (one bad event in a batch) and the clock-ahead snippet mode."""
    ensure_topics(isolated)
    skew_ms = 25 * 3600 * 1000
    client_now = int(time.time() * 1000) + skew_ms
    batch = [event(n, ts_ms=client_now - 1000) for n in range(4)]
    batch[1]["type"] = "like"
    batch[2].update(type="search", item_id=None, query="pasted " + "x" * 1000)
    body = gzip.compress(json.dumps({"sent_at_ms": client_now, "events": batch}).encode())
    with running_collector(isolated) as base:
        before = int(time.time() * 1000)
        response = httpx.post(
            f"{base}/v1/events",
            content=body,
            headers={"content-type": "text/plain", "content-encoding": "gzip"},
            timeout=30,
        )
        after = int(time.time() * 1000)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["accepted"], answer["truncated"], answer["clamped"]) == (3, 1, 0)
    assert [(e["index"], e["field"]) for e in answer["rejected"]] == [(1, "type")]
    records = sorted(
        (r[1] for r in consume_all(isolated, isolated.events_topic)), key=lambda r: r["event_id"]
    )
    assert [r["event_id"] for r in records] == ["c-0", "c-2", "c-3"]
    for record in records:
        assert before <= record["received_ms"] <= after
        assert record["ts_ms"] == record["received_ms"] - 1000  # the client's day of skew taken out
    assert len(records[1]["query"]) == MAX_QUERY_CHARS


def test_kafka_down_gives_503_with_retry_after(isolated: Settings) -> None:
    dead = isolated.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    with running_collector(dead, ack_timeout_s=2.0, retry_after_s=3) as base:
        response = httpx.post(f"{base}/v1/events", json=event(1), timeout=60)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "3"
        assert "did not answer" in response.json()["errors"][0]["reason"]
        ready = httpx.get(f"{base}/readyz", timeout=60)
        assert ready.status_code == 503
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def test_schemathesis_finds_no_server_error_and_answers_match_the_schema(isolated: Settings) -> None:
    ensure_topics(isolated)
    with running_collector(isolated) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert {op.path for op in operations} == {"/v1/events", "/healthz", "/readyz"}
        statuses: list[tuple[str, int]] = []
        for operation, mode in itertools.product(operations, GenerationMode):
            if operation.path != "/v1/events" and mode is GenerationMode.NEGATIVE:
                continue  # no parameters or body: nothing to break
            examples = 60 if operation.path == "/v1/events" else 3

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(
                max_examples=examples,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            )
            def call(case: Any) -> None:
                response = case.call_and_validate(base_url=base, checks=CHECKS)
                statuses.append((case.operation.path, response.status_code))

            call()
    # The generated bodies reached both sides of the validator, so the run exercised real produces.
    assert ("/v1/events", 202) in statuses
    assert any(path == "/v1/events" and 400 <= status < 500 for path, status in statuses)
