"""One reader for event and catalogue files (CSV, JSONL, Parquet) and one set of value rules.

`reader` turns a file into rows with their line (or row) number (a ``.gz``, ``.bz2``, ``.xz`` or
``.zst`` file read decompressed, its format named by the suffix before: ``x.csv.gz``): a UTF-8
BOM is read away, the encoding is a parameter (``utf-8,cp1252`` for a file mixing both: `encodings`),
undecodable bytes (and UTF-8 text under a single-byte encoding) are a `SourceError` naming the line and
the ``--encoding`` option, a CSV file's column separator (``,`` ``;`` tab ``|``) is a parameter or found
(``.tsv``/``.tab`` are tab-separated, ``.dat`` is CSV; a headerless file's column names are a
parameter (``--columns``), and a header that looks like data is a warning; a header that reads as
one column but splits at another separator is a `SourceError` naming ``--delimiter``; an Excel
``sep=X`` first line names it), and a
truncated or malformed line (a stray quote's line, a row over `MAX_ROW_CHARS`) is skipped and
counted in a `ReadTally`, alone.
A ``.json`` file is JSON lines, or one array of objects (bounded in size).
`values` normalises what the rows hold the same way for every format: integers written as floats
(and with a decimal comma in ``;``-separated files), event times in ms, s, us or as date-time text,
event-type names from public exports, missing-value markers (``NA``, ``nan``, ``\\N``: pandas'
list) as no value, and event ids derived from a row's content when it has none.
Both are pure (no Kafka, Redis or clock).
"""

from __future__ import annotations

from stream.core.tabular.reader import (
    COMPRESSION_SUFFIXES,
    DECIMAL_COMMA_DELIMITER,
    DELIMITERS,
    FORMATS_BY_SUFFIX,
    MALFORMED_LINES_SHOWN,
    MAX_JSON_ARRAY_BYTES,
    MAX_ROW_CHARS,
    SNIFF_CHARS,
    TAB_SUFFIXES,
    UNBALANCED_QUOTE,
    ReadTally,
    Row,
    TableFormat,
    check_encoding,
    compression_of,
    csv_delimiter,
    csv_options,
    data_like_cells,
    declared_delimiter,
    detect_delimiter,
    ensure_decodable,
    format_of,
    headerless_hint,
    open_binary,
    open_text,
    parse_columns,
    parse_delimiter,
    read_jsonl_lines,
    read_rows,
    table_suffix,
)
from stream.core.tabular.values import (
    DEFAULT_TYPE_MAP,
    ID_FIELDS,
    MISSING_MARKERS,
    TS_UNITS,
    V1_COLUMNS,
    ColumnMap,
    RowRules,
    TsUnit,
    decimal_point,
    derived_event_id,
    id_text,
    integer_value,
    is_normal_v1,
    map_event_type,
    normalise_v1,
    parse_type_map,
    time_ms,
    to_v1_doc,
)

__all__ = [
    "COMPRESSION_SUFFIXES",
    "DECIMAL_COMMA_DELIMITER",
    "DEFAULT_TYPE_MAP",
    "DELIMITERS",
    "FORMATS_BY_SUFFIX",
    "ID_FIELDS",
    "MALFORMED_LINES_SHOWN",
    "MAX_JSON_ARRAY_BYTES",
    "MAX_ROW_CHARS",
    "MISSING_MARKERS",
    "SNIFF_CHARS",
    "TAB_SUFFIXES",
    "TS_UNITS",
    "UNBALANCED_QUOTE",
    "V1_COLUMNS",
    "ColumnMap",
    "ReadTally",
    "Row",
    "RowRules",
    "TableFormat",
    "TsUnit",
    "check_encoding",
    "compression_of",
    "csv_delimiter",
    "csv_options",
    "data_like_cells",
    "decimal_point",
    "declared_delimiter",
    "derived_event_id",
    "detect_delimiter",
    "ensure_decodable",
    "format_of",
    "headerless_hint",
    "id_text",
    "integer_value",
    "is_normal_v1",
    "map_event_type",
    "normalise_v1",
    "open_binary",
    "open_text",
    "parse_columns",
    "parse_delimiter",
    "parse_type_map",
    "read_jsonl_lines",
    "read_rows",
    "table_suffix",
    "time_ms",
    "to_v1_doc",
]
