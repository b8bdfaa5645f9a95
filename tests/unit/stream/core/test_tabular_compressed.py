"""Compressed data files (``x.csv.gz``, ``.bz2``, ``.xz``, ``.zst``: REES46's and Amazon's downloads)
read as they ship, by the same reader rules as plain files."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from stream.core.errors import SourceError
from stream.core.tabular import (
    ReadTally,
    RowRules,
    csv_options,
    format_of,
    read_jsonl_lines,
    read_rows,
)
from stream.core.tabular import reader as reader_module

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
    ".zst": zstandard.ZstdCompressor().compress,
}
# Excel's "CSV UTF-8" in a German locale: a BOM, ';' separators, a decimal comma in an id.
EXCEL_CSV = "\ufeffuser;item;ts\nu1;90001,0;1700000000000\nu2;7;1700000000001\n".encode()


def packed(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(COMPRESSORS[Path(name).suffix](data))
    return path


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_compressed_csv_is_read_with_bom_separator_and_decimal_comma_found(
    tmp_path: Path, suffix: str
) -> None:
    path = packed(tmp_path, f"events.csv{suffix}", EXCEL_CSV)
    assert format_of(path) == "csv"
    delimiter, rules = csv_options(path, RowRules())
    assert delimiter == ";" and rules.decimal_comma
    rows = list(read_rows(path, delimiter=delimiter))
    assert [row.values for row in rows] == [
        {"user": "u1", "item": "90001,0", "ts": "1700000000000"},
        {"user": "u2", "item": "7", "ts": "1700000000001"},
    ]
    assert [row.number for row in rows] == [2, 3]


def test_a_compressed_tsv_is_tab_separated_by_its_inner_suffix(tmp_path: Path) -> None:
    path = packed(tmp_path, "events.tsv.gz", b"user\tq\nu1\ta,b;c\n")
    assert [row.values for row in read_rows(path)] == [{"user": "u1", "q": "a,b;c"}]


def test_a_gzipped_jsonl_is_read_line_by_line(tmp_path: Path) -> None:
    path = packed(tmp_path, "events.jsonl.gz", b'{"user_id":"u1"}\n\xef\xbb\xbf{"user_id":"u2"}\nnot json\n')
    assert [raw for _, raw in read_jsonl_lines(path)] == [
        b'{"user_id":"u1"}',
        b'{"user_id":"u2"}',
        b"not json",
    ]
    tally = ReadTally()
    assert [row.values["user_id"] for row in read_rows(path, tally=tally)] == ["u1", "u2"]
    assert tally.malformed == 1


def test_a_zstd_file_of_several_frames_is_read_to_its_end(tmp_path: Path) -> None:
    compressor = zstandard.ZstdCompressor()
    path = tmp_path / "events.csv.zst"
    path.write_bytes(compressor.compress(b"user,ts\nu1,1\n") + compressor.compress(b"u2,2\n"))
    assert [row.values["user"] for row in read_rows(path)] == ["u1", "u2"]


def test_a_json_array_inside_gzip_is_read_and_bounded_by_its_decompressed_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = packed(tmp_path, "records.json.gz", b'[{"user_id":"u1"},{"user_id":"u2"}]')
    assert [row.values["user_id"] for row in read_rows(path)] == ["u1", "u2"]
    monkeypatch.setattr(reader_module, "MAX_JSON_ARRAY_BYTES", 16)
    with pytest.raises(SourceError, match="once decompressed"):
        list(read_rows(path))


def test_undecodable_bytes_inside_gzip_name_their_line_before_any_row(tmp_path: Path) -> None:
    path = packed(tmp_path, "events.csv.gz", b"user,ts\nu1,1\nM\xfcller,2\n")
    rows = read_rows(path)
    with pytest.raises(SourceError, match=r"line 3: bytes FC .*--encoding cp1252"):
        next(rows)
    assert [row.values["user"] for row in read_rows(path, encoding="cp1252")] == ["u1", "Müller"]


def test_utf16_inside_gzip_is_named_from_the_decompressed_head(tmp_path: Path) -> None:
    path = packed(tmp_path, "events.csv.gz", "user,ts\nu1,1\n".encode("utf-16"))
    with pytest.raises(SourceError, match="--encoding utf-16"):
        list(read_rows(path))
    assert [row.values["user"] for row in read_rows(path, encoding="utf-16")] == ["u1"]


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_cut_short_compressed_data_is_a_source_error_before_any_row(tmp_path: Path, suffix: str) -> None:
    whole = COMPRESSORS[suffix](b"user,ts\n" + b"".join(b"u%d,%d\n" % (n, n) for n in range(2000)))
    path = tmp_path / f"events.csv{suffix}"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SourceError, match="corrupt or cut short"):
        next(read_rows(path))


def test_compressed_parquet_is_refused_naming_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet.gz"
    path.write_bytes(gzip.compress(b"PAR1"))
    with pytest.raises(SourceError, match="Parquet compresses its own pages"):
        list(read_rows(path))
    with pytest.raises(SourceError, match="Parquet compresses its own pages"):
        list(read_rows(path, fmt="parquet"))


def test_a_compression_suffix_without_a_format_before_it_names_the_form(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"events\.csv\.gz"):
        format_of(tmp_path / "events.gz")


def test_gzip_data_under_a_plain_name_names_the_suffix_to_give_it(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(gzip.compress(b"user,ts\nu1,1\n"))
    with pytest.raises(SourceError, match=r"rename it events\.csv\.gz"):
        list(read_rows(path))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("diginetica.zip", "zip"),
        ("taobao.CSV.ZIP", "zip"),
        ("events.tar.gz", "tar"),
        ("events.tgz", "tar"),
        ("events.tar", "tar"),
        ("events.tar.zst", "tar"),
        ("dump.7z", "7-Zip"),
    ],
)
def test_an_archive_is_named_with_unpack_it_first(tmp_path: Path, name: str, kind: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04 not read")
    with pytest.raises(SourceError) as caught:
        format_of(path)
    assert f"a {kind} archive" in str(caught.value)
    assert "unpack it first" in str(caught.value)
