"""Rows of a CSV, JSONL or Parquet file with their line (or row) number.

Rules, the same for every caller (replay, load generic, the catalogue reader):

- A file compressed with gzip, bzip2, xz or zstd (``.gz``, ``.bz2``, ``.xz``, ``.zst``: REES46's
  and Amazon's downloads) is read through its decompressor as it is, never unpacked to disk, by
  every rule below (detection and the decodability check read the decompressed text); its format
  is the suffix before (``events.csv.gz`` is CSV). Corrupt or cut-short gzip, bzip2 or xz data is a
  `SourceError` before the first row (zstd's reader ends a cut-short file quietly: its last line is
  then a truncated one). Parquet inside such compression is refused (it compresses its own pages;
  decompress it), and compressed data under a plain name (``events.csv`` holding gzip) is a
  `SourceError` naming the suffix to give it.
- The format comes from the suffix (`FORMATS_BY_SUFFIX`) unless the caller names it. ``.dat``
  files (YOOCHOOSE's ``yoochoose-clicks.dat``) are CSV, their separator found like any other's.
  ``.json`` is JSON lines unless its first non-space character is ``[``: then it is one array of
  objects (pandas' ``to_json(orient="records")``), parsed whole and so refused over
  `MAX_JSON_ARRAY_BYTES` with the command to convert it to JSON lines; element N is row N.
- A CSV file without a header row (Taobao's ``UserBehavior.csv``, YOOCHOOSE) is read with the
  caller's column names (``--columns``, `parse_columns`): its first line is then a row. Without
  them, a header with a cell that reads as a number or a date-time (`data_like_cells`) is a
  warning in the `ReadTally` naming ``--columns``, as its line is read as names and not as a row.
- A CSV file's column separator is the caller's (``--delimiter``) or else found: ``.tsv`` and ``.tab``
  files are tab-separated; other CSV files are sniffed (`detect_delimiter`) on their first
  `SNIFF_CHARS` characters among `DELIMITERS` (``,`` ``;`` tab ``|``), a choice standing only when it
  splits the header into two columns or more, and ``,`` when nothing does. Quoted cells may hold
  any separator. A header that still reads as one column but splits at another separator is a
  `SourceError` naming the separator and ``--delimiter`` (rather than every row rejected for an
  unknown field). ``;`` goes with decimal commas (Excel in German or French locales): `csv_options`
  sets `RowRules.decimal_comma` for such files, so ``90001,0`` is read as ``90001.0`` is.
- Excel's ``sep=X`` first line (it writes and reads one) names the separator and is skipped; a
  ``--delimiter`` that disagrees with it is a `SourceError` naming both.
- A stray quote cannot swallow the rows after it: a record whose quoted cell runs over line ends is
  read again line by line, and when most of the lines after its first read alone as complete rows
  of the header's width, that first line is rejected alone (`UNBALANCED_QUOTE`, its line number)
  and the others are read as rows. Otherwise the cell's line breaks are its own (a product
  description), or, for a quote still open at the end of the file, the line is rejected alone.
- A quote inside a quoted cell is doubled in CSV (``""``, RFC 4180); Spark, Hive and MySQL write
  it escaped with a backslash (``\\"``) by default. When the first `ESCAPE_SAMPLE_CHARS` characters
  hold backslash-escaped quotes inside cells and no doubled ones (`quote_escape`), the file is read
  with backslash escapes (``"gel \\"pro\\" pens"`` is ``gel "pro" pens``; ``\\\\"`` is a backslash
  ending the cell) and a warning in the `ReadTally` says so; otherwise a row that escapes a quote
  so is rejected alone (`ESCAPED_IN_CSV`), never read with the backslash in its cell.
- A row is at most `MAX_ROW_CHARS` characters (1 MiB: the largest raw event JSONL parses), all its
  lines counted; a longer row (or quoted cell) is rejected alone and the reader goes on after it,
  never holding more. Cells up to that are read whole (the csv module's 128 KiB field limit is
  raised), and the event rules cut a long query and reject an over-long field, as for JSONL.
- Text files are decoded with the given encoding (default UTF-8); a UTF-8 byte-order mark is read
  away (Excel's "CSV UTF-8" writes one), on the first line and, in JSONL, on any line (files
  concatenated with ``cat``).
- A single-byte encoding (cp1252, latin-1) reads any bytes, UTF-8 text too, as other characters
  (``é`` as ``Ã©``): a file read with one that holds UTF-8 text is a `SourceError` naming the line
  and ``--encoding utf-8,cp1252`` (UTF-8 where the bytes are UTF-8, the fallback elsewhere:
  `stream.core.tabular.encodings`), or, when all of it is UTF-8, saying to leave ``--encoding`` out.
- Undecodable bytes are a whole-file problem: before the first row is returned the file is checked
  from end to end, and a `SourceError` names the line, the bytes and the ``--encoding`` option. So
  a file in the wrong encoding writes or produces nothing rather than half of itself. The one
  exception is a last character cut short by the end of the file: that is a truncated last line.
  UTF-16 and UTF-32 are told from the start of the file: a byte-order mark of another encoding than
  the one given (UTF-32's checked before UTF-16's, which it begins with), or NUL characters in the
  first line (UTF-16/32 without a mark), is a `SourceError` naming the ``--encoding`` to pass.
- A malformed line (a CSV row with fewer cells than the header, e.g. a truncated last line, or with
  extra non-empty cells; a stray quote's line; a row over `MAX_ROW_CHARS`; a JSONL line that is not
  a JSON object; a line the csv module refuses) is skipped and counted in a `ReadTally` with the
  first few line numbers; it never stops the read.
- Blank lines (and CSV rows of only empty cells) are skipped silently.

CSV numbers are physical line numbers (the header is line 1) of the row's first line; JSONL numbers
are line numbers; Parquet numbers count rows from 1.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import functools
import gzip
import io
import json
import lzma
import re
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO, cast

import zstandard

from stream.core import json_numbers
from stream.core.errors import SourceError
from stream.core.events import MAX_RAW_EVENT_BYTES
from stream.core.tabular.encodings import MojibakeWatch, is_single_byte
from stream.core.tabular.values import RowRules

TableFormat = Literal["csv", "jsonl", "json", "parquet"]
FORMATS_BY_SUFFIX: dict[str, TableFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".dat": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# A compressed file is named by its format's suffix then the compression's (``events.csv.gz``, as
# REES46 and Amazon ship theirs); it is read through the decompressor, never unpacked to disk.
COMPRESSION_SUFFIXES: tuple[str, ...] = (".gz", ".bz2", ".xz", ".zst")
# What a decompressor raises for corrupt or cut-short data (besides OSError, `open`'s too).
_DECOMPRESS_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError)
_READ_ERRORS: tuple[type[Exception], ...] = (OSError, *_DECOMPRESS_ERRORS)
# The first bytes of each compression's data, to name it in a file whose suffix does not.
_COMPRESSION_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", ".gz"),
    (b"BZh", ".bz2"),
    (b"\xfd7zXZ\x00", ".xz"),
    (b"\x28\xb5\x2f\xfd", ".zst"),
)
# The column separators detection chooses among, in the order a tie goes (csv.Sniffer's own
# preference: comma, tab, semicolon; then the pipe).
DELIMITERS: tuple[str, ...] = (",", "\t", ";", "|")
TAB_SUFFIXES = frozenset({".tsv", ".tab"})
# Exports separated by ';' come from locales that write decimal commas (Excel in de, fr, ...).
DECIMAL_COMMA_DELIMITER = ";"
# The sniffer's quote patterns take time quadratic in the sample (64 KiB of `,"a` took 30 s):
# 4 KiB is the header and some 20 rows of a typical export, and at worst 0.2 s.
SNIFF_CHARS = 4096
_DELIMITER_NAMES: dict[str, str | None] = {"auto": None, "tab": "\t", "\\t": "\t"}
# How many malformed lines a report lists by number (all of them are counted).
MALFORMED_LINES_SHOWN = 5
_CHECK_CHUNK_BYTES = 1 << 20
# A JSON array is parsed whole (its objects take some ten times its size in memory): larger files
# are refused with the command that turns them into JSON lines, read a line at a time.
MAX_JSON_ARRAY_BYTES = 64 << 20
_TO_JSON_LINES = (
    "convert it to JSON lines (one object a line, read a line at a time): "
    "jq -c '.[]' FILE.json > FILE.jsonl, or pandas' to_json(orient=\"records\", lines=True)"
)
# A header cell that is data rather than a name: a number (17850, -3.5, 1,5, 1e3) or a date-time
# (2014-04-07T10:51:09.277Z, 2016-05-09, 04/07/2014).
_DATA_LIKE = re.compile(
    r"[+-]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ].*)?|[0-9]{1,2}/[0-9]{1,2}/[0-9]{2,4}(?: .*)?"
)
_PARQUET_BATCH_ROWS = 16_384
_BOM = "\ufeff"
_BOM_BYTES = codecs.BOM_UTF8
_ENCODING_HINT = (
    "pass the file's encoding with --encoding (for example --encoding cp1252 for a Windows or Excel "
    "export, --encoding latin-1 for ISO-8859-1, --encoding utf-16 for UTF-16, --encoding utf-32 for UTF-32)"
)
# The longest CSV row read, in characters (line end included): as many as the largest raw event
# the JSONL path parses has bytes, so a row no JSONL line could carry is rejected alone rather
# than held whole. A quoted cell spanning lines counts all of its lines. The csv module's own
# field limit (131,072 by default, a process-wide setting) is raised above it so that no cell of a
# row within it is refused; the reader never hands the csv module more than this.
MAX_ROW_CHARS = MAX_RAW_EVENT_BYTES
if csv.field_size_limit() <= MAX_ROW_CHARS:
    csv.field_size_limit(MAX_ROW_CHARS + 1)
# UTF-32 marks first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BYTE_ORDER_MARKS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# How much of a file's start is looked at for byte-order marks and NUL characters.
_HEAD_BYTES = 4096
# Excel's first line naming the separator ("sep=;"), which it writes and reads; not a header.
_SEP_LINE = re.compile(r"\ufeff?sep=([^\r\n\"])(?:\r\n|\r|\n)?", re.IGNORECASE)
_LINE_ENDS = ("\r\n", "\n", "\r")
_SKIP_CHARS = 1 << 16
# The reason for a row of a file read as CSV that escapes a quote with a backslash all the same.
ESCAPED_IN_CSV = (
    'a quote escaped with a backslash (\\") in a file read, from its first MiB, as CSV, which doubles '
    'quotes (""); export the file with escape set to the quote character'
)
# The reason for a row of a file read with backslash escapes whose cell cannot be read for sure.
ESCAPED_OUTSIDE_QUOTES = (
    'a quote escaped with a backslash outside a quoted cell, or two escaped quotes in a row (\\"\\"), '
    "which this file's escapes cannot tell apart; quote the cell"
)
# How much of a CSV file is looked at to tell how its quoted cells escape a quote (`quote_escape`).
ESCAPE_SAMPLE_CHARS = 1 << 20
# A run of backslashes before a quote: in a file that escapes with a backslash, an odd run ends
# with an escaped quote and each pair before it is one backslash (Spark's charToEscapeQuoteEscaping).
_BACKSLASHES_BEFORE_QUOTE = re.compile(r'(\\+)"')
UNBALANCED_QUOTE = (
    'unbalanced quote: an opening " without its closing one; fix the quoting or remove the quote'
)


@dataclass(frozen=True, slots=True)
class Row:
    """One row: its line (CSV, JSONL) or row (Parquet) number and its cells by column name."""

    number: int
    values: dict[str, Any]


@dataclass(slots=True)
class ReadTally:
    """What the reader skipped: malformed lines, counted, the first few with their reason."""

    rows: int = 0
    malformed: int = 0
    first_malformed: list[str] = field(default_factory=list)
    # Whole-file doubts that read on (a header that looks like data), each once.
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def note_malformed(self, number: int, reason: str) -> None:
        self.malformed += 1
        if len(self.first_malformed) < MALFORMED_LINES_SHOWN:
            self.first_malformed.append(f"line {number}: {reason[:200]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "malformed": self.malformed,
            "malformed_lines": list(self.first_malformed),
            "warnings": list(self.warnings),
        }


def parse_columns(text: str) -> tuple[str, ...]:
    """A ``--columns`` value (``user_id,item_id,ts``: comma-separated whatever the file's separator)
    as the names of a headerless CSV file's columns, in order.

    Raises SourceError naming the option for an empty or repeated name.
    """
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise SourceError(
            f"--columns {text[:200]!r}: an empty name; give one name per column, comma-separated, "
            "e.g. --columns user_id,item_id,category_id,type,ts"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SourceError(
            f"--columns: {', '.join(map(repr, repeated))} named twice; give each column its own name"
        )
    return names


def data_like_cells(header: list[str]) -> list[str]:
    """The cells of a header line that read as numbers or date-times: data, not column names (the
    first row of a file without a header)."""
    return [cell for cell in header if _DATA_LIKE.fullmatch(cell.strip())]


def headerless_hint(header: list[str]) -> str | None:
    """What to do when `header` looks like a row of data (`data_like_cells`), or None when not."""
    cells = data_like_cells(header)
    if not cells:
        return None
    shown = ", ".join(repr(cell) for cell in cells[:5])
    return (
        f"the header ({', '.join(repr(cell) for cell in header[:10])}) looks like data ({shown}: "
        f"numbers or times, not column names), so the first row was read as the header and not "
        f"loaded; if the file has no header row, pass --columns naming its {len(header)} columns "
        "in order, e.g. --columns user_id,item_id,ts"
    )


def compression_of(path: Path) -> str | None:
    """The compression suffix of `path` (one of `COMPRESSION_SUFFIXES`), None for a plain file."""
    suffix = path.suffix.lower()
    return suffix if suffix in COMPRESSION_SUFFIXES else None


def table_suffix(path: Path) -> str:
    """The suffix naming the format, lower case: the one before a compression suffix
    (``x.csv.gz`` -> ``.csv``)."""
    if compression_of(path) is not None:
        return Path(path.stem).suffix.lower()
    return path.suffix.lower()


def format_of(path: Path) -> TableFormat:
    """The format a file's suffix names (before a compression suffix: ``x.csv.gz`` is CSV);
    SourceError listing the known suffixes otherwise, and for compressed Parquet."""
    suffix = table_suffix(path)
    fmt = FORMATS_BY_SUFFIX.get(suffix)
    compressed = compression_of(path)
    archive = _archive_kind(path)
    if archive is not None:
        raise SourceError(
            f"{path}: a {archive} archive (data sets ship so: Kaggle, Diginetica, Taobao), which may "
            "hold several files; unpack it first (unzip FILE, or tar xf FILE) and give the data file "
            "inside it (a single .gz/.bz2/.xz/.zst file is read as it is)"
        )
    if fmt is None:
        known = ", ".join(sorted(FORMATS_BY_SUFFIX))
        packed = ", ".join(COMPRESSION_SUFFIXES)
        if compressed is not None:
            raise SourceError(
                f"{path}: cannot tell the format of the {compressed} file from the suffix before it, "
                f"{suffix or 'none'!r}; name it FILE.FORMAT{compressed} with FORMAT one of {known} "
                f"(e.g. events.csv{compressed})"
            )
        raise SourceError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; use one of {known}, "
            f"optionally compressed ({packed}: events.csv.gz)"
        )
    if fmt == "parquet" and compressed is not None:
        raise _compressed_parquet(path, compressed)
    return fmt


# Archives hold a tree of files, not one stream: named, not read.
_ARCHIVE_SUFFIXES = {
    (".zip",): "zip",
    (".tar",): "tar",
    (".tgz",): "tar",
    (".tar", ".gz"): "tar",
    (".tar", ".bz2"): "tar",
    (".tar", ".xz"): "tar",
    (".tar", ".zst"): "tar",
    (".7z",): "7-Zip",
    (".rar",): "RAR",
}


def _archive_kind(path: Path) -> str | None:
    suffixes = tuple(suffix.lower() for suffix in path.suffixes)
    for tail, kind in _ARCHIVE_SUFFIXES.items():
        if suffixes[-len(tail) :] == tail:
            return kind
    return None


def _compressed_parquet(path: Path, compressed: str) -> SourceError:
    return SourceError(
        f"{path}: a Parquet file inside {compressed} compression; Parquet compresses its own pages and "
        "is read by seeking, so decompress it first (e.g. gunzip, bunzip2, unxz or unzstd) and "
        "read the .parquet file"
    )


def open_binary(path: Path) -> BinaryIO:
    """`path` opened for reading bytes, decompressed when its suffix names a compression
    (`COMPRESSION_SUFFIXES`): gzip, bz2 and xz by the standard library, zstd by zstandard (every
    frame of a multi-frame file). Raises OSError as `open` does."""
    compressed = compression_of(path)
    if compressed == ".gz":
        return cast(BinaryIO, gzip.open(path, "rb"))
    if compressed == ".bz2":
        return cast(BinaryIO, bz2.open(path, "rb"))
    if compressed == ".xz":
        return cast(BinaryIO, lzma.open(path, "rb"))
    if compressed == ".zst":
        # The reader owns the file (closefd) and closes it when closed itself.
        raw = open(path, "rb")  # noqa: SIM115
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
        # Buffered for readline and read1, which the text wrapper and the line readers use.
        return cast(BinaryIO, io.BufferedReader(reader))
    return open(path, "rb")


def open_text(path: Path, codec: str, *, newline: str | None = None) -> TextIO:
    """`path` (decompressed as `open_binary` does) as text in `codec`, undecodable bytes replaced
    (the whole file is checked first by `ensure_decodable`)."""
    return io.TextIOWrapper(open_binary(path), encoding=codec, errors="replace", newline=newline)


def _unreadable(path: Path, exc: BaseException) -> SourceError:
    """The error for a file that cannot be read: missing, unreadable, or corrupt compressed data."""
    compressed = compression_of(path)
    missing = isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError)
    if compressed is not None and not missing:
        return SourceError(
            f"{path}: the {compressed} data is corrupt or cut short ({exc}); download the file again "
            "(a truncated copy?), or check it with gzip -t, bzip2 -t, xz -t or zstd -t"
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return SourceError(f"{path}: cannot be read ({reason}); check the path")


def check_encoding(encoding: str) -> str:
    """The codec name to open text with: UTF-8 reads a BOM away; SourceError for an unknown name."""
    try:
        info = codecs.lookup(encoding)
    except LookupError as exc:
        raise SourceError(
            f"unknown encoding {encoding!r}; use a Python codec name such as utf-8, cp1252, latin-1 or "
            "utf-16, or utf-8,cp1252 for a file that mixes UTF-8 with a single-byte encoding"
        ) from exc
    try:
        # idna, punycode and the like are codecs, not file encodings: they refuse "replace".
        b"a\xe9\n".decode(info.name, "replace")
    except (UnicodeError, TypeError, LookupError) as exc:
        raise SourceError(
            f"{encoding!r} is not a text file encoding; use a Python codec name such as utf-8, cp1252, "
            "latin-1 or utf-16"
        ) from exc
    if info.name == "utf-8":
        return "utf-8-sig"
    return info.name


def parse_delimiter(text: str) -> str | None:
    """A ``--delimiter`` value as the separator to read with: None for ``auto`` (detect it).

    Takes ``auto``, ``tab`` or ``\\t`` (any case) and any one character but a quote or a line
    break. Raises SourceError naming the option for anything else.
    """
    named = text.lower()
    if named in _DELIMITER_NAMES:
        return _DELIMITER_NAMES[named]
    if len(text) == 1 and text not in '"\r\n':
        return text
    raise SourceError(
        f"--delimiter {text[:20]!r}: not a column separator; use auto (the default: detected), tab, "
        "or one character other than a quote or a line break, such as ';' or '|'"
    )


def detect_delimiter(sample: str) -> str:
    """The column separator of CSV text from its first lines: one of `DELIMITERS`, ``,`` if unsure.

    csv.Sniffer chooses among `DELIMITERS` (the separator around most quoted cells, else the one
    found equally often on every line, a tie going in `DELIMITERS` order), first over the whole
    sample, then over the header line alone; a choice stands only when it splits the header into
    two columns or more.
    Time grows with the square of the sample's length: give at most `SNIFF_CHARS` characters.
    """
    lines = [line for line in sample.removeprefix(_BOM).splitlines() if line.strip()]
    if not lines:
        return ","
    header = lines[0]
    for text in ("\n".join(lines), header):
        try:
            found = csv.Sniffer().sniff(text, delimiters="".join(DELIMITERS)).delimiter
        except csv.Error:
            continue
        if found in DELIMITERS and _column_count(header, found) > 1:
            return found
    return ","


def csv_delimiter(path: Path, *, encoding: str = "utf-8", delimiter: str | None = None) -> str:
    """The separator to read the CSV file `path` with: `delimiter` when given (see
    `parse_delimiter`; None or ``auto``: found), else the one an Excel ``sep=X`` first line
    declares, tab for ``.tsv``/``.tab``, else `detect_delimiter` over its first `SNIFF_CHARS`
    characters.

    Raises SourceError for a bad `delimiter`, one that disagrees with the file's ``sep=`` line, an
    unknown encoding or a file that cannot be read. Undecodable bytes are left to the reader, which
    names their line.
    """
    chosen = parse_delimiter(delimiter) if delimiter is not None else None
    codec = check_encoding(encoding)
    # A missing file is the reader's to name.
    declared = declared_delimiter(path, encoding=encoding) if path.is_file() else None
    if chosen is not None:
        if declared is not None and declared != chosen:
            raise _separator_conflict(path, declared, chosen)
        return chosen
    if declared is not None:
        return declared
    if table_suffix(path) in TAB_SUFFIXES:
        return "\t"
    try:
        with open_text(path, codec, newline="") as text:
            sample = text.read(SNIFF_CHARS)
    except UnicodeError:  # e.g. utf-16 without a byte-order mark: the reader names the problem
        return ","
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    if len(sample) == SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # a line cut short would count its separators wrong
    return detect_delimiter(sample)


def declared_delimiter(path: Path, *, encoding: str = "utf-8") -> str | None:
    """The separator an Excel ``sep=X`` first line of `path` declares, or None when it has none.

    Raises SourceError for an unknown encoding or a file that cannot be read.
    """
    codec = check_encoding(encoding)
    try:
        with open_text(path, codec, newline="") as text:
            return _declared(text.readline(64))
    except UnicodeError:  # e.g. utf-16 without a byte-order mark: the reader names the problem
        return None
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc


def _declared(line: str) -> str | None:
    match = _SEP_LINE.fullmatch(line)
    return match.group(1) if match else None


def _separator_conflict(path: Path, declared: str, chosen: str) -> SourceError:
    return SourceError(
        f"{path} line 1: the file declares the separator {_delimiter_option(declared)} (its Excel "
        f"'sep=' line) but --delimiter {_delimiter_option(chosen)} was given; drop --delimiter (or "
        f"pass --delimiter {_delimiter_option(declared)}), or remove the 'sep=' line"
    )


def csv_options(
    path: Path, rules: RowRules, *, encoding: str = "utf-8", delimiter: str | None = None
) -> tuple[str | None, RowRules]:
    """The separator and value rules to read `path` with: for a CSV file its `csv_delimiter`, and
    `rules` reading decimal commas when that is ``;``; any other format is returned unchanged.

    Raises SourceError as `csv_delimiter` and `format_of` do.
    """
    if format_of(path) != "csv":
        return delimiter, rules
    chosen = csv_delimiter(path, encoding=encoding, delimiter=delimiter)
    if chosen == DECIMAL_COMMA_DELIMITER and not rules.decimal_comma:
        rules = replace(rules, decimal_comma=True)
    return chosen, rules


def _column_count(line: str, delimiter: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=delimiter), []))
    except csv.Error:
        return 0


def _delimiter_option(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else f"'{delimiter}'"


def _one_column_header(path: Path, number: int, cell: str, delimiter: str) -> SourceError | None:
    """The error for a header read as the single column `cell` that another separator splits."""
    splits = {other: _column_count(cell, other) for other in DELIMITERS if other != delimiter}
    best = max(splits, key=lambda other: splits[other])
    if splits[best] < 2:
        return None
    shown = "tab" if delimiter == "\t" else repr(delimiter)
    return SourceError(
        f"{path} line {number}: the header reads as one column, {cell[:60]!r}, with the separator "
        f"{shown}, but {_delimiter_option(best)} splits it into {splits[best]} columns; pass "
        f"--delimiter {_delimiter_option(best)}"
    )


def ensure_decodable(path: Path, encoding: str) -> bool:
    """SourceError naming the first line whose bytes `encoding` cannot decode.

    Returns True when the file ends inside a character (its last line is truncated), else False.
    """
    codec = check_encoding(encoding)
    decoder = codecs.getincrementaldecoder(codec)("strict")
    lines_before = 0
    # A single-byte codec reads any bytes, UTF-8 too, as mojibake: such a file is refused instead.
    watch = MojibakeWatch(codec) if is_single_byte(codec) else None
    seen_non_ascii = False
    try:
        # A compressed file is checked as its decompressed bytes, which cannot be sought back:
        # the head read for the check is decoded as the first chunk.
        with open_binary(path) as data:
            chunk = data.read(_HEAD_BYTES)
            problem = _packed_problem(path, chunk) or _wide_text_problem(path, chunk, encoding, codec)
            if problem is not None:
                raise problem
            while True:
                pending = decoder.getstate()[0]
                try:
                    text = decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    if not chunk:
                        # Only the bytes of a character cut short by the end of the file are left:
                        # a truncated last line (a copy taken while it was written), which the
                        # reader counts as malformed, not a file in another encoding.
                        return True
                    if watch is not None and _finish_watch(watch, pending + chunk, data).first:
                        # UTF-8 bytes a single-byte codec leaves undefined (the 9D of "”" in
                        # cp1252): the file's UTF-8 is the problem to name.
                        raise _utf8_misread(path, encoding, watch) from exc
                    done = (pending + chunk)[: exc.start].decode(codec, "replace")
                    # UTF-8 text on earlier lines (not the failing line's own: cp1252's "ß…" is
                    # a valid UTF-8 pair) suggests a file of two encodings.
                    earlier = done[: done.rfind("\n") + 1]
                    mixed = codec == "utf-8-sig" and (seen_non_ascii or not earlier.isascii())
                    line = lines_before + done.count("\n") + 1
                    raise _undecodable(path, encoding, line, exc, mixed=mixed) from exc
                except UnicodeError as exc:  # e.g. "UTF-16 stream does not start with BOM"
                    raise SourceError(
                        f"{path} line {lines_before + 1}: not valid {encoding} text ({exc}); {_ENCODING_HINT}"
                    ) from exc
                lines_before += text.count("\n")
                seen_non_ascii = seen_non_ascii or not text[: text.rfind("\n") + 1].isascii()
                if watch is not None:
                    watch.feed(chunk, final=not chunk)
                if not chunk:
                    if watch is not None and watch.first is not None:
                        raise _utf8_misread(path, encoding, watch)
                    return False
                chunk = data.read(_CHECK_CHUNK_BYTES)
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc


def _packed_problem(path: Path, head: bytes) -> SourceError | None:
    """The error for compressed data in a file whose suffix names no compression (a renamed
    download), naming the suffix to give it; None when `head` starts like no compression's data."""
    if compression_of(path) is not None:
        return None
    for magic, suffix in _COMPRESSION_MAGIC:
        if head.startswith(magic) and (suffix != ".bz2" or head[3:4].isdigit()):
            return SourceError(
                f"{path}: {suffix[1:]}-compressed data under a {path.suffix or 'plain'} name; rename it "
                f"{path.name}{suffix} (it is read decompressed), or decompress it first"
            )
    return None


def _wide_text_problem(path: Path, head: bytes, encoding: str, codec: str) -> SourceError | None:
    """The error for a file in UTF-16 or UTF-32 read in another encoding, from its first bytes.

    A byte-order mark names its encoding (UTF-32's before UTF-16's, whose mark begins it); without
    one, NUL characters in the first line give the file away (no text format writes them there),
    and where the NUL bytes fall (every other byte, three in four) tells which encoding it is.
    """
    name = codecs.lookup(codec).name
    for mark, marked in _BYTE_ORDER_MARKS:
        if head.startswith(mark):
            if name.startswith(marked):
                return None
            excel = ' (Excel\'s "Unicode text")' if marked == "utf-16" else ""
            return SourceError(
                f"{path}: starts with a {marked.upper()} byte-order mark{excel}, not {encoding} text; "
                f"pass --encoding {marked}"
            )
    first = re.split("[\r\n]", head.decode(codec, "replace"), maxsplit=1)[0]
    if "\x00" not in first:
        return None
    guess = _wide_encoding(head)
    fix = (
        f"it looks like {guess} without a byte-order mark: pass --encoding {guess}"
        if guess is not None
        else "if it is UTF-16 or UTF-32 text, pass --encoding utf-16-le or --encoding utf-16-be "
        "(utf-32-le or utf-32-be for UTF-32); else it is not a text file (compressed? binary?)"
    )
    return SourceError(f"{path} line 1: holds NUL characters, so it is not {encoding} text; {fix}")


def _wide_encoding(head: bytes) -> str | None:
    """UTF-16 or UTF-32 (and byte order) of mostly-ASCII text without a byte-order mark, by where
    its zero bytes fall; None when they fall in no such pattern."""
    sample = head[: min(len(head), 512) // 4 * 4]
    quads = len(sample) // 4
    if quads == 0:
        return None
    zeros = [sample[offset::4].count(0) for offset in range(4)]
    many = [count >= 0.6 * quads for count in zeros]
    few = [count <= 0.2 * quads for count in zeros]
    if few[0] and many[1] and many[2] and many[3]:
        return "utf-32-le"
    if many[0] and many[1] and many[2] and few[3]:
        return "utf-32-be"
    if few[0] and few[2] and many[1] and many[3]:
        return "utf-16-le"
    if many[0] and many[2] and few[1] and few[3]:
        return "utf-16-be"
    return None


def _undecodable(
    path: Path, encoding: str, line: int, exc: UnicodeError, *, mixed: bool = False
) -> SourceError:
    where = f"{path} line {line}" if line else str(path)
    if not isinstance(exc, UnicodeDecodeError):
        return SourceError(f"{where}: not valid {encoding} text ({exc}); {_ENCODING_HINT}")
    shown = exc.object[exc.start : min(exc.end, exc.start + 4)].hex(" ").upper()
    if mixed:
        # Lines before it held UTF-8 outside ASCII: one encoding for the whole file would misread
        # one part or the other.
        return SourceError(
            f"{where}: bytes {shown} are not valid {encoding} ({exc.reason}), while the lines before "
            "it hold UTF-8 text: the file mixes encodings; pass --encoding utf-8,cp1252 (UTF-8 "
            "where the bytes are UTF-8, cp1252 elsewhere; or utf-8,latin-1...)"
        )
    return SourceError(
        f"{where}: bytes {shown} are not valid {encoding} ({exc.reason}); the file is in another "
        f"encoding: {_ENCODING_HINT}"
    )


def _finish_watch(watch: MojibakeWatch, chunk: bytes, data: BinaryIO) -> MojibakeWatch:
    """`watch` fed `chunk` and the rest of `data`."""
    while chunk:
        watch.feed(chunk, final=False)
        chunk = data.read(_CHECK_CHUNK_BYTES)
    watch.feed(b"", final=True)
    return watch


def _utf8_misread(path: Path, encoding: str, watch: MojibakeWatch) -> SourceError:
    """The error for a file read with a single-byte codec that holds UTF-8 text, which it would
    turn into other characters (é into Ã©)."""
    assert watch.first is not None
    line = watch.first[0]
    misread, meant = watch.shown()
    fix = (
        "the file is UTF-8: leave --encoding out"
        if watch.all_utf8
        else f"the file mixes UTF-8 with {encoding}: pass --encoding utf-8,{encoding}"
    )
    return SourceError(
        f"{path} line {line}: {misread!r} reads like UTF-8 text decoded as {encoding} ({meant!r} in "
        f"UTF-8); {fix}"
    )


def read_rows(
    path: Path,
    *,
    encoding: str = "utf-8",
    fmt: TableFormat | None = None,
    tally: ReadTally | None = None,
    delimiter: str | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[Row]:
    """The rows of `path` in file order; malformed lines are counted in `tally` and skipped.

    `delimiter`: a CSV file's column separator (see `parse_delimiter`); None or ``auto`` finds it
    (`csv_delimiter`); other formats ignore it. `columns`: the names of a headerless CSV file's
    columns (its first line is a row); other formats name their own and refuse it. Raises
    SourceError (naming the file and the fix) for a whole-file problem: missing, unknown suffix,
    encoding or delimiter, undecodable bytes, a header that reads as one column but splits at
    another separator, not Parquet, a JSON array too large or not parsable.
    """
    chosen = fmt or format_of(path)
    counts = tally if tally is not None else ReadTally()
    if not path.is_file():
        raise SourceError(
            f"{path}: no such file; give the path of a .csv, .jsonl, .json or .parquet file (text "
            "formats may be compressed: .csv.gz, .jsonl.bz2, .json.xz, .csv.zst)"
        )
    if columns is not None and chosen != "csv":
        raise SourceError(
            f"{path}: --columns names the columns of a CSV file without a header row; a {chosen} "
            "file names its own fields: leave --columns out"
        )
    if chosen == "csv":
        separator = csv_delimiter(path, encoding=encoding, delimiter=delimiter)
        rows = _csv_rows(path, encoding, separator, counts, columns)
    elif chosen == "jsonl":
        rows = _jsonl_rows(path, encoding, counts)
    elif chosen == "json":
        rows = _json_rows(path, encoding, counts)
    else:
        compressed = compression_of(path)
        if compressed is not None:
            raise _compressed_parquet(path, compressed)
        rows = _parquet_rows(path)
    for row in rows:
        counts.rows += 1
        yield row


def read_jsonl_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a JSONL file as UTF-8 bytes without line end or BOM, numbered from 1.

    UTF-8 lines are returned as they are in the file (replay forwards them without re-encoding);
    other encodings are decoded and encoded as UTF-8.
    """
    codec = check_encoding(encoding)
    if not path.is_file():
        raise SourceError(f"{path}: no such file; give the path of a .jsonl file")
    ensure_decodable(path, encoding)
    try:
        if codec == "utf-8-sig":
            with open_binary(path) as data:
                for number, line in enumerate(data, start=1):
                    raw = line.rstrip(b"\r\n")
                    if raw.startswith(_BOM_BYTES):
                        raw = raw[len(_BOM_BYTES) :]
                    if raw.strip():
                        yield number, raw
            return
        # "replace": after `ensure_decodable` only a cut last character can be undecodable.
        with open_text(path, codec, newline="") as text:
            for number, text_line in enumerate(text, start=1):
                stripped = text_line.rstrip("\r\n").removeprefix(_BOM)
                if stripped.strip():
                    yield number, stripped.encode("utf-8", "surrogatepass")
    except UnicodeError as exc:  # the file changed since it was checked
        raise _undecodable(path, encoding, 0, exc) from exc
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc


def _jsonl_rows(path: Path, encoding: str, tally: ReadTally) -> Iterator[Row]:
    for number, raw in read_jsonl_lines(path, encoding):
        try:
            # An over-large number parses into a value the validator rejects, naming the field.
            value = json_numbers.loads(raw)
        except (ValueError, RecursionError) as exc:
            problem = _json_problem(exc)
            if raw.lstrip().startswith(b"{'"):
                # Some of Amazon's 2014 review and metadata files are Python dicts, not JSON.
                problem += "; a Python dict (single quotes), not JSON: convert it with ast.literal_eval"
            tally.note_malformed(number, problem)
            continue
        if not isinstance(value, dict):
            tally.note_malformed(number, f"a JSON {type(value).__name__}, not an object")
            continue
        yield Row(number, value)


def _json_rows(path: Path, encoding: str, tally: ReadTally) -> Iterator[Row]:
    """A ``.json`` file: JSON lines, or one array of objects when it begins with ``[``."""
    if not _starts_array(path, encoding):
        yield from _jsonl_rows(path, encoding, tally)
        return
    compressed = compression_of(path) is not None
    size = path.stat().st_size
    if size > MAX_JSON_ARRAY_BYTES and not compressed:
        raise _array_too_large(path, f"{size:,} bytes")
    ensure_decodable(path, encoding)
    try:
        # A compressed file's size is known only once decompressed: read no more than the bound.
        with open_binary(path) as data:
            content = data.read(MAX_JSON_ARRAY_BYTES + 1)
        if len(content) > MAX_JSON_ARRAY_BYTES:
            raise _array_too_large(path, "over that many bytes once decompressed")
        document = json_numbers.loads(content.decode(check_encoding(encoding), errors="replace"))
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    except (ValueError, RecursionError) as exc:
        raise SourceError(
            f"{path}: the JSON array is {_json_problem(exc)}; fix it, or {_TO_JSON_LINES}"
        ) from exc
    if not isinstance(document, list):
        raise SourceError(f"{path}: a JSON {type(document).__name__} after '['; {_TO_JSON_LINES}")
    for number, value in enumerate(document, start=1):
        if isinstance(value, dict):
            yield Row(number, value)
        else:
            tally.note_malformed(
                number, f"array element {number} is a JSON {type(value).__name__}, not an object"
            )


def _array_too_large(path: Path, size: str) -> SourceError:
    return SourceError(
        f"{path}: a JSON array of {size}, over the {MAX_JSON_ARRAY_BYTES:,} read whole; {_TO_JSON_LINES}"
    )


def _starts_array(path: Path, encoding: str) -> bool:
    """Whether the first character of `path` that is not whitespace (or a BOM) is ``[``."""
    try:
        with open_text(path, check_encoding(encoding)) as text:
            while chunk := text.read(_HEAD_BYTES):
                stripped = chunk.lstrip(_BOM + " \t\r\n")
                if stripped:
                    return stripped.startswith("[")
    except UnicodeError:  # e.g. utf-16 without a byte-order mark: the line reader names it
        return False
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    return False


def _json_problem(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg} at column {exc.colno}; a truncated line?)"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return f"not valid JSON ({exc})"


def _csv_rows(
    path: Path, encoding: str, delimiter: str, tally: ReadTally, columns: Sequence[str] | None
) -> Iterator[Row]:
    codec = check_encoding(encoding)
    cut = ensure_decodable(path, encoding)
    escape = quote_escape(path, codec, delimiter)
    if escape == "backslash":
        tally.warn(
            f'{path}: quotes inside cells are escaped with a backslash (\\", as Spark, Hive and '
            'MySQL write by default) and were read so (CSV doubles them, ""); other backslashes '
            "(MySQL's \\\\, \\t, \\n) are kept as written"
        )
    try:
        # "replace": after `ensure_decodable` only a cut last character can be undecodable.
        with open_text(path, codec, newline="") as text:
            held: Row | None = None
            unescape = doubled_quotes if escape == "backslash" else None
            for row in _csv_records(_LineFeed(text, unescape), tally, path, delimiter, columns):
                if held is not None:
                    yield held
                held = row
            if held is not None and cut and any(value.endswith("\ufffd") for value in held.values.values()):
                # The row the file's end cut inside a character (replaced by U+FFFD on reading): its
                # cells may all be there, but the last one is cut short.
                tally.note_malformed(held.number, "the file ends inside a character (a truncated line?)")
            elif held is not None:
                yield held
    except UnicodeError as exc:  # the file changed since it was checked
        raise _undecodable(path, encoding, 0, exc) from exc
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc


# A physical line: its number (from 1) and its text with its line end, None for a line over
# MAX_ROW_CHARS (read past, not held).
_Line = tuple[int, str | None]


class _LineFeed:
    """A text file's physical lines for one csv reader, each at most `MAX_ROW_CHARS` characters.

    It notes the lines of the record being read (`span`, from `start`) and ends the input
    (StopIteration, `stop` = "limit") where that record would grow over `MAX_ROW_CHARS`, so no more
    than that is held; the csv reader reads on after it. Lines pushed back onto `pending` are read
    again first. A line over the limit that would begin a record is read past and noted in
    `overlong`.
    """

    def __init__(self, text: TextIO, unescape: Callable[[str], str] | None = None) -> None:
        self._readline = text.readline
        # Each line rewritten to CSV's doubled quotes before anything reads it (`doubled_quotes`).
        self._unescape = unescape
        self._number = 0
        self.pending: deque[_Line] = deque()
        self.span: list[_Line] = []
        self.overlong: list[int] = []
        self.stop: Literal["eof", "limit"] | None = None
        self._chars = 0
        self.parity: dict[int, int] = {}  # the quote parity of each line read past, by number

    @property
    def backslash(self) -> bool:
        """Whether the file is read with backslash escapes."""
        return self._unescape is not None

    def start(self) -> None:
        self.span, self._chars, self.stop = [], 0, None

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        while True:
            line = self.next_line()
            if line is None:
                if self.span:
                    self.stop = "eof"
                raise StopIteration
            text = line[1]
            if text is None or self._chars + len(text) > MAX_ROW_CHARS:
                if not self.span:
                    self.overlong.append(line[0])
                    self.parity.pop(line[0], None)
                    continue
                self.pending.appendleft(line)
                self.stop = "limit"
                raise StopIteration
            self.span.append(line)
            self._chars += len(text)
            return text

    def next_line(self) -> _Line | None:
        """The next physical line (a pushed-back one first), None at the end of the file."""
        if self.pending:
            return self.pending.popleft()
        text = self._readline(MAX_ROW_CHARS + 1)
        if not text:
            return None
        self._number += 1
        unescape = self._unescape
        if len(text) <= MAX_ROW_CHARS:
            return self._number, unescape(text) if unescape is not None else text
        # Read past the rest of the line a bounded piece at a time; only the parity of its quotes
        # is kept, as a quoted cell's line would have (`_skip_quoted`).
        quotes, carry = 0, ""
        while True:
            if unescape is None:
                quotes += text.count('"')
            else:
                # A backslash at a piece's end may escape the next piece's first quote.
                whole = carry + text
                kept = whole.rstrip("\\")
                carry = whole[len(kept) :]
                quotes += unescape(kept).count('"')
            if text.endswith(_LINE_ENDS):
                break
            text = self._readline(_SKIP_CHARS)
            if not text:
                break
        self.parity[self._number] = quotes % 2
        return self._number, None


def _csv_records(
    feed: _LineFeed, tally: ReadTally, path: Path, delimiter: str, columns: Sequence[str] | None
) -> Iterator[Row]:
    # skipinitialspace: "a, b, c" (a separator and a space, as people and some tools write it)
    # is the cells a, b and c; a leading space is never part of an id, a type or a time.
    reader = csv.reader(feed, delimiter=delimiter, skipinitialspace=True)
    header: list[str] | None = list(columns) if columns is not None else None
    first = True
    while True:
        feed.start()
        try:
            cells = next(reader)
        except StopIteration:
            _note_overlong(feed, tally)
            return
        except csv.Error as exc:
            _note_overlong(feed, tally)
            if feed.span:
                tally.note_malformed(feed.span[0][0], f"not valid CSV ({exc})")
            continue
        _note_overlong(feed, tally)
        span = feed.span
        number = span[0][0]
        if (len(span) > 1 or feed.stop is not None) and _spilled(feed, header, path, delimiter, tally):
            continue
        if number == 1 and len(span) == 1 and span[0][1] is not None:
            declared = _declared(span[0][1])
            if declared is not None:
                if declared != delimiter:
                    raise _separator_conflict(path, declared, delimiter)
                continue
        if not any(cell.strip() for cell in cells):
            continue
        if columns is not None and first and [cell.removeprefix(_BOM).strip() for cell in cells] == header:
            first = False
            continue  # a header row after all, naming the columns as --columns does
        first = False
        if header is None:
            header = [cell.removeprefix(_BOM).strip() for cell in cells]
            _check_header(path, number, header, delimiter)
            hint = headerless_hint(header)
            if hint is not None:
                tally.warn(f"{path}: {hint}")
            continue
        escape_problem = _escape_problem(feed.backslash, span, cells, delimiter)
        if escape_problem is not None:
            tally.note_malformed(number, escape_problem)
            continue
        if len(cells) < len(header):
            tally.note_malformed(number, f"{len(cells)} of {len(header)} columns (a truncated line?)")
            continue
        if len(cells) > len(header) and any(cell.strip() for cell in cells[len(header) :]):
            tally.note_malformed(number, f"{len(cells)} cells for {len(header)} columns{_escape_hint(span)}")
            continue
        yield Row(number, dict(zip(header, cells, strict=False)))


def quote_escape(path: Path, codec: str, delimiter: str) -> Literal["double", "backslash"]:
    """How the CSV file `path` escapes a quote inside a quoted cell, from its first
    `ESCAPE_SAMPLE_CHARS` characters: ``backslash`` when they hold a backslash-escaped quote inside
    a cell (`_escaped_quote`) and no doubled one (``""`` that is not an empty cell), else ``double``
    (RFC 4180). A row of a ``double`` file that escapes a quote so all the same is rejected alone
    (`ESCAPED_IN_CSV`), never read with the backslash in its cell. Unreadable text is left to the
    reader, which names it."""
    try:
        with open_text(path, codec, newline="") as text:
            sample = text.read(ESCAPE_SAMPLE_CHARS)
    except UnicodeError:
        return "double"
    except _READ_ERRORS:
        return "double"
    if '\\"' not in sample:
        return "double"
    cell_end = f"[{re.escape(delimiter)}\r\n]"
    escaped = _escaped_quote(delimiter).search(sample)
    doubled = re.search(rf'(?<![\\{re.escape(delimiter)}\r\n])""|(?<!\\)""(?!{cell_end}|$)', sample)
    return "backslash" if escaped is not None and doubled is None else "double"


def doubled_quotes(line: str) -> str:
    """`line` of a file that escapes quotes with a backslash, written as CSV writes it: each
    escaped quote doubled (``\\"`` to ``""``) and each pair of backslashes before a quote one
    backslash (``\\\\"``: a backslash, then the quote that ends the cell). Never longer than `line`."""
    if '\\"' not in line:
        return line
    return _BACKSLASHES_BEFORE_QUOTE.sub(
        lambda run: "\\" * (len(run[1]) // 2) + ('""' if len(run[1]) % 2 else '"'), line
    )


@functools.cache
def _escaped_quote(delimiter: str) -> re.Pattern[str]:
    """A quote escaped with a backslash inside a cell, after an even run of backslashes: ``\\"``
    followed by neither the separator, a line end nor a quote, or ``\\""`` followed by the
    separator or a line end (``"TV 55\\""``: an escaped inch mark ending the cell; read as CSV its
    quote would stay open and swallow the next row). ``\\""`` before other text is CSV's backslash
    and doubled quote (``"5\\"" tv"``)."""
    stops = rf"{re.escape(delimiter)}\r\n"
    return re.compile(rf'(?<!\\)(?:\\\\)*\\(?:"(?![{stops}"])|""(?=[{stops}]|$))')


def _escape_problem(backslash: bool, span: list[_Line], cells: list[str], delimiter: str) -> str | None:
    """Why a record's cells cannot be read for sure as its file's quotes are read, or None."""
    if not backslash:
        # Read as CSV, "27\" tv" is the cell 27\ and then tv": never a value to keep.
        return ESCAPED_IN_CSV if _escaped_in(span, delimiter) else None
    if any('""' in cell for cell in cells):
        # An escaped quote outside a quoted cell stays doubled (27\" tv reads 27"" tv).
        return ESCAPED_OUTSIDE_QUOTES
    text = span[0][1] if len(span) == 1 else None
    if text is not None and '"' in text:
        # Text after a closing quote ("5\"" tv": a CSV row among escaped ones) would join the cell.
        try:
            next(csv.reader([text], delimiter=delimiter, skipinitialspace=True, strict=True), None)
        except csv.Error as exc:
            return f"not valid CSV ({exc})"
    return None


def _escaped_in(span: list[_Line], delimiter: str) -> bool:
    """Whether a line of `span` holds a quote escaped with a backslash inside a cell."""
    pattern = _escaped_quote(delimiter)
    return any(text is not None and '\\"' in text and pattern.search(text) for _, text in span)


def _escape_hint(span: list[_Line]) -> str:
    """A hint for a row whose quotes are escaped with a backslash (Spark's, Hive's and MySQL's
    default), which CSV does not know: there a quote inside a quoted cell is written twice."""
    if any(text is not None and '\\"' in text for _, text in span):
        return (
            ' (a quote escaped with a backslash, \\", as Spark, Hive and MySQL write by default: '
            'CSV doubles it, ""; export with escape set to the quote character)'
        )
    return ""


def _check_header(path: Path, number: int, header: list[str], delimiter: str) -> None:
    """Raise SourceError for a header read as one column that another separator splits, or one
    that names a column twice."""
    problem = _one_column_header(path, number, header[0], delimiter) if len(header) == 1 else None
    if problem is not None:
        raise problem
    repeated = _repeated_names(header)
    if repeated:
        # Which cell a row's name would read is a guess (the last one, in a dict): refused whole,
        # as a JSON object with a repeated key is.
        raise SourceError(
            f"{path} line {number}: the header names {', '.join(repeated)}; each column needs its "
            "own name: rename or drop the repeated ones (or pass --columns)"
        )


def _repeated_names(header: list[str]) -> list[str]:
    """Each non-empty header name that appears more than once, with its column numbers (from 1)."""
    positions: dict[str, list[int]] = {}
    for column, name in enumerate(header, start=1):
        if name:
            positions.setdefault(name, []).append(column)
    return [
        f"{name!r} {len(at)} times (columns {', '.join(map(str, at))})"
        for name, at in positions.items()
        if len(at) > 1
    ]


def _spilled(feed: _LineFeed, header: list[str] | None, path: Path, delimiter: str, tally: ReadTally) -> bool:
    """For a record whose quoted cell ran over a line end (or on to the end of the file or of
    `MAX_ROW_CHARS`): whether it was rejected here rather than read (True), its lines after the
    first pushed back to be read again when one stray quote swallowed them. Raises SourceError for
    a header whose quote never closes."""
    span = feed.span
    number = span[0][0]
    if header is None:
        if feed.stop is not None:
            raise SourceError(f"{path} line {number}: the header has an {UNBALANCED_QUOTE}")
        return False
    if _misplaced_quote(span, len(header), delimiter):
        # One stray quote swallowed the rows after it: reject its line alone, read the rest again.
        tally.note_malformed(number, UNBALANCED_QUOTE)
        feed.pending.extendleft(reversed(span[1:]))
        return True
    if feed.stop is None:
        return False  # a quoted cell holding line breaks
    reason = UNBALANCED_QUOTE
    if feed.stop == "limit":
        reason = f"a row over {MAX_ROW_CHARS:,} characters, or an {UNBALANCED_QUOTE}"
        _skip_quoted(feed)
    tally.note_malformed(number, reason)
    return True


def _note_overlong(feed: _LineFeed, tally: ReadTally) -> None:
    for number in feed.overlong:
        tally.note_malformed(
            number,
            f"over {MAX_ROW_CHARS:,} characters, longer than any event can be; split the row or "
            "shorten its cells",
        )
    feed.overlong.clear()


def _misplaced_quote(span: list[_Line], width: int, delimiter: str) -> bool:
    """Whether the record read over the lines of `span` is one stray quote's doing: its first
    line opens a quote (it continued), and, read alone, most of the lines after it are complete
    rows of the header's `width`. A last line left open may start the next such record. A quoted
    cell that truly holds line breaks (a product description) rarely has lines that read so."""
    readings = [_read_alone(text or "", delimiter) for _, text in span[1:]]
    if readings and not readings[-1][1]:
        readings.pop()
    fits = misfits = 0
    for cells, complete in readings:
        if not complete:
            misfits += 1
        elif width <= len(cells) and not any(cell.strip() for cell in cells[width:]):
            fits += 1
        elif any(cell.strip() for cell in cells):
            misfits += 1
    return fits > misfits


def _read_alone(text: str, delimiter: str) -> tuple[list[str], bool]:
    """The cells of one line read by itself, and whether they are a whole record (no quote left
    open: the csv reader did not go on to the next line)."""
    reader = csv.reader((text, "\n"), delimiter=delimiter, skipinitialspace=True)
    try:
        cells = next(reader, [])
    except csv.Error:
        return [], True
    return cells, reader.line_num <= 1


def _skip_quoted(feed: _LineFeed) -> None:
    """Read past the rest of a record cut off at `MAX_ROW_CHARS` inside a quoted cell: on to the
    line where its quotes balance (a '"' in a quoted cell is doubled, so each line's count tells),
    held one line at a time."""
    while True:
        line = feed.next_line()
        if line is None:
            return
        number, text = line
        if (text.count('"') if text is not None else feed.parity.pop(number, 0)) % 2:
            return


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise SourceError(f"{path}: not a readable Parquet file ({exc}); check the file") from exc
    number = 0
    binary = _binary_columns(parquet.schema_arrow)
    batches = parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # a corrupt page: the rest of the file cannot be trusted
            raise SourceError(
                f"{path}: Parquet data after row {number} cannot be read ({exc}); check the file"
            ) from exc
        for values in batch.to_pylist():
            number += 1
            for name in binary:
                values[name] = _utf8_or_bytes(values.get(name))
            yield Row(number, values)


def _binary_columns(schema: Any) -> list[str]:
    """The names of `schema`'s byte-string columns: Hive, Impala and Spark (unless
    ``spark.sql.parquet.binaryAsString``) write text columns as BINARY without the UTF8 annotation,
    so pyarrow reads their values as bytes (Parquet format spec, LogicalTypes: STRING)."""
    import pyarrow as pa

    return [
        field.name
        for field in schema
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type)
    ]


def _utf8_or_bytes(value: object) -> object:
    """A byte-string cell as text when it is UTF-8 (the rule for such columns, `_binary_columns`);
    other bytes stay bytes, which the value rules reject naming the field."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value
