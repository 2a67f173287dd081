"""`enas search --seeds 0,1,2`: search, derive and retrain once per seed, one run folder each
(OUT/seed-N), and the mean and spread of what they reach, in OUT/seeds.json.

A sweep stopped anywhere continues where it stood when it is run again: a seed with a result is
read back, a search with a checkpoint resumes, a derive or a retrain not yet written runs.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from rich.table import Table

from enas.commands.derive import run_derive
from enas.commands.retrain import run_retrain
from enas.commands.search import run_search
from enas.config import Config
from enas.console import Reporter
from enas.folder.config_file import saved_config
from enas.folder.names import ARCH_FILE, METRICS_FILE, RESULT_FILE, RETRAIN_DIR, has_checkpoint
from enas.records import Result, SweepSummary
from enas.run.metrics import read_metrics
from enas.run.resume import run_config
from enas.spaces import load_architecture


def seed_folder(out_dir: Path, seed: int) -> Path:
    return out_dir / f"seed-{seed}"


def run_sweep(layers: list[Path], overrides: list[str], seeds: list[int], out_dir: Path,
              reporter: Reporter) -> SweepSummary:
    rows = []
    for seed in seeds:
        run_dir = seed_folder(out_dir, seed)
        reporter.print(f"seed {seed}: {run_dir}")
        rows.append(run_one(layers, [*overrides, f"seed={seed}"], run_dir, reporter) | {"seed": seed})
    mean = {name: statistics.fmean(r[name] for r in rows) for name in ("value", "search_s")}
    std = {name: statistics.stdev(r[name] for r in rows) if len(rows) > 1 else 0.0 for name in ("value", "search_s")}
    summary = SweepSummary(rows[0]["metric"], seeds, rows, mean["value"], std["value"], mean["search_s"],
                           std["search_s"])
    summary.write(out_dir)
    reporter.print(_table(summary))
    return summary


def run_one(layers: list[Path], overrides: list[str], run_dir: Path, reporter: Reporter) -> dict[str, Any]:
    """Search, derive and retrain of one seed, each skipped where its output exists."""
    retrain_dir = run_dir / RETRAIN_DIR
    if not (retrain_dir / RESULT_FILE).is_file():
        search_and_derive(layers, overrides, run_dir, reporter)
        config = saved_config(run_dir)
        arch = load_architecture(run_dir / ARCH_FILE, config.space)
        run_retrain(config, arch, retrain_dir, has_checkpoint(retrain_dir), reporter)
    result = Result.read(retrain_dir)
    return {"run_dir": str(run_dir), "arch": result.arch, "metric": result.metric, "value": result.value,
            "search_s": search_seconds(run_dir), "retrain_s": result.time_s}


def search_and_derive(layers: list[Path], overrides: list[str], run_dir: Path, reporter: Reporter) -> Config:
    """The search in `run_dir` (resumed where it has a checkpoint; a finished one has no epoch left
    to run) and its derive unless arch.json exists; returns the run's saved config."""
    resume = has_checkpoint(run_dir)
    run_search(run_config(run_dir, resume, layers, overrides), run_dir, resume, reporter)
    saved = saved_config(run_dir)
    if not (run_dir / ARCH_FILE).is_file():
        run_derive(saved, run_dir, reporter)
    return saved


def search_seconds(run_dir: Path) -> float:
    """The seconds the search in `run_dir` ran, as its last metrics line with them says."""
    return max((m.get("search_s", 0.0) for m in read_metrics(run_dir / METRICS_FILE)), default=0.0)


def _table(summary: SweepSummary) -> Table:
    metric = summary.metric.replace("_", " ")
    table = Table(title=f"{len(summary.seeds)} seeds: {metric} {summary.value_mean:.4g} ± "
                        f"{summary.value_std:.2g}, search {summary.search_s_mean:.0f} ± {summary.search_s_std:.0f} s")
    for column in ("seed", metric, "search s", "retrain s", "derived architecture"):
        table.add_column(column, justify="left" if column == "derived architecture" else "right")
    for row in summary.runs:
        table.add_row(str(row["seed"]), f"{row['value']:.4g}", f"{row['search_s']:.0f}", f"{row['retrain_s']:.0f}",
                      row["arch"])
    return table
