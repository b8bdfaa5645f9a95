"""Files that mix UTF-8 with a legacy single-byte encoding, and UTF-8 text misread by one.

Exports concatenated from several sources (a Windows tool's lines after a web form's) hold UTF-8
lines and cp1252 lines in one file. Read as UTF-8, the first cp1252 byte stops the file (the
reader names the line and ``--encoding``); read as cp1252, every UTF-8 letter outside ASCII turns
silently into two or three others (``é``, bytes C3 A9, reads as ``Ã©``: mojibake). Two things
follow:

- ``--encoding utf-8,cp1252`` (any single-byte codec after the comma) names a codec registered here
  with Python's codec registry (`codecs.register`): each line as UTF-8 when it is UTF-8 by
  `plausible_utf8` (valid, and without characters text is all but never written in, where a cp1252
  letter and the punctuation after it land: "É®" is C9 AE, U+026E), else as the fallback codec. A
  UTF-8 byte-order mark is read away, and a UTF-8 character cut short by the end of the data
  follows the caller's error handling (strict: an error, as for ``utf-8``), not the fallback.
- `MojibakeWatch` finds UTF-8 lines in a file read with a single-byte codec (`plausible_utf8`, or
  ftfy's mojibake detector `ftfy.badness.is_bad` for a line that mixes both), so that such a file
  is refused (`stream.core.tabular.reader.ensure_decodable`) rather than read as mojibake, while
  real cp1252 text whose bytes happen to form UTF-8 pairs (``ß…`` is DF 85) reads as it is. Known
  miss: ``Ç`` before a right single quote (C7 92) is ``ǒ``, a letter Pinyin writes.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

from ftfy import fix_encoding
from ftfy.badness import is_bad

# The spelling of a mixed codec: UTF-8 first, then the fallback (`codecs.lookup` turns the comma,
# hyphens and case into "utf_8_cp1252" before asking the search function).
MIXED_PREFIX = "utf-8,"
_NORMALISED_PREFIXES = ("utf_8_", "utf8_")
_SHOWN_CHARS = 40
# A line is decoded whole (UTF-8 or the fallback) up to this many bytes; a longer one a UTF-8
# sequence at a time, so that no more than this is held waiting for a line end.
_MAX_LINE_BYTES = 1 << 20
# Characters text is all but never written in, but which UTF-8 decoding of a single-byte encoding's
# letter and punctuation pairs gives (C2-DF then 80-BF): C1 controls, IPA and spacing modifier
# letters, Syriac, Thaana and NKo.
_UNLIKELY = re.compile("[\u0080-\u009f\u0250-\u02ff\u0700-\u07ff]")
# A well-formed UTF-8 sequence of 2 to 4 bytes (no overlong forms, no surrogates).
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]"
    rb"|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)


def is_single_byte(codec: str) -> bool:
    """Whether `codec` reads every byte as one character (cp1252, latin-1, ISO-8859-x, cp1251...):
    the codecs under which UTF-8 text is silently misread rather than refused. ASCII (half of the
    bytes undefined) and multi-byte or non-text codecs are not."""
    try:
        every_byte = bytes(range(256)).decode(codec, "replace")
        # UTF-8 "replaces" each invalid byte alone too: a UTF-8 pair must read as two characters.
        pair = b"\xc3\xa9".decode(codec, "replace")
    except (LookupError, UnicodeError, TypeError):
        return False
    return len(every_byte) == 256 and every_byte.count("\ufffd") <= 8 and len(pair) == 2


def plausible_utf8(line: bytes) -> str | None:
    """`line` as UTF-8 when it is valid UTF-8 that could be meant: ASCII, or holding a character
    outside ASCII and outside `_UNLIKELY` (where the bytes of a cp1252 letter and the punctuation
    after it fall: "É®" is C9 AE, U+026E; "ß…" is DF 85, U+07C5); None otherwise. Azerbaijani
    "Bak\u0131 Az\u0259rbaycan" is UTF-8 by its dotless i; "Az\u0259rbaycan" alone is not (its
    schwa is U+0259, where cp1252's "É™" lands)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.isascii() or not _UNLIKELY.search(text) or not _UNLIKELY.sub("", text).isascii():
        return text
    return None


def by_sequence(line: bytes, fallback: str) -> str:
    """`line` (not UTF-8 by `plausible_utf8`) read a sequence at a time: each well-formed UTF-8
    sequence of a character outside `_UNLIKELY` as UTF-8, every other byte with `fallback`. A line
    holding both (a cp1252 cell beside a UTF-8 one) keeps both; cp1252's "„Gruß“" stays itself."""
    parts = []
    at = 0
    for found in _UTF8_SEQUENCE.finditer(line):
        character = found.group().decode("utf-8")
        if _UNLIKELY.match(character):
            continue
        parts.append(line[at : found.start()].decode(fallback, "replace"))
        parts.append(character)
        at = found.end()
    parts.append(line[at:].decode(fallback, "replace"))
    return "".join(parts)


def _mixed_decode(data: bytes, fallback: str, errors: str, final: bool) -> tuple[str, int]:
    """Each complete line of `data` as UTF-8 when it is UTF-8 by `plausible_utf8`, else a sequence
    at a time (`by_sequence`: a cp1252 line's "É®" is a valid UTF-8 pair, but no letter anyone
    writes); the unfinished last line
    waits for more data, or when `final` is decoded the same way, a UTF-8 character cut short at
    its very end following `errors` (strict: UnicodeDecodeError; otherwise U+FFFD). A line longer
    than `_MAX_LINE_BYTES` without its end is decoded a sequence at a time as it comes."""
    end = len(data) if final else data.rfind(b"\n") + 1
    if not end:
        if len(data) <= _MAX_LINE_BYTES:
            return "", 0
        # Up to the last sequence the next data may complete.
        end = len(data) - _unfinished_sequence(data)
        return by_sequence(data[:end], fallback), end
    lines = data[:end].splitlines(keepends=True)
    parts = []
    for number, line in enumerate(lines, start=1):
        text = plausible_utf8(line)
        if text is None and final and number == len(lines):
            text = _cut_short(line, len(data), errors)
        parts.append(text if text is not None else by_sequence(line, fallback))
    return "".join(parts), end


def _unfinished_sequence(data: bytes) -> int:
    """How many of the last bytes of `data` begin a UTF-8 sequence that is not complete (0-3)."""
    for back in range(1, min(3, len(data)) + 1):
        byte = data[-back]
        if byte >= 0xC0:
            return back if back < (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4) else 0
        if byte < 0x80:
            return 0
    return 0


def _cut_short(line: bytes, total: int, errors: str) -> str | None:
    """The last `line` of `total` bytes of data when it is UTF-8 but for a character cut short at
    its very end: that character by `errors` (strict: UnicodeDecodeError); None otherwise."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data" or exc.end != len(line):
            return None
        head = plausible_utf8(line[: exc.start])
        if head is None:
            return None
        if errors == "strict":
            start = total - len(line) + exc.start
            raise UnicodeDecodeError(
                "utf-8", line, exc.start, len(line), f"{exc.reason} (byte {start})"
            ) from exc
        return head + "\ufffd"
    return None


def _mixed_codec(normalised: str) -> codecs.CodecInfo | None:
    """The codec for ``utf-8,FALLBACK`` (as `codecs.lookup` hands the name over), or None."""
    prefix = next((p for p in _NORMALISED_PREFIXES if normalised.startswith(p)), None)
    if prefix is None or not normalised[len(prefix) :]:
        return None
    try:
        fallback = codecs.lookup(normalised[len(prefix) :]).name
    except LookupError:
        return None
    if not is_single_byte(fallback):
        return None

    class IncrementalDecoder(codecs.BufferedIncrementalDecoder):
        def __init__(self, errors: str = "strict") -> None:
            super().__init__(errors)
            self._first = True

        def _buffer_decode(self, data: Any, errors: str, final: bool) -> tuple[str, int]:
            skipped = 0
            if self._first:
                if len(data) < len(codecs.BOM_UTF8) and codecs.BOM_UTF8.startswith(data) and not final:
                    return "", 0  # may be the start of a byte-order mark
                self._first = False
                if data[: len(codecs.BOM_UTF8)] == codecs.BOM_UTF8:
                    skipped = len(codecs.BOM_UTF8)
            text, consumed = _mixed_decode(data[skipped:], fallback, errors, final)
            return text, consumed + skipped

        def reset(self) -> None:
            super().reset()
            self._first = True

    def decode(data: Any, errors: str = "strict", /) -> tuple[str, int]:
        raw = bytes(data)
        return _mixed_decode(raw.removeprefix(codecs.BOM_UTF8), fallback, errors, True)[0], len(raw)

    utf8_sig = codecs.lookup("utf-8-sig")
    return codecs.CodecInfo(
        name=f"{MIXED_PREFIX}{fallback}",
        encode=utf8_sig.encode,
        decode=decode,
        incrementalencoder=utf8_sig.incrementalencoder,
        incrementaldecoder=IncrementalDecoder,
    )


codecs.register(_mixed_codec)


class MojibakeWatch:
    """Watches the bytes of a file read with the single-byte `codec` for UTF-8 text: the first line
    that is UTF-8 (`plausible_utf8`) or reads like UTF-8 decoded with `codec` (ftfy's detector: a
    line that mixes both) — `first`: its number from 1, the line as `codec` reads it and as UTF-8
    would — and whether the whole file is valid UTF-8 (`all_utf8`, known once the last chunk is
    fed)."""

    def __init__(self, codec: str) -> None:
        self.first: tuple[int, str, str] | None = None
        self.all_utf8 = True
        self._codec = codec
        self._strict = codecs.getincrementaldecoder("utf-8")("strict")
        self._lines = 0  # line ends before `_carry`
        self._carry = b""  # the unfinished last line of the bytes fed so far

    def feed(self, chunk: bytes, *, final: bool) -> None:
        """Take the next `chunk` of the file's bytes."""
        if self.all_utf8:
            try:
                self._strict.decode(chunk, final)
            except UnicodeDecodeError:
                self.all_utf8 = False
        if self.first is not None:
            return
        lines = (self._carry + chunk).split(b"\n")
        self._carry = b"" if final else lines.pop()
        for line in lines:
            self._lines += 1
            if not line.isascii() and self._check(line):
                return
        # A line without an end is checked once it is long, then held no longer.
        if len(self._carry) > _MAX_LINE_BYTES and not self._check(self._carry, self._lines + 1):
            self._carry = self._carry[-_SHOWN_CHARS:]

    def _check(self, line: bytes, number: int | None = None) -> bool:
        as_read = line.decode(self._codec, "replace")
        utf8 = plausible_utf8(line)
        if utf8 is None and not is_bad(as_read):
            return False
        self.first = (number or self._lines, as_read, utf8 if utf8 is not None else fix_encoding(as_read))
        return True

    def shown(self) -> tuple[str, str]:
        """The start of the first such line as read and as UTF-8 would read it."""
        assert self.first is not None
        _, line, repaired = self.first
        return line.strip()[:_SHOWN_CHARS], repaired.strip()[:_SHOWN_CHARS]
