"""Files that mix UTF-8 with cp1252 (exports concatenated from several tools), and UTF-8 files
read with a single-byte encoding: never read as mojibake (``é`` as ``Ã©``), read line by line
with ``--encoding utf-8,cp1252``, or refused naming the line and that option."""

from __future__ import annotations

import codecs
import gzip
from pathlib import Path

import pytest

from stream.core.errors import SourceError
from stream.core.tabular import ReadTally, check_encoding, read_rows
from stream.core.tabular.encodings import is_single_byte
from stream.core.tabular.reader import _HEAD_BYTES

HEADER = "event_id,user_id,type,query,ts_ms\n"
UTF8_ROWS = "e1,u1,search,café crème,1764000000000\ne2,u2,search,naïve “x”,1764000000001\n"
CP1252_ROW = "e3,u3,search,£5 café — ok,1764000000002\n"


def mixed(tmp_path: Path, name: str = "mixed.csv") -> Path:
    path = tmp_path / name
    data = (HEADER + UTF8_ROWS).encode("utf-8") + CP1252_ROW.encode("cp1252")
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(codecs.BOM_UTF8 + data))
    else:
        path.write_bytes(data)
    return path


def search_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    """`path` written as a CSV file of one search per (encoding, query), each row in its encoding."""
    body = b"".join(f"e{i},u1,search,{q},1764000000000\n".encode(e) for i, (e, q) in enumerate(rows))
    path.write_bytes(HEADER.encode() + body)
    return path


def queries(path: Path, encoding: str) -> list[str]:
    return [row.values["query"] for row in read_rows(path, encoding=encoding)]


def test_a_mixed_file_read_as_utf8_is_refused_naming_the_mixed_encoding(tmp_path: Path) -> None:
    with pytest.raises(
        SourceError, match=r"line 4: bytes A3 .*mixes encodings; pass --encoding utf-8,cp1252"
    ):
        queries(mixed(tmp_path), "utf-8")


def test_a_mixed_file_read_as_cp1252_is_refused_not_misread(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as raised:
        queries(mixed(tmp_path), "cp1252")
    assert "line 2: 'e1,u1,search,cafÃ© crÃ¨me," in str(raised.value)
    assert "reads like UTF-8 text decoded as cp1252 ('e1,u1,search,café crème," in str(raised.value)
    assert str(raised.value).endswith("the file mixes UTF-8 with cp1252: pass --encoding utf-8,cp1252")


def test_a_utf8_file_read_with_a_single_byte_encoding_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "utf8.csv"
    path.write_text(HEADER + UTF8_ROWS, encoding="utf-8")
    with pytest.raises(SourceError, match="the file is UTF-8: leave --encoding out"):
        queries(path, "latin-1")


@pytest.mark.parametrize("name", ["mixed.csv", "mixed.csv.gz"])
def test_utf8_with_a_fallback_reads_each_part_in_its_own_encoding(tmp_path: Path, name: str) -> None:
    assert queries(mixed(tmp_path, name), "utf-8,cp1252") == ["café crème", "naïve “x”", "£5 café — ok"]
    assert queries(mixed(tmp_path, name), "UTF8,Windows-1252") == ["café crème", "naïve “x”", "£5 café — ok"]


def test_utf8_with_a_fallback_reads_json_lines_too(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    first = '{"event_id":"e1","user_id":"u1","type":"search","query":"café","ts_ms":1764000000000}\n'
    second = '{"event_id":"e2","user_id":"u1","type":"search","query":"£5 café","ts_ms":1764000000001}\n'
    path.write_bytes(first.encode("utf-8") + second.encode("cp1252"))
    assert queries(path, "utf-8,cp1252") == ["café", "£5 café"]


def test_a_utf8_letter_split_between_two_checked_chunks_is_still_found(tmp_path: Path) -> None:
    # The check reads the file in chunks; "é" is cut between the first two.
    path = tmp_path / "split.csv"
    head = (HEADER + "e1,u1,search,").encode()
    filler = b"a" * (_HEAD_BYTES - len(head) - 1)
    path.write_bytes(head + filler + "é,1764000000000\n".encode())
    with pytest.raises(SourceError, match="reads like UTF-8 text decoded as cp1252"):
        queries(path, "cp1252")


def test_a_plain_cp1252_file_reads_as_before(tmp_path: Path) -> None:
    path = tmp_path / "cp.csv"
    path.write_bytes((HEADER + CP1252_ROW).encode("cp1252"))
    assert queries(path, "cp1252") == ["£5 café — ok"]
    assert queries(path, "utf-8,cp1252") == ["£5 café — ok"]


def test_only_a_single_byte_fallback_is_a_mixed_encoding() -> None:
    assert check_encoding("utf-8,cp1252") == "utf-8,cp1252"
    for name in ("utf-8,utf-16", "utf-8,shift_jis", "utf-8,nonesuch"):
        with pytest.raises(SourceError, match="utf-8,cp1252 for a file that mixes"):
            check_encoding(name)
    assert is_single_byte("cp1252") and is_single_byte("latin-1")
    assert not is_single_byte("utf-8") and not is_single_byte("utf-8-sig") and not is_single_byte("utf-16")


# Real single-byte text whose bytes happen to hold valid UTF-8 pairs: "ß…" is DF 85, "é\xa0»" is
# E9 A0 BB (a fresh-eyes pass found each refused, and the suggested fix misreading them).
LEGACY_TEXTS = [
    ("cp1252", "„Fuß“ Größe 42"),
    ("cp1252", "Gruß… und Tschüß"),
    ("cp1252", "« café\xa0» très bon"),
    ("latin-1", "ÉTÉ\xa0! soldes"),
    ("cp1251", "тариф «МТС» для ВСЁ"),  # noqa: RUF001 (Cyrillic capitals, as written)
]


@pytest.mark.parametrize(("encoding", "query"), LEGACY_TEXTS)
def test_real_single_byte_text_reads_with_its_encoding(tmp_path: Path, encoding: str, query: str) -> None:
    assert queries(search_rows(tmp_path / "legacy.csv", [(encoding, query)]), encoding) == [query]


def test_a_single_byte_file_read_as_utf8_is_not_called_mixed(tmp_path: Path) -> None:
    # The only UTF-8-looking pair is on the failing line itself: one encoding, not two.
    path = search_rows(tmp_path / "legacy.csv", [("cp1252", "Gruß… und Tschüß")])
    with pytest.raises(SourceError, match="the file is in another encoding"):
        queries(path, "utf-8")


def test_a_utf8_character_cut_by_the_end_of_the_file_is_a_truncated_row_not_fallback_text(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cut.csv"
    header = "event_id,user_id,type,ts_ms,query\n"
    path.write_bytes(
        (header + "e1,u1,search,1764000000000,ok\ne2,u1,search,1764000000000,caf").encode() + "€".encode()[:2]
    )
    tally = ReadTally()
    assert [row.values["query"] for row in read_rows(path, encoding="utf-8,cp1252", tally=tally)] == ["ok"]
    assert tally.malformed == 1 and "ends inside a character" in tally.first_malformed[0]


@pytest.mark.parametrize("name", ["utf-8,ascii", "idna", "utf-8,idna", "utf-8,punycode"])
def test_codecs_that_are_not_text_encodings_are_refused_cleanly(tmp_path: Path, name: str) -> None:
    path = mixed(tmp_path)
    with pytest.raises(SourceError):
        queries(path, name)


def test_a_cp1252_line_whose_bytes_form_utf8_pairs_reads_as_cp1252_in_a_mixed_file(tmp_path: Path) -> None:
    # "É®" is C9 AE, U+026E in UTF-8; the line is cp1252 (a third fresh-eyes pass).
    legacy = ["NESCAFÉ® Gold", "„Gruß“", "CAFÉ\u2019S", "Fuß\u2013Creme", "CAFÉ™"]
    rows = [("utf-8", "café crème"), *(("cp1252", q) for q in legacy), ("utf-8", "Nike™ shoes")]
    assert queries(search_rows(tmp_path / "mixed.csv", rows), "utf-8,cp1252") == [q for _, q in rows]


@pytest.mark.parametrize(
    ("encoding", "query"), [("cp1252", "Nike™ shoes"), ("cp1251", "Москва"), ("cp1250", "¥ 50")]
)
def test_utf8_text_ftfy_lets_through_is_refused_too(tmp_path: Path, encoding: str, query: str) -> None:
    path = search_rows(tmp_path / "utf8.csv", [("utf-8", query)])
    with pytest.raises(SourceError, match="the file is UTF-8: leave --encoding out"):
        queries(path, encoding)


def test_a_line_holding_both_encodings_keeps_both_and_a_plausible_letter_makes_a_line_utf8(
    tmp_path: Path,
) -> None:
    # A cp1252 cell beside a UTF-8 one on one line, and Azerbaijani with its schwa (U+0259, where
    # cp1252's "É™" lands) beside a dotless i: both were read whole as cp1252 (a fourth pass).
    path = tmp_path / "mixed.csv"
    azerbaijani = "Bak\u0131 Az\u0259rbaycan"
    path.write_bytes(
        HEADER.encode()
        + b"e1,u1,search,"
        + "café".encode("cp1252")
        + b" "
        + "naïve".encode()
        + b",1764000000000\n"
        + f"e2,u1,search,{azerbaijani},1764000000000\n".encode()
    )
    assert queries(path, "utf-8,cp1252") == ["café naïve", azerbaijani]


def test_a_line_longer_than_the_held_limit_is_read_by_the_same_rule(tmp_path: Path) -> None:
    # Over 1 MiB without a line end, the mixed codec decodes as the bytes come, never splitting a
    # UTF-8 character between reads; a cp1252 cell and a UTF-8 one on it keep both.
    text = "é€ " * 300_000
    data = text.encode() + "café".encode("cp1252") + " naïve".encode()
    decoder = codecs.getincrementaldecoder("utf-8,cp1252")("strict")
    read = "".join(decoder.decode(data[at : at + 8191]) for at in range(0, len(data), 8191))
    assert read + decoder.decode(b"", final=True) == text + "café naïve"
