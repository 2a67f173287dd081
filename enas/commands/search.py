"""`enas search`: the strategy the config names, run in its folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from enas.config import Config
from enas.run.reporter import Reporter
from enas.strategies.enas import run_search as run_enas
from enas.strategies.nas_rl import run_nas_rl

STRATEGIES = {"enas": run_enas, "random_ws": run_enas, "nas_rl": run_nas_rl, "random": run_nas_rl}


def run_search(config: Config, run_dir: Path, resume: bool, reporter: Reporter) -> Any:
    return STRATEGIES[config.strategy](config, run_dir, resume, reporter)
