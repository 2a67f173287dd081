"""What a benchmark table says of one architecture: per metric its value, rank and percentile.

`enas derive` prints these lines and writes `to_json()` into arch.json. Rank and percentile are
defined in enas/tables/table.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ColumnFigures:
    """One metric of one architecture, placed among all rows of the table."""

    column: str
    value: float
    rank: int               # 1 = best; ties share the best rank
    rows: int               # the table's rows: rank 1..rows
    percentile: float       # 100 * (rows - rank + 1) / rows: 100 for the best
    lower_is_better: bool

    def line(self) -> str:
        direction = ", lower is better" if self.lower_is_better else ""
        return (f"{self.column} {self.value:g}: rank {self.rank:,} of {self.rows:,}, "
                f"percentile {self.percentile:.2f}{direction}")


@dataclass(frozen=True)
class TableFigures:
    """Every metric of one architecture in one table."""

    arch: str
    table: str              # the table's file
    columns: tuple[ColumnFigures, ...]

    def lines(self) -> list[str]:
        """One line per metric, then the table it came from, for the terminal."""
        return [figures.line() for figures in self.columns] + [f"(benchmark table {self.table})"]

    def to_json(self) -> dict:
        """{"table": file, "arch": string, "metrics": {column: {"value", "rank", "rows", "percentile",
        "lower_is_better"}}}, columns in the table's order."""
        metrics = {figures.column: {k: v for k, v in asdict(figures).items() if k != "column"}
                   for figures in self.columns}
        return {"table": self.table, "arch": self.arch, "metrics": metrics}
