"""Plots, drawn with matplotlib's object interface (no pyplot, no display: PNGs only)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from enas.run.folder import write_file


def scatter(path: Path, x: Sequence[float], y: Sequence[float], groups: Sequence[str], title: str,
            xlabel: str, ylabel: str, note: str = "") -> None:
    """A scatter of (x, y) points, one colour per group, with `note` in a corner; written to `path`."""
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axes = figure.subplots()
    for group in dict.fromkeys(groups):   # in order of first appearance
        points = [(a, b) for a, b, g in zip(x, y, groups) if g == group]
        axes.scatter([a for a, _ in points], [b for _, b in points], label=group, alpha=0.8)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    if note:
        axes.annotate(note, (0.02, 0.98), xycoords="axes fraction", va="top", fontsize="small")
    write_file(path, lambda handle: figure.savefig(handle, format="png", dpi=120))
