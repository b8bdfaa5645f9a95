"""`profilestream index` takes a catalogue as `load` and `replay` take event files: ``.tsv``/``.tab``,
``--delimiter`` (auto, tab, one character), decimal commas in a ``;``-separated file, and the one
error naming ``--delimiter`` for a header that reads as one column. The index is built for real
with a tiny random BERT exported to ONNX (tests/support/tiny_model.py)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.support.requirements import require_module

require_module("torch")
require_module("transformers")

from export.onnx_export import export_model  # noqa: E402
from models.encoder.onnx_encoder import EncoderOptions, load_encoder  # noqa: E402
from models.index.item_index import load_index  # noqa: E402
from stream.cli.main import main  # noqa: E402
from tests.support.tiny_model import write_tiny_checkpoint  # noqa: E402

HEADER = ["item_id", "title", "brand", "price", "popularity", "in_stock"]
ROWS = [
    ["17850", "Blue pen, fine", "Bic", "1.5", "12.5", "true"],
    ["17851", "Desk lamp", "", "24.90", "0.5", "0"],
    ["sku-3", "Clear tape", "Tesa", "", "", ""],
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    return export_model(write_tiny_checkpoint(root / "checkpoint"), root / "model", ["fp32"]).model_dir


def write(path: Path, delimiter: str, *, decimal_comma: bool = False) -> Path:
    rows = [
        [c if i == 1 or not decimal_comma else c.replace(".", ",") for i, c in enumerate(r)] for r in ROWS
    ]
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows([HEADER, *rows])
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def index(model_dir: Path, index_dir: Path, catalog: Path, *options: str) -> Result:
    env = {
        "PROFILESTREAM_MODEL_DIR": str(model_dir),
        "PROFILESTREAM_INDEX_DIR": str(index_dir),
        "PROFILESTREAM_ENCODER_PROVIDER": "cpu",
        "PROFILESTREAM_ENCODER_MAX_LENGTH": "64",
        "PROFILESTREAM_LOG_LEVEL": "WARNING",
    }
    return CliRunner().invoke(main, ["index", str(catalog), *options], env=env)


@pytest.mark.parametrize(
    ("delimiter", "suffix", "options", "decimal_comma"),
    [
        pytest.param("\t", ".tsv", (), False, id="tsv"),
        pytest.param("\t", ".tab", (), False, id="tab-suffix"),
        pytest.param(";", ".csv", (), True, id="semicolon-decimal-comma-detected"),
        pytest.param(";", ".csv", ("--delimiter", ";"), True, id="semicolon-given"),
        pytest.param("|", ".csv", ("--delimiter", "|"), False, id="pipe-given"),
        pytest.param(
            "\t", ".txt", ("--format", "csv", "--delimiter", "tab"), False, id="tab-given-any-suffix"
        ),
        pytest.param(",", ".csv", ("--delimiter", "auto"), False, id="comma-auto"),
    ],
)
def test_index_reads_every_separator(
    model_dir: Path,
    tmp_path: Path,
    *,
    delimiter: str,
    suffix: str,
    options: tuple[str, ...],
    decimal_comma: bool,
) -> None:
    catalog = write(tmp_path / f"items{suffix}", delimiter, decimal_comma=decimal_comma)
    result = index(model_dir, tmp_path / "index", catalog, *options)
    assert result.exit_code == 0, result.output
    assert "3 added, 0 updated, 0 unchanged, 0 removed" in result.output
    # Built by the model the command loaded (load_index refuses an index of another encoder).
    encoder = load_encoder(model_dir, EncoderOptions(provider="cpu", max_length=64))
    built = load_index(tmp_path / "index", encoder.model_version)
    assert built.ids == ("17850", "17851", "sku-3")
    assert built.popularity.tolist() == [12.5, 0.5, 0.0]
    assert built.in_stock.tolist() == [True, False, True]
    # The same file again: nothing re-encoded, the separator found the same way.
    again = index(model_dir, tmp_path / "index", catalog, *options)
    assert "0 added, 0 updated, 3 unchanged, 0 removed" in again.output, again.output


@pytest.mark.parametrize(
    ("written", "suffix", "options", "fix"),
    [
        pytest.param(";", ".tsv", (), "--delimiter ';'", id="semicolons-in-a-tsv"),
        pytest.param(";", ".csv", ("--delimiter", ","), "--delimiter ';'", id="semicolons-read-as-commas"),
        pytest.param("\t", ".csv", ("--delimiter", "|"), "--delimiter tab", id="tabs-read-as-pipes"),
    ],
)
def test_a_one_column_header_is_one_error_naming_the_delimiter(
    model_dir: Path, tmp_path: Path, *, written: str, suffix: str, options: tuple[str, ...], fix: str
) -> None:
    catalog = write(tmp_path / f"items{suffix}", written)
    result = index(model_dir, tmp_path / "index", catalog, *options)
    assert result.exit_code == 1, result.output
    assert "line 1: the header reads as one column" in result.output
    assert f"pass {fix}" in result.output
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize("bad", ["::", "semicolon", '"'])
def test_a_bad_delimiter_is_a_usage_error_before_the_encoder_loads(tmp_path: Path, bad: str) -> None:
    catalog = write(tmp_path / "items.csv", ",")
    # No model at this path: the option is refused first.
    result = index(tmp_path / "no-model", tmp_path / "index", catalog, "--delimiter", bad)
    assert result.exit_code == 2, result.output
    assert "--delimiter" in result.output
    assert "not a column separator" in result.output


def test_a_bad_row_is_skipped_and_written_to_rejects(model_dir: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "meta.jsonl"
    catalog.write_text(
        '{"item_id": "B1", "title": "HP 12C Financial Calculator", "price": "$36.99"}\n'
        '{"item_id": "B2", "title": "Avery Shipping Labels", "price": "$5.99 - $12.99"}\n'
        '{"item_id": "B3", "title": "Pilot G2 Pens", "price": "N/A"}\n'
        '{"item_id": "B4", "title": ""}\n',
        encoding="utf-8",
    )
    rejects = tmp_path / "rejects.jsonl"
    result = index(model_dir, tmp_path / "index", catalog, "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert "1 catalogue rows skipped" in result.output
    assert "line 4: item_id and title are required" in result.output
    # An unreadable price costs the item its price only: a warning, the item indexed.
    assert "1 catalogue rows indexed without their unreadable price" in result.output
    assert "line 2: price '$5.99 - $12.99' is a range, not one price" in result.output
    assert "3 added, 0 updated, 0 unchanged, 0 removed" in result.output
    warning, skip = rejects.read_text(encoding="utf-8").splitlines()
    assert '"field": "price"' in warning and '"kept": true' in warning
    assert '"field": "title"' in skip and '"kept"' not in skip
    # No valid row at all: the one failure, the rejects file written all the same.
    catalog.write_text('{"asin": "B1", "title": "Pen"}\n', encoding="utf-8")
    rejects.unlink()
    result = index(model_dir, tmp_path / "index2", catalog, "--rejects", str(rejects))
    assert result.exit_code == 1, result.output
    assert "none of its 1 rows is valid" in result.output
    assert rejects.exists()
    assert not (tmp_path / "index2").exists()
