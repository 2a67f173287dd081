"""`enas compare`: the derived architecture against random ones from the same space, each trained
alone at the same budget (standalone.py). Its percentile among them says whether the search beat
random sampling. Writes RUN_DIR/compare.json.
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
from enas.spaces import load_architecture, official
from enas.tasks import build_task


def run_compare(config: Config, run_dir: Path, random: int, budget: Budget, cache: Path, rerun: str,
                reporter: Reporter) -> CompareReport:
    if not (run_dir / ARCH_FILE).is_file():
        raise UserError(f"{run_dir} has no {ARCH_FILE}; run `enas derive {run_dir}` first")
    derived = load_architecture(run_dir / ARCH_FILE, config.space)
    task = build_task(config, config.retrain, reporter=reporter)
    others = uniform_architectures(task.space, random, budget.seed)
    mine, *results = train_panel(config, [derived, *others], budget, cache, rerun, reporter, "compare")
    sign = -1.0 if task.lower_is_better else 1.0
    metric = mine.metric
    values = [r.value for r in results]
    report = CompareReport(
        metric, task.lower_is_better, vars(budget) | {"cache": str(cache)},
        percentile(sign * mine.value, [sign * v for v in values]), sum(sign * mine.value > sign * v for v in values),
        len(values), {"arch": official(derived), metric: mine.value, "params": mine.params},
        [{"arch": official(a), "choices": a.to_json()["choices"], metric: r.value, "params": r.params}
         for a, r in zip(others, results)], task.describe())
    report.write(run_dir)
    reporter.print(_table(report))
    return report


def _table(report: CompareReport) -> Table:
    metric = report.metric
    table = Table(title=f"compare: the derived architecture beats {report.beaten} of {report.random} random "
                        f"ones (percentile {report.percentile:.0f})")
    table.add_column("rank", justify="right")
    table.add_column("", justify="left")
    table.add_column(metric.replace("_", " "), justify="right")
    table.add_column("params", justify="right")
    table.add_column("architecture")
    rows = [("derived", report.derived)] + [("random", row) for row in report.random_panel]
    rows.sort(key=lambda item: item[1][metric], reverse=not report.lower_is_better)
    for rank, (kind, row) in enumerate(rows, start=1):
        table.add_row(str(rank), kind, f"{row[metric]:.4g}", f"{row['params']:,}", row["arch"])
    return table
