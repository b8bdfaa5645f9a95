"""Bytes that are not UTF-8 inside otherwise UTF-8 JSON: where they are.

A producer that writes one string in another charset (a Latin-1 or cp1252 "é" as the single byte
0xE9) leaves a document that is valid JSON apart from that byte. Read with ``surrogateescape``,
each such byte becomes a lone surrogate (U+DC80-U+DCFF), so the document parses and the first
string holding one can be named: the collector rejects that event alone, the worker dead-letters
the record naming the field instead of ``$``.

Pure: the collector (stream.ingest.body) and the worker's decoder (stream.core.events) share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What surrogateescape makes of a byte that is not UTF-8 (0x80-0xFF).
_STRAY_BYTE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True, slots=True)
class StrayByte:
    """The first byte that is not UTF-8: the field holding it (``context.name``, ``items[2]``,
    ``$`` for the document itself) and its value (0x80-0xFF)."""

    field: str
    byte: int


def first_stray_byte(doc: object, path: str = "") -> StrayByte | None:
    """The first string (value or key) of `doc`, depth first in document order, that holds a byte
    read by ``surrogateescape``; None when there is none."""
    if isinstance(doc, str):
        found = _STRAY_BYTE.search(doc)
        return None if found is None else StrayByte(path or "$", ord(found.group()) - 0xDC00)
    if isinstance(doc, dict):
        for key, value in doc.items():
            # A name with a stray byte in it is shown with the byte escaped (r\xe9f): answers and
            # dead-letter headers are UTF-8, which a surrogate cannot be written in.
            shown = str(key).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            name = f"{path}.{shown}" if path else shown
            found_byte = first_stray_byte(key, name) or first_stray_byte(value, name)
            if found_byte is not None:
                return found_byte
    elif isinstance(doc, list):
        for number, value in enumerate(doc):
            found_byte = first_stray_byte(value, f"{path}[{number}]")
            if found_byte is not None:
                return found_byte
    return None


def stray_byte_reason(byte: int, fix: str) -> str:
    """The rejection reason for `byte`, ending with `fix` (what the producer should change)."""
    return (
        f"holds the byte 0x{byte:02X}, which is not UTF-8 (text in another charset, such as a "
        f"Latin-1 'é'); {fix}"
    )
