"""Security settings and guards: Kafka SASL/SSL options reach every client, Redis TLS, the
collector's bearer token and per-client rate limit, and config errors that name the fix."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import faust
import httpx
import pytest
import redis
import redis.asyncio
from hypothesis import given
from hypothesis import strategies as st

from stream.core.errors import ConfigError
from stream.core.settings import Settings, as_environment, load_settings
from stream.ingest.collector import create_collector_app
from stream.ingest.gateway import CollectorConfig
from stream.ingest.rate_limit import RateLimiter, retry_after_header
from stream.kafka.security import aiokafka_security, kafka_python_security
from stream.redis.client import redis_async, redis_sync
from stream.worker.app import faust_credentials
from tests.support.fakes import FakeProducer
from tests.unit.stream.ingest.test_collector import NOW_MS, good

SASL = {
    "PROFILESTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "PROFILESTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "PROFILESTREAM_KAFKA_SASL_USERNAME": "svc-profilestream",
    "PROFILESTREAM_KAFKA_SASL_PASSWORD": "s3cret-pass",
}


def test_sasl_settings_reach_kafka_python_aiokafka_and_faust() -> None:
    settings = load_settings(SASL)
    expected = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-profilestream",
        "sasl_plain_password": "s3cret-pass",
    }
    assert kafka_python_security(settings) == expected
    assert aiokafka_security(settings) == expected
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("svc-profilestream", "s3cret-pass")
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.ssl_context is None


def test_sasl_ssl_adds_a_tls_context_everywhere() -> None:
    settings = load_settings(SASL | {"PROFILESTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    assert isinstance(kafka_python_security(settings)["ssl_context"], ssl.SSLContext)
    assert isinstance(aiokafka_security(settings)["ssl_context"], ssl.SSLContext)
    assert isinstance(faust_credentials(settings).ssl_context, ssl.SSLContext)


def test_plaintext_is_the_default_and_needs_no_credentials() -> None:
    settings = load_settings({})
    assert kafka_python_security(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


def test_sasl_without_credentials_names_the_missing_settings() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"PROFILESTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    message = str(info.value)
    assert "PROFILESTREAM_KAFKA_SASL_USERNAME" in message
    assert "PROFILESTREAM_KAFKA_SASL_PASSWORD" in message


def test_a_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="PROFILESTREAM_KAFKA_SSL_KEY_FILE"):
        load_settings({"PROFILESTREAM_KAFKA_SSL_CERT_FILE": "/etc/ssl/client.pem"})


def test_redis_tls_files_need_a_rediss_url() -> None:
    with pytest.raises(ConfigError, match="rediss://"):
        load_settings({"PROFILESTREAM_REDIS_SSL_CA_FILE": "/etc/ssl/ca.pem"})
    settings = load_settings(
        {
            "PROFILESTREAM_REDIS_URL": "rediss://svc:pw@redis.internal:6380/0",
            "PROFILESTREAM_REDIS_SSL_CA_FILE": "/etc/ssl/ca.pem",
        }
    )
    for client in (redis_sync(settings), redis_async(settings)):
        assert isinstance(client, (redis.Redis, redis.asyncio.Redis))  # PROFILESTREAM_REDIS_CLUSTER unset
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["ssl_ca_certs"] == "/etc/ssl/ca.pem"
        assert (kwargs["username"], kwargs["password"]) == ("svc", "pw")


def test_secrets_never_appear_in_config_errors_and_survive_a_child_environment() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(SASL | {"PROFILESTREAM_KAFKA_SASL_PASSWORD": "s3cret-pass", "PROFILESTREAM_TOP_K": "0"})
    assert "s3cret-pass" not in str(info.value)
    settings = load_settings(SASL)
    assert "s3cret-pass" not in repr(settings)
    assert load_settings(as_environment(settings)) == settings


@given(
    st.lists(st.floats(min_value=0.0, max_value=5.0, allow_nan=False), min_size=1, max_size=200),
    st.floats(min_value=0.5, max_value=50.0),
    st.integers(min_value=1, max_value=20),
)
def test_rate_limiter_never_admits_more_than_burst_plus_rate_times_elapsed(
    gaps_s: list[float], rate_per_s: float, burst: int
) -> None:
    limiter = RateLimiter(rate_per_s, burst)
    now_s, admitted = 0.0, 0
    for gap_s in gaps_s:
        now_s += gap_s
        wait_s = limiter.acquire("client", now_s)
        admitted += wait_s == 0.0
        assert wait_s >= 0.0
        assert admitted <= burst + rate_per_s * now_s + 1e-9


def test_rate_limiter_admits_after_the_wait_it_announced_and_keeps_clients_apart() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=1)
    assert limiter.acquire("a", 10.0) == 0.0
    wait_s = limiter.acquire("a", 10.0)
    assert wait_s == pytest.approx(0.5)
    assert limiter.acquire("b", 10.0) == 0.0  # another client has its own bucket
    assert limiter.acquire("a", 10.0 + wait_s) == 0.0
    assert retry_after_header(0.01) == "1"


def collector(settings: Settings, producer: FakeProducer) -> Any:
    return create_collector_app(
        settings, producer_factory=lambda _: producer, config=CollectorConfig(), clock_ms=lambda: NOW_MS
    )


def post(app: Any, headers: dict[str, str], times: int = 1) -> list[httpx.Response]:
    async def call() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            body = json.dumps(good()).encode()
            return [
                await client.post(
                    "/v1/events", content=body, headers=headers | {"content-type": "application/json"}
                )
                for _ in range(times)
            ]

    return asyncio.run(call())


def test_collector_token_is_required_and_compared_exactly() -> None:
    producer = FakeProducer()
    app = collector(load_settings({}, collector_token="t0ken"), producer)
    (missing,) = post(app, {})
    (wrong,) = post(app, {"authorization": "Bearer t0ken-not"})
    (right,) = post(app, {"authorization": "Bearer t0ken"})
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 202)
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["errors"][0]["field"] == "Authorization"
    assert len(producer.sent) == 1


def test_collector_answers_429_with_retry_after_over_the_rate_limit() -> None:
    producer = FakeProducer()
    app = collector(load_settings({}, collector_rate_limit_per_s=1.0, collector_rate_burst=3), producer)
    responses = post(app, {}, times=5)
    assert [r.status_code for r in responses] == [202, 202, 202, 429, 429]
    assert int(responses[-1].headers["retry-after"]) >= 1
    assert "requests/s" in responses[-1].json()["errors"][0]["reason"]
    assert len(producer.sent) == 3
