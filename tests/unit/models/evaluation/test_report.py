"""The one report writer every evaluation task uses: JSON, markdown and an optional plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from models.evaluation.report import saved_figure, write_report


class TinyReport:
    def to_dict(self) -> dict[str, Any]:
        return {"rows": 3, "name": "tiny"}

    def to_markdown(self) -> str:
        return "| rows |\n|---|\n| 3 |\n"


def draw(report: TinyReport, path: Path) -> None:
    with saved_figure(path) as axis:
        axis.plot([0, 1], [0, report.to_dict()["rows"]])


def test_writes_json_and_markdown_in_order_creating_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    paths = write_report(TinyReport(), out, "tiny_eval")
    assert paths == [out / "tiny_eval.json", out / "tiny_eval.md"]
    assert json.loads(paths[0].read_text()) == {"rows": 3, "name": "tiny"}
    assert paths[0].read_text().endswith("}\n")
    assert paths[1].read_text() == TinyReport().to_markdown()


def test_the_plot_comes_last_under_its_own_name(tmp_path: Path) -> None:
    default = write_report(TinyReport(), tmp_path, "tiny_eval", plot=draw)
    named = write_report(TinyReport(), tmp_path, "tiny_eval", plot=draw, plot_name="sweep.png")
    assert default[-1] == tmp_path / "tiny_eval.png" and named[-1] == tmp_path / "sweep.png"
    for path in (default[-1], named[-1]):
        assert path.read_bytes().startswith(b"\x89PNG")


def test_a_failing_plot_leaves_no_figure_open_and_no_file(tmp_path: Path) -> None:
    plt.close("all")

    def broken(report: TinyReport, path: Path) -> None:
        with saved_figure(path) as axis:
            axis.plot([0, 1], [0, 1])
            raise ValueError("no data to plot")

    with pytest.raises(ValueError, match="no data"):
        write_report(TinyReport(), tmp_path, "tiny_eval", plot=broken)
    assert plt.get_fignums() == []
    assert not (tmp_path / "tiny_eval.png").exists()
