"""`enas compare`: the derived architecture against random ones from the same space, each trained
alone at the same budget (standalone.py). Its percentile among them says whether the search beat
random sampling. Writes RUN_DIR/compare.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from enas.commands.panel import uniform_architectures
from enas.commands.standalone import Budget, train_panel
from enas.config import Config
from enas.console import Reporter
from enas.errors import UserError
from enas.folder.atomic import write_json
from enas.folder.names import ARCH_FILE, COMPARE_FILE
from enas.ranking import percentile
from enas.spaces import from_json, official
from enas.tasks import build_task


def run_compare(config: Config, run_dir: Path, random: int, budget: Budget, cache: Path, rerun: str,
                reporter: Reporter) -> dict[str, Any]:
    if not (run_dir / ARCH_FILE).is_file():
        raise UserError(f"{run_dir} has no {ARCH_FILE}; run `enas derive {run_dir}` first")
    derived = from_json(json.loads((run_dir / ARCH_FILE).read_text()))
    task = build_task(config, config.retrain, reporter=reporter)
    others = uniform_architectures(task.space, random, budget.seed)
    mine, *results = train_panel(config, [derived, *others], budget, cache, rerun, reporter, "compare")
    sign = -1.0 if task.lower_is_better else 1.0
    metric = mine["metric"]
    values = [r["value"] for r in results]
    report = {"metric": metric, "lower_is_better": task.lower_is_better, "budget": vars(budget) | {"cache": str(cache)},
              "percentile": percentile(sign * mine["value"], [sign * v for v in values]),
              "beaten": sum(sign * mine["value"] > sign * v for v in values), "random": len(values),
              "derived": {"arch": official(derived), metric: mine["value"], "params": mine["params"]},
              "random_panel": [{"arch": official(a), "choices": a.to_json()["choices"], metric: r["value"],
                                "params": r["params"]} for a, r in zip(others, results)],
              **task.describe()}
    write_json(run_dir / COMPARE_FILE, report)
    reporter.print(_table(report))
    return report


def _table(report: dict[str, Any]) -> Table:
    metric = report["metric"]
    table = Table(title=f"compare: the derived architecture beats {report['beaten']} of {report['random']} random "
                        f"ones (percentile {report['percentile']:.0f})")
    table.add_column("rank", justify="right")
    table.add_column("", justify="left")
    table.add_column(metric.replace("_", " "), justify="right")
    table.add_column("params", justify="right")
    table.add_column("architecture")
    rows = [("derived", report["derived"])] + [("random", row) for row in report["random_panel"]]
    rows.sort(key=lambda item: item[1][metric], reverse=not report["lower_is_better"])
    for rank, (kind, row) in enumerate(rows, start=1):
        table.add_row(str(rank), kind, f"{row[metric]:.4g}", f"{row['params']:,}", row["arch"])
    return table
