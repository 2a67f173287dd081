"""`enas search`: the strategy the config names, run in its folder, and the search's plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from enas.config import Config
from enas.console import Reporter
from enas.report.run_plots import draw_after
from enas.strategies.enas import run_search as run_enas
from enas.strategies.nas_rl import run_nas_rl

STRATEGIES = {"enas": run_enas, "random_ws": run_enas, "nas_rl": run_nas_rl, "random": run_nas_rl}


def run_search(config: Config, run_dir: Path, resume: bool, reporter: Reporter) -> Any:
    """Run the search, then draw its plots (a failure to draw is a warning)."""
    search = STRATEGIES[config.strategy](config, run_dir, resume, reporter)
    draw_after(run_dir, "search")
    return search
