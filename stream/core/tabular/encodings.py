"""Files that mix UTF-8 with a legacy single-byte encoding, and UTF-8 text misread by one.

Exports concatenated from several sources (a Windows tool's lines after a web form's) hold UTF-8
lines and cp1252 lines in one file. Read as UTF-8, the first cp1252 byte stops the file (the
reader names the line and ``--encoding``); read as cp1252, every UTF-8 letter outside ASCII turns
silently into two or three others (``é``, bytes C3 A9, reads as ``Ã©``: mojibake). Two things
follow:

- ``--encoding utf-8,cp1252`` (any single-byte codec after the comma) names a codec registered here
  with Python's codec registry (`codecs.register`): UTF-8, and where the bytes are not valid UTF-8
  the fallback codec, one invalid sequence at a time (Python's own UTF-8 decoder finds the
  sequences, so a character cut between two reads is never split). A UTF-8 byte-order mark is read
  away, and a UTF-8 character cut short by the end of the data follows the caller's error handling
  (strict: an error, as for ``utf-8``), not the fallback.
- `MojibakeWatch` finds text that reads like UTF-8 decoded with a single-byte codec, with ftfy's
  detector (`ftfy.badness.is_bad`, tuned on real mojibake and real cp1252/latin-1 text), so that a
  file read with a single-byte codec that holds UTF-8 is refused
  (`stream.core.tabular.reader.ensure_decodable`) rather than read as mojibake, while real cp1252
  text whose bytes happen to form UTF-8 pairs (``ß…`` is DF 85) reads as it is.
"""

from __future__ import annotations

import codecs
import functools
from typing import Any

from ftfy import fix_encoding
from ftfy.badness import is_bad

# The spelling of a mixed codec: UTF-8 first, then the fallback (`codecs.lookup` turns the comma,
# hyphens and case into "utf_8_cp1252" before asking the search function).
MIXED_PREFIX = "utf-8,"
_NORMALISED_PREFIXES = ("utf_8_", "utf8_")
# A line longer than this without a line end is checked and dropped but for its last characters
# (the watch holds at most this much of an unfinished line).
_MAX_CARRY_CHARS = 1 << 16
_SHOWN_CHARS = 40


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


@functools.cache
def _fallback_handler(fallback: str) -> str:
    """The name of a decode error handler that reads the invalid bytes with `fallback`."""
    name = f"profilestream.fallback.{fallback}"

    def decode_with_fallback(exc: UnicodeError) -> tuple[str, int]:
        if not isinstance(exc, UnicodeDecodeError):
            raise exc
        # cp1252 leaves five bytes undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D): U+FFFD for those.
        return exc.object[exc.start : exc.end].decode(fallback, "replace"), exc.end

    codecs.register_error(name, decode_with_fallback)
    return name


def _mixed_decode(data: bytes, handler: str, errors: str, final: bool) -> tuple[str, int]:
    """UTF-8 with `handler` for invalid sequences; an incomplete last sequence waits for more data
    or, when `final`, follows `errors` (strict: UnicodeDecodeError; otherwise U+FFFD)."""
    text, consumed = codecs.utf_8_decode(data, handler, False)
    if final and consumed < len(data):
        if errors == "strict":
            raise UnicodeDecodeError("utf-8", bytes(data), consumed, len(data), "unexpected end of data")
        return text + "\ufffd", len(data)
    return text, consumed


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
    handler = _fallback_handler(fallback)

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
            text, consumed = _mixed_decode(data[skipped:], handler, errors, final)
            return text, consumed + skipped

        def reset(self) -> None:
            super().reset()
            self._first = True

    def decode(data: Any, errors: str = "strict", /) -> tuple[str, int]:
        raw = bytes(data)
        return _mixed_decode(raw.removeprefix(codecs.BOM_UTF8), handler, errors, True)[0], len(raw)

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
    """Watches a file read with a single-byte codec for UTF-8 text: the first line that reads like
    UTF-8 decoded with it (`first`: line from 1, its text and ftfy's repair of it) and whether the
    whole file is valid UTF-8 (`all_utf8`, known once the last chunk is fed)."""

    def __init__(self) -> None:
        self.first: tuple[int, str, str] | None = None
        self.all_utf8 = True
        self._strict = codecs.getincrementaldecoder("utf-8")("strict")
        self._lines = 0  # line ends before `_carry`
        self._carry = ""  # the unfinished last line of the text fed so far

    def feed(self, chunk: bytes, text: str, *, final: bool) -> None:
        """Take the next `chunk` of the file's bytes and `text`, its decoding."""
        if self.all_utf8:
            try:
                self._strict.decode(chunk, final)
            except UnicodeDecodeError:
                self.all_utf8 = False
        if self.first is not None:
            return
        lines = (self._carry + text).split("\n")
        self._carry = "" if final else lines.pop()
        for line in lines:
            self._lines += 1
            if not line.isascii() and is_bad(line):
                self.first = (self._lines, line, fix_encoding(line))
                return
        if len(self._carry) > _MAX_CARRY_CHARS:
            if not self._carry.isascii() and is_bad(self._carry):
                self.first = (self._lines + 1, self._carry, fix_encoding(self._carry))
            self._carry = self._carry[-_SHOWN_CHARS:]

    def shown(self) -> tuple[str, str]:
        """The start of the first such line as read and as UTF-8 would read it."""
        assert self.first is not None
        _, line, repaired = self.first
        return line.strip()[:_SHOWN_CHARS], repaired.strip()[:_SHOWN_CHARS]
