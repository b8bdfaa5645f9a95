"""Files that mix UTF-8 with a legacy single-byte encoding, and files misread by one.

Exports concatenated from several sources (a Windows tool's lines after a web form's) hold UTF-8
lines and cp1252 lines in one file. Read as UTF-8, the first cp1252 byte stops the file (the
reader names the line and ``--encoding``); read as cp1252, every UTF-8 letter outside ASCII turns
silently into two or three others (``é``, bytes C3 A9, reads as ``Ã©``). Two things follow:

- ``--encoding utf-8,cp1252`` (any single-byte codec after the comma) names a codec registered here
  with Python's codec registry (`codecs.register`): UTF-8, where the bytes are not valid UTF-8 the
  fallback codec, one invalid sequence at a time (``codecs.register_error``; Python's own UTF-8
  decoder finds the sequences, so a character cut between two reads is never split). A UTF-8
  byte-order mark is read away, as for ``utf-8``.
- `utf8_sequence` finds UTF-8 sequences outside ASCII in bytes, so that a file read with a
  single-byte codec that holds them is refused (`stream.core.tabular.reader.ensure_decodable`)
  rather than read as mojibake.
"""

from __future__ import annotations

import codecs
import functools
import re
from typing import Any

# The spelling of a mixed codec: UTF-8 first, then the fallback (`codecs.lookup` turns the comma,
# hyphens and case into "utf_8_cp1252" before asking the search function).
MIXED_PREFIX = "utf-8,"
_NORMALISED_PREFIXES = ("utf_8_", "utf8_")
# A well-formed UTF-8 sequence of 2 to 4 bytes (no overlong forms, no surrogates): what a
# single-byte codec would read as two to four characters.
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]"
    rb"|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)


def is_single_byte(codec: str) -> bool:
    """Whether `codec` reads every byte as one character (cp1252, latin-1, ISO-8859-x...): the
    codecs under which UTF-8 text is silently misread rather than refused."""
    try:
        # Every byte one character, undefined ones replaced (UTF-8 "replaces" each invalid byte
        # alone too, so a UTF-8 sequence must read as its bytes).
        return (
            len(bytes(range(256)).decode(codec, "replace")) == 256
            and len(b"\xc3\xa9".decode(codec, "replace")) == 2
        )
    except LookupError:
        return False


def utf8_sequence(data: bytes) -> re.Match[bytes] | None:
    """The first UTF-8 sequence outside ASCII in `data`, or None."""
    return _UTF8_SEQUENCE.search(data)


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


def _mixed_codec(normalised: str) -> codecs.CodecInfo | None:
    """The codec for ``utf-8,FALLBACK`` (as `codecs.lookup` hands the name over), or None."""
    prefix = next((p for p in _NORMALISED_PREFIXES if normalised.startswith(p)), None)
    if prefix is None:
        return None
    rest = normalised[len(prefix) :]
    try:
        fallback = codecs.lookup(rest).name
    except LookupError:
        return None
    if not is_single_byte(fallback):
        return None
    handler = _fallback_handler(fallback)
    utf8_sig = codecs.lookup("utf-8-sig")
    base = codecs.getincrementaldecoder("utf-8-sig")

    class IncrementalDecoder(base):  # type: ignore[misc,valid-type]
        def __init__(self, errors: str = "strict") -> None:
            # Invalid UTF-8 is the fallback's to read whatever the caller's errors: that is this
            # codec's meaning, and every byte has a character in a single-byte codec.
            super().__init__(handler)

    def decode(data: Any, errors: str = "strict", /) -> tuple[str, int]:
        return codecs.utf_8_decode(bytes(data).removeprefix(codecs.BOM_UTF8), handler, True)[0], len(data)

    return codecs.CodecInfo(
        name=f"{MIXED_PREFIX}{fallback}",
        encode=utf8_sig.encode,
        decode=decode,
        incrementalencoder=utf8_sig.incrementalencoder,
        incrementaldecoder=IncrementalDecoder,
    )


codecs.register(_mixed_codec)


class Utf8Watch:
    """Watches the bytes of a file read with a single-byte codec for UTF-8 text: where the first
    UTF-8 sequence outside ASCII is (`first`: line from 1, its bytes) and whether the whole file is
    valid UTF-8 (`all_utf8`, known once the last chunk is fed)."""

    def __init__(self) -> None:
        self.first: tuple[int, bytes] | None = None
        self.all_utf8 = True
        self._strict = codecs.getincrementaldecoder("utf-8")("strict")
        self._lines = 0  # line ends before `_tail`
        self._tail = b""  # the last bytes fed, which may begin a sequence the next chunk ends

    def feed(self, chunk: bytes, *, final: bool) -> None:
        if self.all_utf8:
            try:
                self._strict.decode(chunk, final)
            except UnicodeDecodeError:
                self.all_utf8 = False
        if self.first is not None:
            return
        data = self._tail + chunk
        found = utf8_sequence(data)
        if found is not None:
            self.first = (self._lines + data.count(b"\n", 0, found.start()) + 1, found.group())
            return
        self._tail = data[-3:]
        self._lines += data.count(b"\n", 0, len(data) - len(self._tail))
