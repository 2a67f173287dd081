"""`enas search`: the strategy the config names, run in its folder, and the search's plots."""

from __future__ import annotations

from pathlib import Path

from enas.config import Config
from enas.console import Reporter
from enas.report.run_plots import draw_after
from enas.strategies import strategy_of


def run_search(config: Config, run_dir: Path, resume: bool, reporter: Reporter) -> object:
    """Run the search, then draw its plots (a failure to draw is a warning); the strategy's loop objects."""
    search = strategy_of(config.strategy).search(config, run_dir, resume, reporter)
    draw_after(run_dir, "search")
    return search
