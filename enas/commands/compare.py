"""`enas compare`: the derived architecture against random ones from the same space, each trained
alone at the same budget (standalone.py) under one or more training seeds. Its percentile among
them (by the seeds' mean) says whether the search beat random sampling; the percentile under each
seed and the noise ceiling (truth.py) say how much of that the seeds alone would move. Writes
RUN_DIR/compare.json.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from enas.commands.panel import uniform_architectures
from enas.commands.standalone import Budget, train_panel
from enas.config import Config
from enas.console import Reporter
from enas.errors import UserError
from enas.folder.names import ARCH_FILE
from enas.ranking import percentile
from enas.records import CompareReport
from enas.records.panels import ceiling_text, diverged_text, seeds_text, truth_cells, truth_headers, truth_order
from enas.spaces import load_architecture, official
from enas.tasks import build_task


def run_compare(config: Config, run_dir: Path, random: int, budget: Budget, cache: Path, rerun: str,
                reporter: Reporter) -> CompareReport:
    if not (run_dir / ARCH_FILE).is_file():
        raise UserError(f"{run_dir} has no {ARCH_FILE}; run `enas derive {run_dir}` first")
    derived = load_architecture(run_dir / ARCH_FILE, config.space)
    task = build_task(config, config.retrain, reporter=reporter)
    others = uniform_architectures(task.space, random, budget.seed)
    truth = train_panel(config, [derived, *others], budget, cache, rerun, reporter, "compare", task)
    mine, *scores = truth.scores()   # larger is better, a diverged one -inf
    report = CompareReport(
        truth.metric, task.lower_is_better, budget.describe(config, cache), percentile(mine, scores),
        sum(mine > s for s in scores), len(scores), {"arch": official(derived), **truth.row(0)},
        [{"arch": official(a), "choices": a.to_json()["choices"], **truth.row(i)} for i, a in enumerate(others, 1)],
        truth.noise_ceiling(), truth.percentiles(0), truth.diverged, task.describe())
    report.write(run_dir)
    reporter.print(_table(report))
    return report


def _table(report: CompareReport) -> Table:
    metric = report.metric
    table = Table(title=f"compare: the derived architecture beats {report.beaten} of {report.random} random "
                        f"ones (percentile {report.percentile:.0f}{seeds_text(report.percentile_seeds)}; "
                        f"{ceiling_text(report.noise_ceiling)}){diverged_text(report.diverged)}")
    table.add_column("rank", justify="right")
    table.add_column("", justify="left")
    for header in truth_headers(report.derived, metric):
        table.add_column(header, justify="right")
    table.add_column("params", justify="right")
    table.add_column("architecture")
    rows = [("derived", report.derived)] + [("random", row) for row in report.random_panel]
    order = truth_order(metric, report.lower_is_better)
    rows.sort(key=lambda item: order(item[1]))
    for rank, (kind, row) in enumerate(rows, start=1):
        params = "" if row["params"] is None else f"{row['params']:,}"
        table.add_row(str(rank), kind, *truth_cells(row, metric), params, row["arch"])
    return table
