"""Online equals offline (issue 6, step 4): histories through a real worker, Kafka and Redis with the
real MiniLM encoder, scored from Redis, against the stream's offline recomputation."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient
from redis import Redis

from models.data.amazon import load_dataset
from models.evaluation.online import run_online_eval, write_report
from stream.core.settings import Settings
from tests.support.rec_fixtures import write_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("user_vector", ["items", "text", "last_item"])
def test_metrics_from_redis_equal_the_offline_evaluation(
    isolated: Settings, tmp_path: Path, user_vector: str
) -> None:
    dataset_dir = write_dataset(tmp_path / "dataset")
    rows = load_dataset(dataset_dir).rows["test"]
    # A short prefix: the evaluation's namespace prepends to it, within the 64-character limit.
    prefix = f"t:{uuid.uuid4().hex[:8]}"
    settings = isolated.model_copy(
        update={"user_vector": user_vector, "batch_max_wait_ms": 100, "redis_key_prefix": prefix}
    )
    topics_before = _topics(settings)

    report = run_online_eval(settings, dataset_dir, tmp_path / "work", os.environ, split="test")

    assert report.equal, report.differences
    assert report.rows == len(rows)
    assert report.events == sum(len(row.history) for row in rows)
    # Every row's history holds indexed items with titles, so the stream wrote a list for each.
    assert report.users_with_lists == len(rows)
    # Users stay inside one topic, so the stream finds the next item often; a broken pipeline
    # (empty lists, wrong items) would not.
    assert report.online.at(20)[0] > 0.3
    assert report.online == report.offline
    paths = write_report(report, tmp_path / "out")
    assert {p.name for p in paths} == {"online_eval.json", "online_eval.md"}
    # The evaluation's namespace is gone: no topic and no Redis key left behind.
    assert _topics(settings) == topics_before
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        assert not list(redis.scan_iter(match=f"ns-eval-*:{prefix}:*"))
    finally:
        redis.close()


def _topics(settings: Settings) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers)
    try:
        return {t for t in admin.list_topics() if "ns-eval-" in t}
    finally:
        admin.close()
