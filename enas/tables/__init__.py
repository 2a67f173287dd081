"""Benchmark tables as ground truth: every architecture of a space with its measured figures
(NAS-Bench-201 style), which derive, rank and compare read, and table-backed strategies look
children up in, instead of training them.

table.py: the CSV format, `BenchTable` (load, look up, rank, percentile, thresholds);
figures.py: `TableFigures`, one architecture's figures for printing and arch.json;
config.py: the `bench` config section;
scores.py: `table_tau` of a panel against a table, `reward` of a looked-up accuracy; not
imported here, as it brings scipy, which the config (importing the `bench` section) does not need.
"""

from enas.tables.config import BenchConfig, bench_errors, load_bench
from enas.tables.figures import ColumnFigures, TableFigures
from enas.tables.table import BenchTable

__all__ = ["BenchConfig", "BenchTable", "ColumnFigures", "TableFigures", "bench_errors", "load_bench"]
