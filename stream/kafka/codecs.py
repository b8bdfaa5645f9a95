"""Which compression codecs the Kafka clients can read, checked before a client reads a topic.

Producers compress record batches as they are configured to (the Java client and librdkafka
offer gzip, snappy, lz4 and zstd; Kafka Streams and many Go producers use them by default
settings of their deployments), and a consumer must decompress whatever it is given. gzip comes
with Python; aiokafka (the worker, through Faust) needs ``cramjam`` for the other three, and
kafka-python (replay's reader) needs ``python-snappy``, ``lz4`` and ``zstandard``. All are
dependencies of this project; the check names the one that is missing instead of letting the
first compressed record crash the reader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from stream.core.errors import ConfigError

Client = Literal["aiokafka", "kafka-python"]
CODECS = ("snappy", "lz4", "zstd")
# The package each client decompresses each codec with (as the clients' own extras name them).
PACKAGES: dict[Client, dict[str, str]] = {
    "aiokafka": {"snappy": "cramjam", "lz4": "cramjam", "zstd": "cramjam"},
    "kafka-python": {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"},
}


def _checks(client: Client) -> dict[str, Callable[[], bool]]:
    if client == "aiokafka":
        from aiokafka import codec as aiokafka_codec

        return {
            "snappy": aiokafka_codec.has_snappy,
            "lz4": aiokafka_codec.has_lz4,
            "zstd": aiokafka_codec.has_zstd,
        }
    from kafka import codec as kafka_codec

    return {"snappy": kafka_codec.has_snappy, "lz4": kafka_codec.has_lz4, "zstd": kafka_codec.has_zstd}


def missing_codecs(client: Client) -> list[str]:
    """The codecs of `CODECS` that `client` cannot decompress here."""
    checks = _checks(client)
    return [codec for codec in CODECS if not checks[codec]()]


def missing_codecs_message(client: Client, missing: list[str]) -> str:
    """One line naming the missing codecs, their packages and the fix."""
    packages = sorted({PACKAGES[client][codec] for codec in missing})
    return (
        f"{client} cannot read {'/'.join(missing)}-compressed Kafka records: the Python package"
        f"{'s' if len(packages) > 1 else ''} {', '.join(packages)} "
        f"{'are' if len(packages) > 1 else 'is'} not installed; install the project's dependencies "
        "(`deploy/local/install`, or `pip install -e .`)"
    )


def require_codecs(client: Client) -> None:
    """Raise ConfigError naming the codecs `client` cannot decompress, if any."""
    missing = missing_codecs(client)
    if missing:
        raise ConfigError(missing_codecs_message(client, missing))


def codec_of_error(message: str) -> str | None:
    """The codec a client's "Libraries for X compression codec not found" error names, if any."""
    for codec in (*CODECS, "gzip"):
        if f"for {codec} compression" in message:
            return codec
    return None
