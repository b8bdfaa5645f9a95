"""Writing an evaluation's report files: one JSON, one markdown table and, where given, one plot.

Every evaluation task (`recommend`, `search`, `online`) hands its report here, so the files look
alike (``<stem>.json`` indented with a final newline, ``<stem>.md``, a PNG at a fixed resolution)
and a plot that fails half-way never leaves a matplotlib figure open in a long-lived process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PLOT_DPI = 120


class Report(Protocol):
    """What every evaluation report offers: a JSON-ready dict and a markdown rendering."""

    def to_dict(self) -> dict[str, Any]: ...

    def to_markdown(self) -> str: ...


R = TypeVar("R", bound=Report)


def write_report(
    report: R,
    out_dir: Path,
    stem: str,
    *,
    plot: Callable[[R, Path], object] | None = None,
    plot_name: str | None = None,
) -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` (and the plot) into `out_dir`, creating it.

    `plot(report, path)` draws the figure into ``path`` (default name ``<stem>.png``). Returns the
    paths written, JSON first, then markdown, then the plot.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(report.to_markdown(), encoding="utf-8")
    paths = [json_path, md_path]
    if plot is not None:
        plot_path = out_dir / (plot_name or f"{stem}.png")
        plot(report, plot_path)
        paths.append(plot_path)
    return paths


def table_head(titles: Sequence[str]) -> list[str]:
    """The first two lines of a markdown table with these column titles."""
    return ["| " + " | ".join(titles) + " |", "|---" * len(titles) + "|"]


@contextmanager
def saved_figure(path: Path, *, width_in: float = 6.4, height_in: float = 4.0) -> Iterator[Axes]:
    """Yield the axes of a new figure; on leaving the block, save it to `path` as PNG.

    The figure is closed whether or not the block raised (nothing is saved then).
    """
    # matplotlib lives in the `export` extra: only evaluation needs it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(width_in, height_in), dpi=PLOT_DPI)
    try:
        yield axis
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
