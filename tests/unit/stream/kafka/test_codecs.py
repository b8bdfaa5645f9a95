"""Both Kafka clients can read snappy, lz4 and zstd batches; a missing package is named."""

from __future__ import annotations

import pytest

from stream.core.errors import ConfigError
from stream.kafka import codecs
from stream.kafka.codecs import CODECS, codec_of_error, missing_codecs, require_codecs


@pytest.mark.parametrize("client", ["aiokafka", "kafka-python"])
def test_every_codec_is_installed(client: codecs.Client) -> None:
    assert missing_codecs(client) == []
    require_codecs(client)


@pytest.mark.parametrize(
    ("client", "codec", "package"),
    [
        ("aiokafka", "snappy", "cramjam"),
        ("aiokafka", "zstd", "cramjam"),
        ("kafka-python", "snappy", "python-snappy"),
        ("kafka-python", "lz4", "lz4"),
        ("kafka-python", "zstd", "zstandard"),
    ],
)
def test_a_missing_codec_is_refused_naming_its_package(
    client: codecs.Client, codec: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = codecs._checks(client)
    monkeypatch.setattr(codecs, "_checks", lambda c: real | {codec: lambda: False})
    with pytest.raises(ConfigError) as error:
        require_codecs(client)
    assert f"{codec}-compressed" in str(error.value) and package in str(error.value)


@pytest.mark.parametrize("codec", [*CODECS, "gzip"])
def test_the_codec_of_a_clients_error_is_found(codec: str) -> None:
    assert codec_of_error(f"Libraries for {codec} compression codec not found") == codec


@pytest.mark.parametrize("codec", CODECS)
def test_a_compressed_batch_round_trips_through_both_clients(codec: str) -> None:
    from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
    from kafka.record.default_records import DefaultRecordBatch as KafkaPythonBatch

    attributes = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[codec]
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=attributes,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i in range(3):
        builder.append(i, timestamp=1, key=b"u1", value=b'{"n": %d}' % i, headers=[])
    raw = bytes(builder.build())
    assert [r.value for r in DefaultRecordBatch(raw)] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert [r.value for r in KafkaPythonBatch(raw)] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
