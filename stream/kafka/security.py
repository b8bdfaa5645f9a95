"""Clients for Kafka and Redis built from the settings, security options included.

Every Kafka client (Faust in the worker, kafka-python in the collector, SDK and admin calls,
aiokafka in bulk replay) and every Redis client is made here, so PROFILESTREAM_KAFKA_SECURITY_*,
_SASL_*, _SSL_* and the Redis TLS files apply everywhere alike. Redis ACL users and passwords
travel in PROFILESTREAM_REDIS_URL (``rediss://user:password@host:6379/0``).
"""

from __future__ import annotations

import ssl
from typing import Any

from stream.core.settings import Settings


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (None for the plaintext protocols)."""
    if settings.kafka_security_protocol not in {"SSL", "SASL_SSL"}:
        return None
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
    )
    if settings.kafka_ssl_cert_file is not None and settings.kafka_ssl_key_file is not None:
        context.load_cert_chain(str(settings.kafka_ssl_cert_file), str(settings.kafka_ssl_key_file))
    return context


def _sasl_password(settings: Settings) -> str | None:
    password = settings.kafka_sasl_password
    return password.get_secret_value() if password is not None else None


def kafka_python_security(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": _sasl_password(settings),
        }
    context = kafka_ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    return options


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producer and consumer: the same names as kafka-python's."""
    return kafka_python_security(settings)
