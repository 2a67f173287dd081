"""The `bench` config section: which benchmark table a run reads and which of its metrics a search
may use.
"""

from __future__ import annotations

from dataclasses import dataclass

from enas.errors import UserError
from enas.fields import option
from enas.tables.table import BenchTable

REWARD_MAPPINGS = ("identity", "cube")   # bench.reward


@dataclass
class BenchConfig:
    table: str = option("", "CSV of a benchmark's ground truth: an arch column of official architecture "
                        "strings and metric columns (NAME or NAME:max higher is better, NAME:min lower), one row "
                        "per architecture of the space (README, \"Benchmark tables\"); derive, rank and compare "
                        "then read it and table-backed strategies look children up in it instead of training "
                        "them; \"\" means no table")
    metric: str = option("", "the column of bench.table a search may use (NAS-Bench-201: cifar10_valid; keep "
                         "test columns for reporting only); \"\" means the table's first metric column")
    reward: str = option("identity", "table-backed nas_rl, random and evolution: a child's reward from its "
                         "bench.metric value in %: identity (value / 100, the benchmark's REINFORCE) or cube "
                         "((value / 100)^3, Zoph & Le's)", choices=REWARD_MAPPINGS)


def bench_errors(bench: BenchConfig) -> list[str]:
    """The config's own mistakes, for config.validate; the table itself is checked when loaded."""
    if bench.metric and not bench.table:
        return [f"bench.metric={bench.metric} needs bench.table=FILE.csv, the table it is a column of"]
    return []


def load_bench(bench: BenchConfig) -> tuple[BenchTable, str] | None:
    """The table and the metric a search may use, or None without a table. bench.metric must name
    one of the table's metric columns (without its :max or :min)."""
    if not bench.table:
        return None
    table = BenchTable.load(bench.table)
    metric = bench.metric or table.metrics[0]
    if metric not in table.metrics:
        raise UserError(f"bench.metric={metric} is not a metric column of {bench.table}; "
                        f"choose one of {', '.join(table.metrics)}")
    return table, metric
