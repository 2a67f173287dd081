"""Drawing primitives for every plot of a run, on matplotlib's object interface (no pyplot, no
display: PNGs only, whatever the machine's backend)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from enas.folder.atomic import write_file

DPI = 100
WIDTH, WIDE = 6.4, 12.8   # inches: a plot of curves; a wide one (heatmaps), as wide as two side by side
CHARS_PER_INCH = 11       # of a medium title; a longer one is wrapped, since constrained layout never narrows it
Series = tuple[Sequence[float], Sequence[float]]   # x, y


def new_figure(title: str, panels: int = 1, panel_height: float = 3.0,
               width: float = WIDTH) -> tuple[Figure, list[Axes]]:
    """A figure of `panels` stacked axes under `title`."""
    figure = titled(title, width, panel_height * panels + 0.5)
    return figure, list(figure.subplots(panels, 1, squeeze=False)[:, 0])


def new_mosaic(title: str, layout: list[list[str]], height: float,
               width: float = WIDE) -> tuple[Figure, dict[str, Axes]]:
    """A figure of named axes placed as `layout` says (matplotlib's subplot_mosaic) under `title`."""
    figure = titled(title, width, height)
    return figure, figure.subplot_mosaic(layout)


def titled(title: str, width: float, height: float) -> Figure:
    """An empty figure of `width` x `height` inches with `title` on top, wrapped to fit its width."""
    figure = Figure(figsize=(width, height), layout="constrained")
    figure.suptitle(textwrap.fill(title, int(width * CHARS_PER_INCH)), fontsize="medium")
    return figure


def save(figure: Figure, path: Path) -> Path:
    """Write `figure` as a PNG to `path`, atomically."""
    write_file(path, lambda handle: figure.savefig(handle, format="png", dpi=DPI))
    return path


def curves(axes: Axes, series: dict[str, Series], xlabel: str, ylabel: str, title: str = "") -> None:
    """One line per series over whole numbers (epochs, updates; dots on short lines), with a
    legend when there are several."""
    for label, (x, y) in series.items():
        axes.plot(x, y, label=label, marker="o" if len(x) <= 30 else None, markersize=3, linewidth=1.2)
    axes.set(xlabel=xlabel, ylabel=ylabel)
    axes.set_title(title, fontsize="small")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.ticklabel_format(axis="y", useOffset=False)   # 7.3334 as itself, not as +7.333 and 0.0004
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend(loc="best", fontsize="small")


def reference(axes: Axes, value: float, label: str, style: str = "--") -> None:
    """A horizontal line at `value`, named in the legend."""
    axes.axhline(value, linestyle=style, color="grey" if style == ":" else "black", linewidth=1, label=label)
    axes.legend(loc="best", fontsize="small")


def heatmap(figure: Figure, axes: Axes, values: Sequence[Sequence[float]], rows: Sequence[str],
            columns: Sequence[int], xlabel: str, ylabel: str, scale: str, vmax: float | None = None) -> None:
    """values[row][column] as colours, one labelled row per entry of `rows`, a colour bar named `scale`."""
    image = axes.imshow(values, aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax, interpolation="nearest")
    axes.set_yticks(range(len(rows)), rows, fontsize=7 if len(rows) > 12 else "small")
    step = max(1, len(columns) // 10)
    axes.set_xticks(range(0, len(columns), step), [str(c) for c in columns[::step]])
    axes.set(xlabel=xlabel, ylabel=ylabel)
    figure.colorbar(image, ax=axes, label=scale)


def histogram(axes: Axes, values: Sequence[float], xlabel: str, ylabel: str) -> None:
    axes.hist(values, bins=min(30, max(5, len(set(values)))), color="tab:blue", alpha=0.8)
    axes.set(xlabel=xlabel, ylabel=ylabel)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))   # counts
    axes.grid(alpha=0.3)


def scatter(axes: Axes, x: Sequence[float], y: Sequence[float], groups: Sequence[str], xlabel: str, ylabel: str,
            note: str = "") -> None:
    """(x, y) points, one colour per group, with `note` in a corner."""
    for group in dict.fromkeys(groups):   # in order of first appearance
        points = [(a, b) for a, b, g in zip(x, y, groups) if g == group]
        axes.scatter([a for a, _ in points], [b for _, b in points], label=group, alpha=0.8)
    axes.set(xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    if note:
        axes.annotate(note, (0.02, 0.98), xycoords="axes fraction", va="top", fontsize="small")
